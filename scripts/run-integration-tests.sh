#!/usr/bin/env bash
# Runs every tests/integration/*.sh (but lib.sh, the helper they source) with
# RAFFLE=<binary>. Each script exits 0 (pass), 77 (skipped: its last line
# says why; see tests/integration/lib.sh for when a script may skip) or
# anything else (fail). Prints every skip with its reason and the totals as
#   integration: P passed, F failed, S skipped
# With RAFFLE_SUMMARY=FILE, appends them there (scripts/run-all-tests.sh).
set -u
. "$(dirname "$0")/test-counts.sh"
RAFFLE=$(realpath "$1"); export RAFFLE
pass=0; fail=0; skip=0; skips=()
for t in tests/integration/*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .sh)
  [ "$name" = lib ] && continue
  log=$(mktemp)
  # Open MPI's shared-memory segments (vader_segment.HOST.JOBID.RANK) go in a
  # directory of this test's own, removed afterwards: ranks killed by the
  # fault tests leave theirs behind (4 MiB each, in /dev/shm: memory), and
  # Slurm-launched ranks name them after the Slurm job id, which every test
  # cluster starts at 1, so two test runs on one machine would attach to
  # each other's segments (seen: SEGV in mca_btl_vader_poll_handle_frag).
  shm=$(mktemp -d "${RAFFLE_TEST_SHM:-/dev/shm}/raffle-test.XXXXXX" 2>/dev/null || mktemp -d)
  start=$(date +%s)
  OMPI_MCA_btl_vader_backing_directory=$shm bash "$t" >"$log" 2>&1; rc=$?
  rm -rf "$shm"
  dur=$(( $(date +%s) - start ))
  case $rc in
    0)  pass=$((pass + 1)); echo "integration $name: ok (${dur}s)" ;;
    77) skip=$((skip + 1)); why=$(tail -n 1 "$log"); why=${why#SKIP: }
        skips+=("integration $name: $why"); echo "integration $name: SKIPPED: $why" ;;
    *)  fail=$((fail + 1)); echo "integration $name: FAILED (exit $rc, ${dur}s)"; tail -n 40 "$log" ;;
  esac
  rm -f "$log"
done
finish integration "$pass" "$fail" "$skip" "${skips[@]}"
