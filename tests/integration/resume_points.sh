#!/usr/bin/env bash
# Issue 19, defects 4 and 5: a resume point is trusted only when it is whole
# and is this task's.
#  d4  seed 0 is preempted and its resume.rckpt then damaged (cut in half):
#      the rerun discards it with a warning and restarts the task (before:
#      the task failed as "error" on every rerun)
#  d5  seed 0's resume.rckpt copied into seed 1's directory: the rerun
#      refuses it (it names seed 0's task) and seed 1 starts from its
#      beginning (before: "resuming from step N" and a model of the wrong seed)
# Both tasks then end byte-identical to an uninterrupted run. The rerun is
# under mpirun -np 3, so the checks happen before anything ships to a worker.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/raffle-rp.XXXXXX); trap 'rm -rf "$T"' EXIT
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
t_start=$(date +%s)
fail() { echo "FAIL: $*"; exit 1; }
cat > "$T/rp.json" <<'JOB'
{"name": "rp", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 1500, "batch": 32, "eval_limit": 100},
 "limits": {"retries": 1}, "experiments": [{"kind": "train", "seed": [0, 1]}]}
JOB
mpirun -np 3 "$RAFFLE" sweep --quiet --store "$T/ref" "$T/rp.json" >"$T/ref.log" 2>&1 || fail "reference run: $(tail -n 5 "$T/ref.log")"

# one task stopped mid-training: its state goes to the store
"$RAFFLE" sweep --store "$T/s" --work "$T/w" --keep-work "$T/rp.json" 2>"$T/a.log" &
p=$!
for _ in $(seq 1 600); do grep -qs "step [0-9]*/" "$T"/w/rp.*/local/*/log.txt && break; sleep 0.05; done
kill -USR1 $p
wait $p; rc=$?
[ $rc -eq 75 ] || fail "preempt: exit $rc ($(tail -n 3 "$T/a.log"))"
state=$(ls "$T"/s/rp/tasks/*/resume.rckpt 2>/dev/null | head -n 1)
[ -s "$state" ] || fail "preempt: no resume.rckpt in the store"
id0=$(basename "$(dirname "$state")")
id1=$(jq -r 'select(.event=="queued") | .task' "$T/s/rp/ledger.jsonl" | grep -v "$id0" | sort -u | head -n 1)
[ -n "$id1" ] || fail "the second task's id"
# d5: seed 0's state planted in seed 1's directory; d4: seed 0's own state cut in half
mkdir -p "$T/s/rp/tasks/$id1"
cp "$state" "$T/s/rp/tasks/$id1/resume.rckpt"
size=$(stat -c %s "$state")
truncate -s $(( size / 2 )) "$state"

mpirun -np 3 "$RAFFLE" sweep --store "$T/s" "$T/rp.json" >"$T/b.log" 2>&1 || fail "rerun: $(grep -v '^sweep rp: [0-9]' "$T/b.log" | tail -n 8)"
L="$T/s/rp/ledger.jsonl"
grep -q "warning: task $id0: resume.rckpt damaged" "$T/b.log" || fail "d4: no warning for the damaged state: $(grep warning "$T/b.log")"
grep -q "warning: task $id1: resume.rckpt belongs to task $id0" "$T/b.log" || fail "d5: no warning for the foreign state: $(grep warning "$T/b.log")"
[ "$(jq -r 'select(.event=="resume_discarded") | .task' "$L" | sort -u | wc -l)" -eq 2 ] || fail "resume_discarded events"
grep -q '"event":"failed"' "$L" && fail "a task failed: $(jq -r 'select(.event=="failed") | .message' "$L" | head -n 1)"
for id in "$id0" "$id1"; do
  [ "$(jq -r --arg id "$id" 'select(.event=="done" and .task==$id) | .task' "$L" | wc -l)" -eq 1 ] || fail "task $id not done exactly once"
  grep -q "resuming from step" "$T/s/rp/tasks/$id/log.txt" && fail "task $id resumed from a state it must not trust"
  cmp -s "$T/ref/rp/tasks/$id/model.rckpt" "$T/s/rp/tasks/$id/model.rckpt" || fail "task $id: model differs from the uninterrupted run"
  [ -e "$T/s/rp/tasks/$id/resume.rckpt" ] && fail "task $id: resume.rckpt left after completion"
done
echo "d4: $(grep -o "task $id0: resume.rckpt damaged ([^)]*)" "$T/b.log" | cut -c1-100)...: discarded, restarted"
echo "d5: $(grep -o "task $id1: resume.rckpt belongs to task [0-9a-f]*" "$T/b.log"): refused, restarted"
echo "resume_points: ok, both models identical to an uninterrupted run ($(( $(date +%s) - t_start )) s)"
