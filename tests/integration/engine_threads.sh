#!/usr/bin/env bash
# The thread count is the process's, not a task setting (docs/engine.md):
# a job's top-level "engine": {"threads": 2} reaches its tasks (metrics.json
# engine.threads), `raffle train --engine threads=1` gives the same
# checkpoint bytes as the 2-thread sweep task, the two spellings on the
# command line must agree, and an experiment's engine refuses threads.
# About 5 s.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
D=synthetic:320
M=lenet-5
cat > "$T/thr.json" <<JOB
{"name": "thr", "dataset": "$D", "model": "$M", "engine": {"threads": 2},
 "train": {"iterations": 4, "batch": 32},
 "experiments": [{"kind": "train"}]}
JOB
fail=0
"$RAFFLE" sweep --quiet --store "$T/s" "$T/thr.json" || { echo "FAIL: the sweep"; exit 1; }
id=$(jq -r '.tasks[0].id' "$T/s/thr/report.json")
sw=$T/s/thr/tasks/$id
[ "$(jq '.engine.threads' "$sw/metrics.json")" = 2 ] || { echo "FAIL: the sweep task's engine.threads: $(jq -c .engine "$sw/metrics.json")"; fail=1; }
jq -e '.tasks[0].settings | has("engine") | not' "$T/s/thr/report.json" >/dev/null || { echo "FAIL: threads reached the task's settings"; fail=1; }
"$RAFFLE" train --data "$D" --model "$M" --iterations 4 --batch 32 --engine threads=1 --out "$T/cli" --log-every -1 >/dev/null \
  || { echo "FAIL: raffle train --engine threads=1"; exit 1; }
[ "$(jq '.engine.threads' "$T/cli/metrics.json")" = 1 ] || { echo "FAIL: raffle train's engine.threads"; fail=1; }
if cmp -s "$sw/model.rckpt" "$T/cli/model.rckpt"; then echo "2-thread sweep task and 1-thread raffle train: identical checkpoints"
else echo "FAIL: the 2-thread and 1-thread checkpoints differ"; fail=1; fi
out=$("$RAFFLE" train --data "$D" --model "$M" --iterations 1 --engine threads=2 --threads 3 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'engine threads=2 and --threads 3 disagree' \
  || { echo "FAIL: --engine threads=2 --threads 3: exit $rc: $out"; fail=1; }
sed 's/"engine": {"threads": 2},//; s/{"kind": "train"}/{"kind": "train", "engine": {"threads": 2}}/' "$T/thr.json" > "$T/bad.json"
out=$("$RAFFLE" sweep --quiet --store "$T/s2" "$T/bad.json" 2>&1); rc=$?
[ $rc != 0 ] && echo "$out" | grep -q 'experiments\[0\].engine.threads: does not change results' \
  || { echo "FAIL: an experiment's engine.threads: exit $rc: $out"; fail=1; }
[ ! -e "$T/s2/thr" ] || { echo "FAIL: a refused job left a store"; fail=1; }
exit $fail
