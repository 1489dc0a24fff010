#!/usr/bin/env bash
# What `make test` runs once everything is built: the unit tests, the
# fuzz-corpus replay and the integration scripts, all three even when one
# fails, then one summary: the counts of each, every skip with its reason,
# and a closing line
#   total: P passed, F failed, S skipped
#
#   scripts/run-all-tests.sh "UNIT_BINARIES" "FUZZ_REPLAY_BINARIES" RAFFLE_BINARY
#
# Exit status: 1 if any part failed, or skipped under CI=true
# (scripts/test-counts.sh).
set -u
here=$(cd "$(dirname "$0")" && pwd)
RAFFLE_SUMMARY=$(mktemp); export RAFFLE_SUMMARY
trap 'rm -f "$RAFFLE_SUMMARY"' EXIT
rc=0
# shellcheck disable=SC2086
"$here/run-unit-tests.sh" $1 || rc=1
# shellcheck disable=SC2086
"$here/run-fuzz-tests.sh" $2 || rc=1
"$here/run-integration-tests.sh" "$3" || rc=1

echo
echo "== test summary"
P=0; F=0; S=0
while read -r _ kind p f s; do
  echo "$kind: $p passed, $f failed, $s skipped"
  P=$((P + p)); F=$((F + f)); S=$((S + s))
done < <(grep '^count ' "$RAFFLE_SUMMARY")
grep '^skip ' "$RAFFLE_SUMMARY" | sed 's/^skip /SKIPPED: /'
echo "total: $P passed, $F failed, $S skipped"
exit $rc
