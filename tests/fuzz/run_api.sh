#!/usr/bin/env bash
# Builds the public-API fuzzer (tests/fuzz/fuzz_api.cpp) with clang (libFuzzer + ASan + UBSan)
# against the whole library (every .cpp under framework/ and layers/, nothing excluded) and runs it.
#   usage: tests/fuzz/run_api.sh [SECONDS=600] [WORK_DIR=<repo>/build-fuzz-api] [JOBS=2]
# New corpus inputs go to WORK_DIR/corpus (the committed seeds in tests/fuzz/corpus_api are only
# read); a crashing input is saved as WORK_DIR/crash-* (or leak-*, oom-*, timeout-*) and makes
# the script exit non-zero. Everything is recompiled when a source or header is newer than the
# binary. Set FUZZ_BUILD_ONLY=1 to only build.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-600}
work=${2:-$root/build-fuzz-api}
jobs=${3:-2}
cxx=$(command -v clang++ || command -v clang++-14)
mkdir -p "$work/corpus" "$work/obj"

flags=(-std=c++17 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -DXTENSOR_USE_XSIMD -I"$root")
cd "$root"
mapfile -t sources < <(find framework layers -name '*.cpp' | sort)

stale=0
if [[ ! -x "$work/fuzz_api" ]]; then
  stale=1
elif [[ -n $(find framework layers tests/fuzz/fuzz_api.cpp \( -name '*.cpp' -o -name '*.hpp' \) \
             -newer "$work/fuzz_api" | head -n 1) ]]; then
  stale=1
fi
if (( stale )); then
  echo "compiling ${#sources[@]} library sources + fuzz_api.cpp with $cxx ($jobs jobs)"
  rm -f "$work"/obj/*.o
  running=0
  for src in "${sources[@]}"; do
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$work/obj/$(echo "$src" | tr / _).o" &
    running=$((running + 1))
    if (( running >= jobs )); then wait -n; running=$((running - 1)); fi
  done
  wait
  "$cxx" "${flags[@]}" -fsanitize=fuzzer tests/fuzz/fuzz_api.cpp "$work"/obj/*.o \
    -lopenblas -lfmt -lzip -o "$work/fuzz_api"
fi
[[ -n ${FUZZ_BUILD_ONLY:-} ]] && exit 0

status=0
# -rss_limit_mb also caps single mallocs: an attempt to allocate an absurd tensor is a finding.
OPENBLAS_NUM_THREADS=1 "$work/fuzz_api" -max_total_time="$seconds" -print_final_stats=1 \
  -rss_limit_mb=2048 -timeout=30 -artifact_prefix="$work/" "$work/corpus" \
  "$root/tests/fuzz/corpus_api" >"$work/log.txt" 2>&1 || status=$?
tail -n 25 "$work/log.txt"
echo "executions: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" \
  | grep -o '[0-9]*$' || echo unknown)"
echo "full log: $work/log.txt, exit status $status"
exit "$status"
