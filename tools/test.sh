#!/usr/bin/env bash
# README Quick start, command 2: install what the tests need (the Python stack too: the training
# smoke test runs the real training script; Slurm for the job-array test), build, and run the
# whole test suite with CTest.
# Then tools/harden.sh: the sanitizer build, its tests and the fuzzers (README "Untrusted input").
# Usage: tools/test.sh [--quick]   (--quick skips the tests labelled "slow" and tools/harden.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --with-tests
bash tools/build.sh
cd build
if [[ "${1:-}" == "--quick" ]]; then
  ctest --output-on-failure -j2 -LE slow
else
  ctest --output-on-failure -j2
  cd ..
  bash tools/harden.sh
fi
