#!/usr/bin/env bash
# Builds the npz fuzzer with clang (libFuzzer + ASan + UBSan) and runs it.
#   usage: tests/fuzz/build_and_run.sh [SECONDS=60] [WORK_DIR=/tmp/tapegrad_fuzz_npz]
# New corpus inputs go to WORK_DIR/corpus (the committed seeds in tests/fuzz/corpus are only
# read); crashing inputs are saved as WORK_DIR/crash-* and make the script exit non-zero.
set -euo pipefail
seconds=${1:-60}
work=${2:-/tmp/tapegrad_fuzz_npz}
root=$(cd "$(dirname "$0")/../.." && pwd)
cxx=$(command -v clang++ || command -v clang++-14)
mkdir -p "$work/corpus"

"$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" "$root/tests/fuzz/fuzz_npz.cpp" "$root/framework/npz.cpp" -lzip \
  -o "$work/fuzz_npz"

status=0
"$work/fuzz_npz" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work/corpus" "$root/tests/fuzz/corpus" \
  >"$work/log.txt" 2>&1 || status=$?
tail -n 25 "$work/log.txt"
echo "executions: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" \
  | grep -o '[0-9]*$' || echo unknown)"
echo "full log: $work/log.txt, exit status $status"
exit "$status"
