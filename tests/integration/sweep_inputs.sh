#!/usr/bin/env bash
# Issue 19, defect 3: a task's id includes the contents of the files it
# reads. The issue's repro: a sweep of a spec file m.json (784-32-10,
# 25,450 parameters), the spec edited to 64 units, the sweep rerun (under
# mpirun: rank 0 hashes the files and hands the digests to the workers)
# must train again (50,890 parameters) instead of reusing the old result.
# The report still finds the sweep's ids after the file is gone (the store
# keeps the digests in inputs.json).
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq mpirun
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
RAFFLE=$(cd "$(dirname "$RAFFLE")" && pwd)/$(basename "$RAFFLE")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
spec() {
  printf '{"input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},{"type":"linear","name":"fc1","out":%s},{"type":"relu"},{"type":"linear","name":"fc2","out":10}]}' "$1" > m.json
}
cat > job.json <<'JOB'
{"name": "d3", "dataset": "synthetic:256", "model": "m.json",
 "train": {"iterations": 5, "batch": 32, "eval_limit": 64},
 "experiments": [{"kind": "train"}, {"kind": "prune", "method": "magnitude", "sparsity": 0.5, "finetune": {"iterations": 2}}]}
JOB
spec 32
"$RAFFLE" sweep --quiet --store st job.json >/dev/null 2>&1 || { echo "first sweep failed"; exit 1; }
p1=$(jq '[.tasks[] | select(.kind == "train") | .parameters] | .[0]' st/d3/report.json)
[ "$p1" = 25450 ] || { echo "first sweep: $p1 parameters, expected 25450"; exit 1; }
jq -e '."m.json" | test("^[0-9a-f]{64}$")' st/d3/inputs.json >/dev/null || { echo "inputs.json lacks m.json's digest: $(cat st/d3/inputs.json)"; exit 1; }
spec 64
out=$(timeout 120 mpirun -np 2 "$RAFFLE" sweep --quiet --store st job.json 2>&1) || { echo "second sweep failed: $out"; exit 1; }
p2=$(jq '[.tasks[] | select(.kind == "train") | .parameters] | .[0]' st/d3/report.json)
[ "$p2" = 50890 ] || { echo "after the edit: $p2 parameters, expected 50890 (the old result was reused)"; exit 1; }
reused=$(grep '"event":"sweep"' st/d3/ledger.jsonl | tail -1 | jq '.reused')
[ "$reused" = 0 ] || { echo "the rerun reused $reused task(s) of the old spec"; exit 1; }
# the same content again: nothing to do, every task reused
spec 64
"$RAFFLE" sweep --quiet --store st job.json >/dev/null 2>&1 || { echo "third sweep failed"; exit 1; }
reused=$(grep '"event":"sweep"' st/d3/ledger.jsonl | tail -1 | jq '.reused')
[ "$reused" = 2 ] || { echo "an unchanged spec reran: reused $reused of 2"; exit 1; }
# the report of the store without the file: the ids come from inputs.json
rm m.json
"$RAFFLE" report st/d3 >/dev/null 2>&1 || { echo "report without the spec file failed"; exit 1; }
[ "$(jq '[.tasks[] | select(.status == "done")] | length' st/d3/report.json)" = 2 ] || { echo "report lost the sweep's tasks"; exit 1; }
echo "ok: an edited spec file reruns its tasks (25450 -> 50890 parameters), an unchanged one is reused"
