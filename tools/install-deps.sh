#!/usr/bin/env bash
# Installs the Debian 12 packages xcaption needs to build, test and train.
# Usage: tools/install-deps.sh [--with-python] [--with-tests]
#   --with-python  also installs the Python stack used by tools/ (reference dumps, training).
#   --with-tests   the Python stack plus what the test suite runs against (Slurm and munge for the
#                  job-array test).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config
      libdnnl-dev libopencv-dev libboost-program-options-dev libfmt-dev catch2 nlohmann-json3-dev
      libcpp-httplib-dev)
for arg in "$@"; do
  case "$arg" in
    --with-python) pkgs+=(python3 python3-torch python3-numpy python3-pil python3-regex libopenblas0-pthread) ;;
    --with-tests) pkgs+=(python3 python3-torch python3-numpy python3-pil python3-regex libopenblas0-pthread
                         slurm-wlm munge) ;;
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
