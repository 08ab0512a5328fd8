#!/usr/bin/env bash
# tapegrad setup: installs what is missing (Debian 12, as root) and builds in Release.
#   bash tools/setup.sh [BUILD_DIR]          (default: build)
# Extra CMake arguments can be passed in TAPEGRAD_CMAKE_ARGS.
set -euo pipefail
source "$(dirname "$0")/script_args.sh"
script_args "bash tools/setup.sh [BUILD_DIR]" "$@"
cd "$(dirname "$0")/.."
build="${1:-build}"

packages=(build-essential cmake pkg-config
          libxtensor-dev libxsimd-dev libxtensor-blas-dev libopenblas-dev libfmt-dev
          libgtest-dev libcli11-dev nlohmann-json3-dev libzip-dev zlib1g-dev libbenchmark-dev
          gnuplot-nox graphviz wamerican jq valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${TAPEGRAD_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
