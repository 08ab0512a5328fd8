#!/usr/bin/env bash
# Long-run memory check: 20,000 training steps of the default char_gru model, sampling the
# process's resident set size (VmRSS) every half second. After warm-up (the first 10% of the
# samples) the RSS must stay flat: max − min ≤ 8 MB. The tape and the buffers must not grow.
#   tools/check_flat_rss.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build="${1:-build}"
steps="${2:-20000}"
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
printf '%s\n' "${samples[@]:$((n / 10))}" | sort -n > "$log"
lo=$(head -1 "$log"); hi=$(tail -1 "$log")
echo "check_flat_rss: $steps steps, $n samples, RSS after warm-up ${lo}..${hi} kB (growth $(( (hi - lo) / 1024 )) MB)"
if [ $((hi - lo)) -gt 8192 ]; then echo "check_flat_rss: RSS grew by more than 8 MB"; exit 1; fi
echo "check_flat_rss: OK"
