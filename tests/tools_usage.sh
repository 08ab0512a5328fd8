#!/usr/bin/env bash
# ctest ToolsUsage.BadArgumentsAreUsageErrors: the scripts of tools/ print their header on --help
# and refuse an option they do not know with exit 2 (instead of taking it for a build directory);
# check_flat_rss.sh checks STEPS and BUILD_DIR; fuzz_cli.py (standard library only) checks its
# seconds and its build directory. Nothing here installs, builds or trains.
#   bash tests/tools_usage.sh SOURCE_DIR BUILD_DIR
set -u
root="$1"
build="$2"
failed=0
expect() {  # expect EXIT_CODE TEXT COMMAND...: the command exits so and prints TEXT (stdout or stderr)
  local want="$1" text="$2" out rc
  shift 2
  out="$("$@" 2>&1)"
  rc=$?
  if [ "$rc" != "$want" ] || ! grep -qF -- "$text" <<<"$out"; then
    echo "FAIL: $* exited $rc (expected $want) and printed:"; echo "$out" | head -5
    echo "  (expected it to contain: $text)"
    failed=1
  fi
}
for s in setup check_install check_deb check_flat_rss make_figures; do
  expect 0 "tools/$s.sh" bash "$root/tools/$s.sh" --help
  expect 0 "tools/$s.sh" bash "$root/tools/$s.sh" -h
  expect 2 "unknown option '--bogus'" bash "$root/tools/$s.sh" --bogus
done
expect 2 "STEPS must be a whole number" bash "$root/tools/check_flat_rss.sh" "$build" -5
expect 2 "STEPS must be a whole number" bash "$root/tools/check_flat_rss.sh" "$build" nan
expect 2 "STEPS must be a whole number" bash "$root/tools/check_flat_rss.sh" "$build" '1;touch x'
expect 2 "is missing" bash "$root/tools/check_flat_rss.sh" /nonexistent 10
if [ -x /usr/bin/python3 ]; then
  expect 2 "not a positive number of seconds" /usr/bin/python3 "$root/tools/fuzz_cli.py" "$build" nan
  expect 2 "not a positive number of seconds" /usr/bin/python3 "$root/tools/fuzz_cli.py" "$build" -3
  expect 2 "unrecognized arguments" /usr/bin/python3 "$root/tools/fuzz_cli.py" "$build" 1 0 --bogus
  expect 2 "lacks char_gru" /usr/bin/python3 "$root/tools/fuzz_cli.py" /nonexistent 1
fi
[ "$failed" = 0 ] && echo "tools_usage: all checks passed"
exit "$failed"
