#!/usr/bin/env bash
# Fuzz-corpus replay: runs each replay binary BUILD/fuzz-replay/fuzz_NAME
# given over its committed corpus tests/fuzz/corpus/NAME/ and prints
#   fuzz-replay: P passed, F failed, S skipped        (targets)
# A target whose corpus is empty replays nothing: it is counted as skipped,
# with that reason. With RAFFLE_SUMMARY=FILE, appends the totals and skips
# there (scripts/run-all-tests.sh). Exit status is non-zero if any failed.
set -u
. "$(dirname "$0")/test-counts.sh"
pass=0; fail=0; skip=0; skips=()
for b in "$@"; do
  n=$(basename "$b"); n=${n#fuzz_}
  corpus=tests/fuzz/corpus/$n
  if [ ! -x "$b" ]; then
    fail=$((fail + 1)); echo "fuzz corpus $n: FAILED: $b not built"; continue
  fi
  if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
    skip=$((skip + 1)); skips+=("fuzz-replay $n: $corpus is empty or missing: nothing to replay")
    echo "fuzz corpus $n: SKIPPED: $corpus is empty"; continue
  fi
  if out=$("$b" "$corpus" 2>&1); then
    pass=$((pass + 1)); printf 'fuzz corpus %-12s %s\n' "$n" "$(echo "$out" | tail -n 1)"
  else
    fail=$((fail + 1)); echo "$out" | tail -n 40; echo "fuzz corpus $n: FAILED"
  fi
done
finish fuzz-replay "$pass" "$fail" "$skip" "${skips[@]}"
