#!/usr/bin/env bash
# Builds the public-API fuzzer (tests/fuzz/fuzz_api.cpp) with clang (libFuzzer + ASan + UBSan)
# against the whole library (every .cpp under framework/ and layers/, nothing excluded) and runs it.
#   usage: tests/fuzz/run_api.sh [SECONDS=600] [WORK_DIR=<repo>/build-fuzz-api] [JOBS=2]
# New corpus inputs go to WORK_DIR/corpus (the committed seeds in tests/fuzz/corpus_api are only
# read); a crashing input is saved as WORK_DIR/crash-* (or leak-*, oom-*, timeout-*) and makes
# the script exit non-zero. An object is recompiled when its source or any header is newer than
# it. Set FUZZ_BUILD_ONLY=1 to only build, FUZZ_SKIP_BUILD=1 to only run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-600}
work=${2:-$root/build-fuzz-api}
jobs=${3:-2}
cxx=$(command -v clang++ || command -v clang++-14)
mkdir -p "$work/corpus" "$work/obj"

# float-cast-overflow is recoverable so that ubsan_api.supp can silence the one report inside
# xsimd's exp; halt_on_error=1 below still stops on every other report.
flags=(-std=c++17 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -fsanitize-recover=float-cast-overflow -fno-omit-frame-pointer -DXTENSOR_USE_XSIMD -I"$root")
cd "$root"
mapfile -t sources < <(find framework layers -name '*.cpp' | sort)

# An object is rebuilt when it is older than its source or than any header of the repository.
# FUZZ_SKIP_BUILD=1 runs the existing binary (e.g. when the build was done under a lock).
if [[ -z ${FUZZ_SKIP_BUILD:-} || ! -x "$work/fuzz_api" ]]; then
newest_header=$(find framework layers \( -name '*.hpp' -o -name '*.inc' \) -printf '%T@\n' | sort -n | tail -n 1)
mtime() { stat -c %Y "$1"; }
running=0
rebuilt=0
for src in "${sources[@]}" tests/fuzz/fuzz_api.cpp; do
  obj="$work/obj/$(echo "$src" | tr / _).o"
  if [[ -f $obj && $(mtime "$obj") -ge $(mtime "$src") && $(mtime "$obj") -ge ${newest_header%.*} ]]; then
    continue
  fi
  [[ $src == tests/fuzz/fuzz_api.cpp ]] && san=-fsanitize=fuzzer || san=-fsanitize=fuzzer-no-link
  # the engine's GEMM kernel, its vector math and the fused layers' gate passes as CMakeLists.txt
  # compiles them on x86-64: once for AVX2, once for AVX-512, chosen at run time
  # (framework/arch_builds.hpp)
  extra=()
  if [[ $(uname -m) == x86_64 ]]; then
    case $src in
      framework/packed_gemm_avx2.cpp) extra=(-mavx2 -mfma -mno-avx512f) ;;
      framework/packed_gemm_avx512.cpp) extra=(-mavx512f -mavx2 -mfma) ;;
      framework/packed_gemm.cpp) extra=(-DTAPEGRAD_GEMM_X86) ;;
      framework/vector_math_avx2.cpp) extra=(-mavx2 -mfma -mno-avx512f) ;;
      framework/vector_math_avx512.cpp) extra=(-mavx512f -mavx2 -mfma) ;;
      framework/vector_math.cpp) extra=(-DTAPEGRAD_VMATH_X86) ;;
      layers/fast/gate_kernels_avx2.cpp) extra=(-mavx2 -mfma -mno-avx512f) ;;
      layers/fast/gate_kernels_avx512.cpp) extra=(-mavx512f -mavx2 -mfma) ;;
      layers/fast/gate_kernels.cpp) extra=(-DTAPEGRAD_GATES_X86) ;;
    esac
  fi
  echo "compiling $src"
  "$cxx" "${flags[@]}" "${extra[@]}" "$san" -c "$src" -o "$obj" &
  rebuilt=1
  running=$((running + 1))
  if (( running >= jobs )); then wait -n; running=$((running - 1)); fi
done
while (( running > 0 )); do wait -n; running=$((running - 1)); done
if (( rebuilt )) || [[ ! -x "$work/fuzz_api" ]]; then
  "$cxx" "${flags[@]}" -fsanitize=fuzzer "$work"/obj/*.o -lopenblas -lfmt -lzip -o "$work/fuzz_api"
fi
fi
[[ -n ${FUZZ_BUILD_ONLY:-} ]] && exit 0

status=0
# -rss_limit_mb also caps single mallocs: an attempt to allocate an absurd tensor is a finding.
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/tests/fuzz/ubsan_api.supp" \
OPENBLAS_NUM_THREADS=1 "$work/fuzz_api" -max_total_time="$seconds" -print_final_stats=1 \
  -rss_limit_mb=2048 -timeout=30 -artifact_prefix="$work/" "$work/corpus" \
  "$root/tests/fuzz/corpus_api" >"$work/log.txt" 2>&1 || status=$?
tail -n 25 "$work/log.txt"
echo "executions: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" \
  | grep -o '[0-9]*$' || echo unknown)"
echo "full log: $work/log.txt, exit status $status"
exit "$status"
