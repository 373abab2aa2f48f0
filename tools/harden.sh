#!/usr/bin/env bash
# Sanitizers and fuzzers (README "Untrusted input"; tests/fuzz/README.md). Called by tools/test.sh
# after the Release test suite, and runnable alone.
#
#   1. One clang build tree, build-asan/ (`cmake --preset asan`): the library, the CLI and the test
#      binary with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included), plus
#      every libFuzzer target in tests/fuzz (the library is also instrumented for coverage). The
#      library is built at -O1, the tests, CLI and server at -O0 (CMakeLists.txt says why), all
#      with line tables for symbolised stacks, linked with lld when it is installed.
#   2. The tests that exercise parsing, loading, images, tokenizers, the CLI on the hostile corpus,
#      the .bin reader and the server, under the sanitizers (tools/sanitizers/asan-tags.txt:
#      measured to fit the CI budget).
#   3. Each fuzz target for FUZZ_SECONDS (default 15) from its committed corpus, printing its
#      execution count; a crash fails the run and leaves the input in build-asan/fuzz-artifacts/.
#   --tsan: a second tree, build-tsan/ (ThreadSanitizer), with the server and engine tests only
#           (the concurrent ones), instead of steps 1-3. Not part of CI: see README.
#
# Usage: tools/harden.sh [--tsan] [--no-tests] [--no-fuzz] [--fuzz-seconds N]
# Without clang++ (or libFuzzer) it prints why and exits 0: the Release suite stays the gate.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
fuzz_seconds=${FUZZ_SECONDS:-15}
run_tests=1 run_fuzz=1 tsan=0
while (($#)); do
  case "$1" in
    --tsan) tsan=1 ;;
    --no-tests) run_tests=0 ;;
    --no-fuzz) run_fuzz=0 ;;
    --fuzz-seconds) fuzz_seconds=$2; shift ;;
    *) echo "usage: tools/harden.sh [--tsan] [--no-tests] [--no-fuzz] [--fuzz-seconds N]" >&2; exit 2 ;;
  esac
  shift
done
if ! command -v clang++ >/dev/null; then
  echo "harden: clang++ not found; sanitizer and fuzz steps skipped (tools/install-deps.sh --with-tests installs clang)"
  exit 0
fi
jobs=$(nproc)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

# Findings stop the run; reports carry symbolised stacks. Suppressions, each with its reason, are
# in tools/sanitizers/. alloc_dealloc_mismatch=0: clang's ASan with Debian's GCC-built libstdc++
# reports Catch2's own `new (std::nothrow)` / `delete` of its test registry as a mismatch (the
# delete reaches free() inside the uninstrumented libstdc++), at every exit of the test binary;
# no xcaption code is involved.
export ASAN_OPTIONS="alloc_dealloc_mismatch=0:detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tools/sanitizers/lsan.supp:print_suppressions=0"
# ignore_noninstrumented_modules=1: libdnnl, libomp, libgdal and libcpp-httplib are Debian builds
# without TSan; their own synchronisation (httplib's thread-pool handoff, OpenMP barriers) is
# invisible to it and reported as races inside those libraries. Races between our threads, and in
# our code touching their memory, are still reported.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$root/tools/sanitizers/tsan.supp"

if ((tsan)); then
  start=$SECONDS
  cmake --preset tsan "${launcher[@]}" >/dev/null
  cmake --build build-tsan -j"$jobs" --target xcaption xcaption_tests
  # The concurrent code: the engine's worker and queue, the HTTP server, the caption reader thread.
  (cd build-tsan && ctest --output-on-failure -j"$jobs" -L quick -R 'engine|server|serve|batch|reader|collection')
  echo "harden: TSan build and tests took $((SECONDS - start)) s"
  exit 0
fi

start=$SECONDS
cmake --preset asan "${launcher[@]}" >/dev/null
if ! grep -q '^XCAPTION_HAVE_LIBFUZZER:INTERNAL=1' build-asan/CMakeCache.txt; then
  echo "harden: clang cannot link -fsanitize=fuzzer (install libclang-rt-dev); only the sanitizer tests run"
  run_fuzz=0
fi
targets=(xcaption xcaption_tests)
((run_fuzz)) && targets+=(fuzzers)
cmake --build build-asan -j"$jobs" --target "${targets[@]}"
echo "harden: ASan+UBSan build took $((SECONDS - start)) s"

if ((run_tests)); then
  start=$SECONDS
  # The tagged tests of tools/sanitizers/asan-tags.txt (what parses, loads and serves untrusted
  # input), one thread each as CTest runs them.
  tags=$(grep -v -e '^#' -e '^$' "$root/tools/sanitizers/asan-tags.txt" | paste -sd',')
  OMP_NUM_THREADS=1 build-asan/tests/xcaption_tests "$tags"
  echo "harden: tests under ASan+UBSan took $((SECONDS - start)) s"
fi

if ((run_fuzz)); then
  start=$SECONDS
  mkdir -p build-asan/fuzz-artifacts
  failed=()
  for fuzzer in build-asan/tests/fuzz/fuzz_*; do
    [[ -x $fuzzer && -f $fuzzer ]] || continue
    name=${fuzzer##*/fuzz_}
    corpus=(tests/fuzz/corpus/"$name")
    [[ $name == torch_checkpoint ]] && corpus+=(tests/data/hostile-bin)
    scratch=$(mktemp -d)  # new inputs stay out of the repository
    log=build-asan/fuzz-artifacts/$name.log
    if "$fuzzer" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
         -artifact_prefix=build-asan/fuzz-artifacts/"$name"- "$scratch" "${corpus[@]}" >"$log" 2>&1; then
      status=ok
    else
      status=FAILED
      failed+=("$name")
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    printf 'harden: fuzz_%-18s %s  stat::number_of_executed_units: %s  coverage: %s edges\n' "$name" "$status" "$execs" "$cov"
    if [[ $status == FAILED ]]; then tail -40 "$log"; fi
    rm -rf "$scratch"
  done
  echo "harden: fuzzing took $((SECONDS - start)) s"
  if ((${#failed[@]})); then
    echo "harden: fuzz targets failed: ${failed[*]} (inputs in build-asan/fuzz-artifacts/)" >&2
    exit 1
  fi
fi
