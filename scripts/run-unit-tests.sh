#!/usr/bin/env bash
# Runs each Criterion test binary given; prints a per-binary line and a total.
# Exit status is non-zero if any binary failed.
set -u
pass=0; fail=0; failed=()
for t in "$@"; do
  [ -x "$t" ] || continue
  if out=$("$t" --jobs 2 2>&1); then
    pass=$((pass + 1))
    echo "$out" | tail -n 1 | sed "s|^|$(basename "$t"): |"
  else
    fail=$((fail + 1)); failed+=("$(basename "$t")")
    echo "$out" | tail -n 40
    echo "FAILED: $t"
  fi
done
echo "unit test binaries: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
