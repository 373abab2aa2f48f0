#!/usr/bin/env bash
# Installs the Debian 12 packages xcaption needs to build, test and train.
# Usage: tools/install-deps.sh [--with-python] [--with-tests]
#   --with-python  also installs the Python stack used by tools/ (reference dumps, training).
#   --with-tests   the Python stack plus what the test suite runs against (Slurm and munge for the
#                  job-array test; Chromium, Node.js and npm, then `npm ci` in tests/server, for the
#                  server's browser and OpenAI-client test; clang with its sanitizer and libFuzzer
#                  runtimes, libomp, llvm-symbolizer and the lld linker for tools/harden.sh).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
with_tests=0
pkgs=(build-essential cmake pkg-config
      libdnnl-dev libopencv-dev libboost-program-options-dev libfmt-dev catch2 nlohmann-json3-dev
      libcpp-httplib-dev)
python=(python3 python3-torch python3-numpy python3-pil python3-regex unicode-data libopenblas0-pthread)
for arg in "$@"; do
  case "$arg" in
    --with-python) pkgs+=("${python[@]}") ;;
    --with-tests) pkgs+=("${python[@]}" slurm-wlm munge chromium clang libclang-rt-dev libomp-dev llvm lld)
                   # Node.js and npm from Debian unless a node is installed already (a NodeSource
                   # nodejs bundles npm and conflicts with Debian's npm package).
                   command -v node >/dev/null || pkgs+=(nodejs)
                   command -v npm >/dev/null || pkgs+=(npm)
                   with_tests=1 ;;
    *) echo "usage: tools/install-deps.sh [--with-python] [--with-tests]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ((with_tests)); then
  # The npm packages of tests/server (openai, playwright-core), as pinned by its package-lock.json.
  # Without the registry the browser test is skipped (exit 77), not failed.
  (cd "$(dirname "$0")/../tests/server" && npm ci --no-audit --no-fund) ||
    echo "install-deps: npm ci in tests/server failed; the server_browser test will be skipped" >&2
fi
