#!/usr/bin/env bash
# Failure handling under mpirun -np 2: an injected crash is retried (limits.
# retries = 1) then recorded with class "crash"; an error is recorded once
# with class "error" and not retried; a hang is killed at the time limit
# ("timeout"); the dependents of each are skipped; other tasks finish; the
# sweep exits 1. Then --fail-fast starts nothing after the first failure.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/faulty.json" <<'JOB'
{"name": "faulty", "dataset": "synthetic", "model": "lenet-300-100",
 "limits": {"memory_mb": 512, "time_s": 3, "retries": 1},
 "experiments": [
   {"kind": "fail", "mode": ["crash", "error", "hang"], "children": 2},
   {"kind": "noop", "count": 4}]}
JOB
timeout 120 mpirun -np 2 --oversubscribe "$RAFFLE" sweep --quiet --store "$T/s" "$T/faulty.json"
rc=$?
[ $rc -ne 0 ] || { echo "sweep with failures exited 0"; exit 1; }
L="$T/s/faulty/ledger.jsonl"
R="$T/s/faulty/report.json"
check() { jq -e "$1" "$R" >/dev/null || { echo "report check failed: $1"; jq -c '.tasks[] | {kind,method,status,attempts,class,message}' "$R"; exit 1; }; }
check '[.tasks[] | select(.method=="fail-crash")][0] | .status=="failed" and .class=="crash" and .attempts==2'
check '[.tasks[] | select(.method=="fail-error")][0] | .status=="failed" and .class=="error" and .attempts==1'
check '[.tasks[] | select(.method=="fail-hang")][0] | .status=="failed" and .class=="timeout" and .attempts==2'
check '[.tasks[] | select(.status=="skipped")] | length == 6'
check '[.tasks[] | select(.status=="done")] | length == 4'
check '.summary.failed == 3 and .summary.skipped == 6 and .summary.done == 4'
[ "$(jq -r 'select(.event=="failed" and .class=="crash") | .retry' "$L" | tr '\n' ' ')" = "true false " ] ||
  { echo "crash not retried exactly once"; exit 1; }
jq -s -e '[.[] | select(.event=="skipped")] | length == 6 and all(.cause | test("^[0-9a-f]{16}$"))' "$L" >/dev/null || { echo "skipped events lack a cause"; exit 1; }
grep -q "Segmentation fault" "$R" || { echo "crash message lacks the signal"; exit 1; }

# --fail-fast: one worker, the error fails first; nothing is started after it
cat > "$T/ff.json" <<'JOB'
{"name": "ff", "dataset": "synthetic", "model": "lenet-300-100", "limits": {"retries": 0},
 "experiments": [{"kind": "fail", "mode": "error", "children": 0}, {"kind": "noop", "count": 5}]}
JOB
"$RAFFLE" sweep --quiet --fail-fast --store "$T/s" "$T/ff.json" && { echo "--fail-fast sweep exited 0"; exit 1; }
started=$(grep -c '"event":"started"' "$T/s/ff/ledger.jsonl")
[ "$started" = 1 ] || { echo "--fail-fast started $started tasks, expected 1"; exit 1; }
jq -e '.state == "stopped" and .queued == 5' "$T/s/ff/status.json" >/dev/null || { echo "status after --fail-fast:"; cat "$T/s/ff/status.json"; exit 1; }
echo "ok: crash retried then failed, error failed once, hang timed out, 6 dependents skipped, 4 done; --fail-fast stopped after 1"
