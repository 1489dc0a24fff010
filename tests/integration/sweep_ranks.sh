#!/usr/bin/env bash
# A tiny sweep (dense -> prunes, a lottery chain, no-ops) under mpirun with 3
# and 2 ranks and in-process: every task done exactly once, and the three
# stores hold byte-identical checkpoints and identical deterministic metrics
# (metrics.json without its "timing" object). The lottery chain rewinds to
# step 4, so its rewind point travels between ranks with the checkpoints.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# a private copy: the runs compared must all use the same build, even if the
# tree is rebuilt meanwhile
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
cat > "$T/tiny.json" <<'JOB'
{"name": "tiny", "dataset": "synthetic:400", "model": "lenet-300-100",
 "train": {"iterations": 12, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 60, "retries": 1},
 "experiments": [
   {"kind": "prune", "method": ["magnitude", "random"], "sparsity": [0.5, 0.9], "finetune": {"iterations": 4}},
   {"kind": "lottery", "rounds": 2, "rate": 0.5, "rewind_iteration": 4, "controls": ["reinit"]},
   {"kind": "noop", "count": 2, "chain": 2}]}
JOB
total=$("$RAFFLE" validate --json "$T/tiny.json" | jq .tasks) || { echo "validate failed"; exit 1; }
run() {  # run NP STORE
  if [ "$1" = 1 ]; then "$RAFFLE" sweep --quiet --store "$2" "$T/tiny.json"
  else timeout 120 mpirun -np "$1" --oversubscribe "$RAFFLE" sweep --quiet --store "$2" "$T/tiny.json"; fi
}
for np in 3 2 1; do
  run $np "$T/s$np" || { echo "sweep with $np rank(s) failed"; exit 1; }
  L="$T/s$np/tiny/ledger.jsonl"
  done_n=$(jq -r 'select(.event=="done") | .task' "$L" | sort -u | wc -l)
  dup=$(jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d | wc -l)
  [ "$done_n" = "$total" ] || { echo "np=$np: $done_n of $total tasks done"; exit 1; }
  [ "$dup" = 0 ] || { echo "np=$np: $dup task(s) done twice"; exit 1; }
  jq -e ".summary.done == $total" "$T/s$np/tiny/report.json" >/dev/null || { echo "np=$np: report disagrees"; exit 1; }
  [ -s "$T/s$np/tiny/report.html" ] && [ -s "$T/s$np/tiny/report.csv" ] || { echo "np=$np: report files missing"; exit 1; }
  "$RAFFLE" status "$T/s$np/tiny" | grep -q "finished" || { echo "np=$np: status not finished"; exit 1; }
done
if [ "$(jq -r 'select(.event=="started") | .rank' "$T/s3/tiny/ledger.jsonl" | sort -u | tr '\n' ' ')" != "1 2 " ]; then
  echo "with 3 ranks the work was not spread over ranks 1 and 2"; exit 1
fi
ck=0
for d in "$T"/s1/tiny/tasks/*/; do
  id=$(basename "$d")
  for np in 2 3; do
    o="$T/s$np/tiny/tasks/$id"
    if [ -f "$d/model.rckpt" ]; then cmp -s "$d/model.rckpt" "$o/model.rckpt" || { echo "task $id: checkpoint differs (1 vs $np ranks)"; exit 1; }; ck=$((ck+1)); fi
    diff <(jq -S 'del(.timing)' "$d/metrics.json") <(jq -S 'del(.timing)' "$o/metrics.json") >/dev/null ||
      { echo "task $id: metrics differ (1 vs $np ranks)"; exit 1; }
  done
done
[ "$ck" -gt 0 ] || { echo "no checkpoints compared"; exit 1; }
echo "ok: $total tasks done once each with 3, 2 and 1 rank(s); $ck checkpoint comparisons identical"
