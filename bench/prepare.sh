# Sourced by the bench scripts (run from the repository root, MODEL and OUT set): configures and
# builds xcaption if needed, writes the real-shaped random model to $MODEL if it is missing, and
# creates $OUT. A $MODEL whose folder name contains "blip" gets a BLIP folder
# (tools/make_random_blip.py; "blip-large" in the name: the -large shapes), one whose name
# contains "florence2" a Florence-2 folder (tools/make_random_florence2.py; "florence2-large": the
# -large shapes; "native" in the name: the transformers-native layout, else the hub remote-code
# layout with pytorch_model.bin), any other name the vit-gpt2 one (tools/make_random_model.py).
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build -j2 --target xcaption >/dev/null
if [ ! -f "$MODEL/model.safetensors" ] && [ ! -f "$MODEL/pytorch_model.bin" ]; then
  echo "writing the random-weight model to $MODEL" >&2
  name=$(basename "$MODEL")
  fl_args=""
  case "$name" in *native*) fl_args="--layout native" ;; esac
  case "$name" in
    *blip-large*) /usr/bin/python3 tools/make_random_blip.py "$MODEL" --size large >&2 ;;
    *blip*) /usr/bin/python3 tools/make_random_blip.py "$MODEL" >&2 ;;
    *florence2-large*) /usr/bin/python3 tools/make_random_florence2.py "$MODEL" --size large $fl_args >&2 ;;
    *florence2*) /usr/bin/python3 tools/make_random_florence2.py "$MODEL" $fl_args >&2 ;;
    *) /usr/bin/python3 tools/make_random_model.py "$MODEL" >&2 ;;
  esac
fi
mkdir -p "$OUT"
echo "results in $OUT" >&2
