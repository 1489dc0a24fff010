# Sourced by scripts/run-{unit,fuzz,integration}-tests.sh: their common end.
#   finish KIND PASS FAIL SKIP [SKIP_LINE...]
# prints every skip with its reason and the closing line
#   KIND: P passed, F failed, S skipped
# appends the same to $RAFFLE_SUMMARY when set (scripts/run-all-tests.sh),
# and exits 1 if anything failed, or, under CI=true, if anything skipped: CI's
# machine provides what every test needs, so a skip there is a test that
# silently did not run.
finish() {
  local kind=$1 p=$2 f=$3 s=$4 l
  shift 4
  for l in "$@"; do echo "SKIPPED: $l"; done
  echo "$kind: $p passed, $f failed, $s skipped"
  if [ -n "${RAFFLE_SUMMARY:-}" ]; then
    { echo "count $kind $p $f $s"; for l in "$@"; do echo "skip $l"; done; } >> "$RAFFLE_SUMMARY"
  fi
  [ "$f" -eq 0 ] || exit 1
  if [ "$s" -ne 0 ] && [ "${CI:-}" = true ]; then
    echo "$kind: CI=true and $s skipped: on CI every test must run" >&2
    exit 1
  fi
  exit 0
}
