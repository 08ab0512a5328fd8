#!/usr/bin/env bash
# Checks the Debian package (cmake/package.cmake), as docs/install.md tells a user to build and use
# it: configures a portable build (TAPEGRAD_NATIVE=OFF: no -march=native in a package), builds the
# library and the examples, runs `cpack -G DEB`, installs the .deb with apt-get (which pulls its
# dependencies), builds and runs the consumer (tests/consumer) with pkg-config and with CMake's
# find_package (no prefix path: /usr), runs tapegrad-char-gru (--help, and a 20-step training run
# with a temporary checkpoint), then removes the package and checks its files are gone.
#   tools/check_deb.sh BUILD_DIR
# Needs root (or sudo) for apt-get, and apt package lists (apt-get update) if dependencies are
# missing. Replaces, then removes, an installed tapegrad package. Parallel jobs: JOBS (default 2).
set -euo pipefail
source "$(dirname "$0")/script_args.sh"
script_args "tools/check_deb.sh BUILD_DIR" "$@"
src="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: tools/check_deb.sh BUILD_DIR}"
jobs="${JOBS:-2}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-deb.XXXXXX")"
installed=0
cleanup() {
  if [ "$installed" = 1 ]; then $sudo apt-get remove -y tapegrad >/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH  # the installed package must be found where it is, in /usr

echo "check_deb: configuring and building a portable build in $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_NATIVE=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j "$jobs"

echo "check_deb: cpack -G DEB"
rm -f "$build"/tapegrad_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb="$(cd "$build" && pwd)/$(cd "$build" && ls tapegrad_*.deb)"
dpkg-deb -f "$deb" Package Version Depends Recommends
contents="$(dpkg-deb -c "$deb")"
for f in ./usr/include/tapegrad/framework/tensor.hpp ./usr/include/tapegrad/framework/xtensor_config.hpp \
         ./usr/include/tapegrad/layers/fast/gru_fused.hpp /libtapegrad.a /pkgconfig/tapegrad.pc \
         /cmake/tapegrad/tapegradConfig.cmake ./usr/bin/tapegrad-char-gru ./usr/bin/tapegrad-gru-gates \
         ./usr/bin/tapegrad-gradient-flow ./usr/bin/tapegrad-tape-graph ./usr/bin/tapegrad-custom-op \
         ./usr/bin/tapegrad-manual-backprop ./usr/bin/tapegrad-hvp ./usr/share/doc/tapegrad/install.md; do
  grep -q -- "$f\$" <<<"$contents" || { echo "check_deb: $f is not in $deb"; exit 1; }
done
if grep -q -- "-march=native" "$build/CMakeFiles/tapegrad.dir/flags.make"; then
  echo "check_deb: the package was compiled with -march=native"; exit 1
fi

echo "check_deb: apt-get install -y $deb"
installed=1
$sudo apt-get install -y "$deb" >/dev/null
dpkg -s tapegrad | grep -q '^Status: install ok installed'

echo "check_deb: the consumer with pkg-config"
# The recipe of docs/install.md, as written there:
# shellcheck disable=SC2046
g++ "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs tapegrad) -o "$tmp/app-pc"
"$tmp/app-pc" "$tmp"

echo "check_deb: the consumer with CMake (find_package, no prefix path)"
cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer" -j "$jobs" >/dev/null
"$tmp/consumer/app" "$tmp"

echo "check_deb: the installed examples"
tapegrad-char-gru --help >/dev/null
tapegrad-char-gru train --steps 20 --hidden 32 --checkpoint "$tmp/char_gru.npz" >/dev/null
test -s "$tmp/char_gru.npz"
for prog in gru-gates gradient-flow tape-graph custom-op manual-backprop hvp; do
  "tapegrad-$prog" --help >/dev/null
done

echo "check_deb: apt-get remove -y tapegrad"
$sudo apt-get remove -y tapegrad >/dev/null
installed=0
if dpkg -s tapegrad 2>/dev/null | grep -q '^Status: install ok installed'; then
  echo "check_deb: tapegrad is still installed"; exit 1
fi
# Every regular file the package held must be gone.
while read -r f; do
  if [ -e "$f" ]; then echo "check_deb: $f is still there after the removal"; exit 1; fi
done < <(awk '$1 ~ /^-/ {print substr($6, 2)}' <<<"$contents")
if pkg-config --exists tapegrad; then echo "check_deb: tapegrad.pc is still found"; exit 1; fi
echo "check_deb: OK"
