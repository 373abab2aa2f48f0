#!/usr/bin/env bash
# README Quick start, command 1: install the Debian packages, build, and caption the sample images
# with the bundled default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh
echo "== xcaption caption samples/data/*.png"
./build/xcaption caption samples/data/*.png
