# Sourced by the shell scripts of tools/ before they read their arguments:
#   source "$(dirname "$0")/script_args.sh"; script_args "tools/X.sh [BUILD_DIR]" "$@"
# -h / --help prints the calling script's header comment (its lines 2 up to the first line that is
# not a comment) and exits 0; any other first argument starting with '-' is a usage error (exit 2),
# so that an option is never taken for a build directory.
script_args() {
  local usage="$1"
  shift
  case "${1:-}" in
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) echo "$(basename "$0" .sh): unknown option '$1' (usage: $usage; --help for more)" >&2; exit 2 ;;
  esac
}
