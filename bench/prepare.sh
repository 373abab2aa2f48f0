# Sourced by the bench scripts (run from the repository root, MODEL and OUT set): configures and
# builds xcaption if needed, writes the real-shaped random model to $MODEL if it is missing, and
# creates $OUT. A $MODEL whose folder name contains "blip" gets a BLIP folder
# (tools/make_random_blip.py; "blip-large" in the name: the -large shapes), any other name the
# vit-gpt2 one (tools/make_random_model.py).
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build -j2 --target xcaption >/dev/null
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "writing the random-weight model to $MODEL" >&2
  case "$(basename "$MODEL")" in
    *blip-large*) /usr/bin/python3 tools/make_random_blip.py "$MODEL" --size large >&2 ;;
    *blip*) /usr/bin/python3 tools/make_random_blip.py "$MODEL" >&2 ;;
    *) /usr/bin/python3 tools/make_random_model.py "$MODEL" >&2 ;;
  esac
fi
mkdir -p "$OUT"
echo "results in $OUT" >&2
