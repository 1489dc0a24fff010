#!/usr/bin/env bash
# Crash safety: kill -9 a worker rank mid-sweep, rerun; kill -9 rank 0 (the
# coordinator) mid-sweep, rerun; the third run finishes. Across the three
# runs no task is lost and none is done twice (one "done" ledger line per
# task), and the reruns reuse what was done.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq pgrep
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# a private copy: the runs compared must all use the same build, even if the
# tree is rebuilt meanwhile
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
cat > "$T/resume.json" <<'JOB'
{"name": "resume", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 150, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 60, "retries": 1},
 "experiments": [
   {"kind": "train", "seed": [0, 1, 2, 3]},
   {"kind": "prune", "method": "magnitude", "sparsity": [0.5, 0.8, 0.9], "seed": [0, 1], "finetune": {"iterations": 30}}]}
JOB
total=$("$RAFFLE" validate --json "$T/resume.json" | jq .tasks)
L="$T/s/resume/ledger.jsonl"
ndone() { local n; n=$(grep -c '"event":"done"' "$L" 2>/dev/null); echo "${n:-0}"; }

# run_and_kill RANK AFTER: start a 3-rank sweep, SIGKILL rank RANK once AFTER more tasks are done
run_and_kill() {
  local want=$(( $(ndone) + $2 ))
  mpirun -np 3 --oversubscribe "$RAFFLE" sweep --quiet --store "$T/s" "$T/resume.json" >"$T/log" 2>&1 &
  local mp=$! victim="" i
  for i in $(seq 1 400); do
    [ "$(ndone)" -ge "$want" ] && break
    kill -0 $mp 2>/dev/null || break
    sleep 0.1
  done
  for p in $(pgrep -P $mp); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then victim=$p; fi
  done
  [ -n "$victim" ] || { echo "rank $1 not found (sweep ended before the kill?)"; cat "$T/log"; exit 1; }
  kill -9 "$victim"
  wait $mp
  echo "killed rank $1 with $(ndone) done"
}
run_and_kill 1 2
d1=$(ndone)
run_and_kill 0 2
d2=$(ndone)
[ "$d1" -lt "$total" ] && [ "$d2" -lt "$total" ] || { echo "the kills came too late to test anything ($d1, $d2 of $total)"; exit 1; }
timeout 120 mpirun -np 3 --oversubscribe "$RAFFLE" sweep --quiet --store "$T/s" "$T/resume.json" || { echo "final run failed"; exit 1; }
done_n=$(jq -r 'select(.event=="done") | .task' "$L" | sort -u | wc -l)
dup=$(jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d | wc -l)
[ "$done_n" = "$total" ] || { echo "$done_n of $total tasks done"; exit 1; }
[ "$dup" = 0 ] || { echo "$dup task(s) done twice"; jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d; exit 1; }
reused=$(jq -s '[.[] | select(.event=="sweep")] | map(.reused)' "$L" | jq -c .)
[ "$(jq -s '[.[] | select(.event=="sweep")] | .[1].reused' "$L")" -ge "$d1" ] || { echo "second run reused less than the first finished: $reused"; exit 1; }
for id in $(jq -r 'select(.event=="done") | .task' "$L"); do
  [ -s "$T/s/resume/tasks/$id/metrics.json" ] && [ -s "$T/s/resume/tasks/$id/model.rckpt" ] || { echo "task $id: files missing"; exit 1; }
done
echo "ok: $total tasks, each done exactly once over 3 runs (killed worker at $d1 done, rank 0 at $d2 done; reused per run $reused)"
