#!/usr/bin/env bash
# Checks the installed CMake package: installs tapegrad into a temporary prefix, then configures,
# builds and runs the out-of-tree consumer (tests/consumer) against it with find_package(tapegrad).
#   tools/check_install.sh [BUILD_DIR]
# With BUILD_DIR (an already configured tapegrad build), installs from it (building the library
# target first); without, configures a library-only build in the temporary directory.
# Extra CMake arguments for that build: TAPEGRAD_CMAKE_ARGS. Parallel jobs: JOBS (default 2).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
jobs="${JOBS:-2}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

build="${1:-}"
if [ -z "$build" ]; then
  build="$tmp/build"
  echo "check_install: configuring a library-only build in $build"
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_BUILD_TESTS=OFF \
        -DTAPEGRAD_BUILD_EXAMPLES=OFF ${TAPEGRAD_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" --target tapegrad -j "$jobs"

prefix="$tmp/prefix"
echo "check_install: installing into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/tapegrad/framework/tensor.hpp"
test -f "$prefix/include/tapegrad/layers/gru.hpp"
test -f "$prefix/lib/cmake/tapegrad/tapegradConfig.cmake" || test -f "$prefix/lib64/cmake/tapegrad/tapegradConfig.cmake"

echo "check_install: building tests/consumer against the installed package"
cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" -j "$jobs"
(cd "$tmp/consumer" && ./app)
echo "check_install: OK"
