#!/usr/bin/env bash
# Checks the installed package: installs tapegrad into a temporary prefix, then builds and runs the
# out-of-tree consumer (tests/consumer, which calls every public header's API and checks the
# values) against it, with the consumer's default flags (no -march), in both ways docs/install.md
# gives: CMake's find_package(tapegrad), and pkg-config (PKG_CONFIG_PATH pointing into the prefix).
#   tools/check_install.sh [BUILD_DIR]
# With BUILD_DIR (an already configured tapegrad build), installs from it (building the library
# target first); without, configures a library-only build in the temporary directory.
# Extra CMake arguments for that build: TAPEGRAD_CMAKE_ARGS. Parallel jobs: JOBS (default 2).
set -euo pipefail
source "$(dirname "$0")/script_args.sh"
script_args "tools/check_install.sh [BUILD_DIR]" "$@"
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
test -f "$prefix/include/tapegrad/framework/xtensor_config.hpp"
test -f "$prefix/include/tapegrad/layers/gru.hpp"
test -f "$prefix/include/tapegrad/layers/fast/gru_fused.hpp"
config="$(find "$prefix" -name tapegradConfig.cmake)"
pc="$(find "$prefix" -name tapegrad.pc)"
test -n "$config" && test -n "$pc"
test -f "$prefix/share/doc/tapegrad/install.md"

echo "check_install: building tests/consumer against the installed package (find_package)"
cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" -j "$jobs"
"$tmp/consumer/app" "$tmp"

echo "check_install: building tests/consumer with pkg-config ($pc)"
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The recipe of docs/install.md, as written there:
# shellcheck disable=SC2046
g++ "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs tapegrad) -o "$tmp/app-pc"
"$tmp/app-pc" "$tmp"

# README's "A taste of the API", as written: its #include and using lines first, the rest as the body
# of main(); compiled with the pkg-config line against the installed package, and run.
echo "check_install: README's API tour, compiled against the installed package and run"
python3 - "$src/README.md" "$tmp/readme_tour.cpp" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"## A taste of the API.*?```cpp\n(.*?)```", text, re.S)
if not m:
    sys.exit("check_install: README.md has no 'A taste of the API' C++ block")
lines = m.group(1).splitlines()
head = [l for l in lines if l.startswith("#include") or l.startswith("using namespace")]
body = [l for l in lines if l not in head]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(head + ["#include <iostream>", "int main() {"] + ["  " + l for l in body]
                      + ["  return 0;", "}"]) + "\n")
PY
# shellcheck disable=SC2046
g++ "$tmp/readme_tour.cpp" $(pkg-config --cflags --libs tapegrad) -o "$tmp/readme_tour"
"$tmp/readme_tour" > "$tmp/readme_tour.out"
grep -q "gradcheck .*PASSED" "$tmp/readme_tour.out"
grep -q "^%0 *matmul" "$tmp/readme_tour.out"

# tapegrad.pc is relocatable: moved elsewhere, the prefix moves with it.
mv "$prefix" "$tmp/moved"
export PKG_CONFIG_PATH="$(dirname "${pc/$prefix/$tmp/moved}")"
test -f "$(pkg-config --variable=includedir tapegrad)/framework/tensor.hpp"
test -f "$(pkg-config --variable=libdir tapegrad)/libtapegrad.a"
echo "check_install: OK"
