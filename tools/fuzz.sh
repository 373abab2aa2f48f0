#!/usr/bin/env bash
# Runs one libFuzzer target for longer than CI does (tests/fuzz/README.md).
# Usage: tools/fuzz.sh TARGET SECONDS [extra libFuzzer flags]
#   TARGET: torch_checkpoint, safetensors, configs, tokenizer_json, tokenize, image, server_api,
#   subtitles. Builds build-asan/ (cmake --preset asan) when needed. Inputs that found new
#   coverage go to out/fuzz/TARGET/ (ignored by git); a crash leaves its input in
#   out/fuzz/TARGET-crash-* and exits non-zero: copy it into tests/fuzz/corpus/TARGET/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# < 2)); then
  echo "usage: tools/fuzz.sh TARGET SECONDS [libFuzzer flags]" >&2
  exit 2
fi
target=$1 seconds=$2
shift 2
if [[ ! -d tests/fuzz/corpus/$target ]]; then
  echo "fuzz: unknown target '$target' (one of: $(ls tests/fuzz/corpus | paste -sd' '))" >&2
  exit 2
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
[[ -f build-asan/CMakeCache.txt ]] || cmake --preset asan "${launcher[@]}" >/dev/null
cmake --build build-asan -j"$(nproc)" --target "fuzz_$target"
mkdir -p "out/fuzz/$target"
corpus=("tests/fuzz/corpus/$target")
[[ $target == torch_checkpoint ]] && corpus+=(tests/data/hostile-bin)
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
exec "build-asan/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="out/fuzz/$target-" "$@" "out/fuzz/$target" "${corpus[@]}"
