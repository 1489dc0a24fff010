#!/usr/bin/env bash
# Runs every tests/integration/*.sh with RAFFLE=<binary>. Each script exits 0
# (pass), 77 (skipped, with a visible reason) or anything else (fail).
set -u
RAFFLE=$(realpath "$1"); export RAFFLE
pass=0; fail=0; skip=0
for t in tests/integration/*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .sh)
  log=$(mktemp)
  start=$(date +%s)
  bash "$t" >"$log" 2>&1; rc=$?
  dur=$(( $(date +%s) - start ))
  case $rc in
    0)  pass=$((pass + 1)); echo "integration $name: ok (${dur}s)" ;;
    77) skip=$((skip + 1)); echo "integration $name: SKIPPED: $(tail -n 1 "$log")" ;;
    *)  fail=$((fail + 1)); echo "integration $name: FAILED (exit $rc)"; tail -n 40 "$log" ;;
  esac
  rm -f "$log"
done
echo "integration: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
