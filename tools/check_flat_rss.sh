#!/usr/bin/env bash
# Long-run memory check: 20,000 training steps of the default char_gru model, sampling the
# process's resident set size (VmRSS) every half second. The RSS must not grow: the highest
# sample of the last quarter of the run may exceed the highest of the samples from 10% to 25% of
# the run (after warm-up) by at most 4 MB. A leak (the tape or a buffer growing step after step)
# raises the later peaks: 9 MB over the run, as an engine helper thread's cache once leaked, shows
# as about 6.7 MB. A low sample does not count, as it should not: one CI run read 91 MB after
# warm-up in a run whose peak was 103 MB and which, run again twice, stayed at 104 MB from its
# second second on (a late warm-up or a dip; not reproduced), and the earlier max − min rule
# failed it. The samples are printed as min..max per tenth of the run.
#   tools/check_flat_rss.sh [BUILD_DIR] [STEPS]
set -euo pipefail
source "$(dirname "$0")/script_args.sh"
script_args "tools/check_flat_rss.sh [BUILD_DIR] [STEPS]" "$@"
build="${1:-build}"
steps="${2:-20000}"
if ! [[ "$steps" =~ ^[1-9][0-9]{0,7}$ ]]; then
  echo "check_flat_rss: STEPS must be a whole number from 1 to 99999999, not '$steps'" >&2; exit 2
fi
if [ ! -x "$build/examples/char_gru" ]; then
  echo "check_flat_rss: $build/examples/char_gru is missing (BUILD_DIR must be a built tapegrad build directory)" >&2
  exit 2
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

"$build/examples/char_gru" train --steps "$steps" --checkpoint '' --json > "$log.json" 2>/dev/null &
pid=$!
samples=()
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] && samples+=("$rss")
  sleep 0.5
done
wait "$pid"
cat "$log.json"; rm -f "$log.json"
n=${#samples[@]}
if [ "$n" -lt 20 ]; then echo "check_flat_rss: only $n samples; run more steps"; exit 1; fi
tenths=""
for d in 0 1 2 3 4 5 6 7 8 9; do
  part=("${samples[@]:$((n * d / 10)):$((n * (d + 1) / 10 - n * d / 10))}")
  sorted=($(printf '%s\n' "${part[@]}" | sort -n))
  tenths+=" $(( sorted[0] / 1024 ))..$(( sorted[${#sorted[@]} - 1] / 1024 ))"
done
early=$(printf '%s\n' "${samples[@]:$((n / 10)):$((n / 4 - n / 10))}" | sort -n | tail -1)
late=$(printf '%s\n' "${samples[@]:$((n * 3 / 4))}" | sort -n | tail -1)
echo "check_flat_rss: $steps steps, $n samples; RSS in MB per tenth of the run (min..max):$tenths"
echo "check_flat_rss: peak from 10% to 25% of the run $early kB, in the last quarter $late kB" \
     "(growth $(( (late - early) / 1024 )) MB)"
if [ $((late - early)) -gt 4096 ]; then echo "check_flat_rss: RSS grew by more than 4 MB"; exit 1; fi
echo "check_flat_rss: OK"
