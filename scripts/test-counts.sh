# Sourced by scripts/run-{unit,fuzz,integration}-tests.sh: their common end.
#   finish KIND PASS FAIL SKIP [SKIP_LINE...]
# prints every skip with its reason and the closing line
#   KIND: P passed, F failed, S skipped
# appends the same to $RAFFLE_SUMMARY when set (scripts/run-all-tests.sh),
# and exits 1 if anything failed, or, under CI=true, if anything skipped: CI's
# machine provides what every test needs, so a skip there is a test that
# silently did not run. One exception: a leg the CPU cannot run (a kernel's
# AVX-512 leg on a CPU without AVX-512; the reason says "this CPU") is a
# visible skip on CI too, never a pass and never a failure, since no package
# can install an instruction set.
finish() {
  local kind=$1 p=$2 f=$3 s=$4 l
  shift 4
  for l in "$@"; do echo "SKIPPED: $l"; done
  echo "$kind: $p passed, $f failed, $s skipped"
  if [ -n "${RAFFLE_SUMMARY:-}" ]; then
    { echo "count $kind $p $f $s"; for l in "$@"; do echo "skip $l"; done; } >> "$RAFFLE_SUMMARY"
  fi
  [ "$f" -eq 0 ] || exit 1
  local hw=0
  for l in "$@"; do case "$l" in *"this CPU"*) hw=$((hw + 1)) ;; esac; done
  [ "$hw" -eq 0 ] || echo "$kind: $hw of the skips are legs this CPU cannot run (allowed on CI, listed above)"
  if [ "$((s - hw))" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "$kind: CI=true and $((s - hw)) skipped for other reasons than the CPU: on CI every test must run" >&2
    exit 1
  fi
  exit 0
}
