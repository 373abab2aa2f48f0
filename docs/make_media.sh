#!/bin/sh
# Regenerates the picture and the subtitle excerpts of docs/attention-and-video.md with the
# commands themselves, on the bundled model (or $XCAPTION_MODEL). From the repository root, after
# a build:  sh docs/make_media.sh [BUILD_DIR]
set -eu
xc="${1:-build}/xcaption"
out=docs/media
mkdir -p "$out"
# Where each word of the caption of the sample still looked: the image, then one panel per word.
"$xc" attend samples/data/shapes.png -o "$out/attend-shapes.png" --panel-size 160 --columns 7
# The sample video as SubRip, WebVTT and JSON lines.
"$xc" video samples/data/shapes.mp4 --srt "$out/shapes.srt" --vtt "$out/shapes.vtt" --jsonl "$out/shapes.jsonl"
