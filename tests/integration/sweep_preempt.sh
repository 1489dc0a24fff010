#!/usr/bin/env bash
# Preemption and resume of training tasks (docs/hpc.md):
# 1. in-process sweep, SIGUSR1 mid-training: exit 75, the task is recorded
#    "preempted" (not failed) with its resume.rckpt in the store; the rerun
#    continues from the saved step and its model.rckpt and metrics are
#    byte-identical to an uninterrupted run's.
# 2. the same under mpirun -np 2 with a walltime deadline (SLURM_JOB_END_TIME
#    with --walltime-margin): the worker's task is told to stop at the
#    deadline, its state travels to rank 0 and back to the worker on rerun.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq mpirun
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
cat > "$T/pre.json" <<'JOB'
{"name": "pre", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 4000, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 300, "retries": 1},
 "experiments": [ {"kind": "train", "seed": [0]} ]}
JOB
fail() { echo "FAIL: $*"; exit 1; }
t0=$(date +%s.%N)
"$RAFFLE" sweep --quiet --store "$T/ref" "$T/pre.json" || fail "reference run"
ref_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
ref_model=$(ls "$T"/ref/pre/tasks/*/model.rckpt)
id=$(basename "$(dirname "$ref_model")")

check_resumed() {   # STORE LABEL
  local L="$1/pre/ledger.jsonl"
  [ "$(grep -c '"event":"preempted"' "$L")" -ge 1 ] || fail "$2: no preempted event"
  grep -q '"event":"failed"' "$L" && fail "$2: a preempted task was recorded as failed"
  [ "$(grep -c '"event":"done"' "$L")" -eq 1 ] || fail "$2: task not done exactly once"
  grep -q "resuming from step" "$1/pre/tasks/$id/log.txt" || fail "$2: the rerun did not resume ($(tail -n 3 "$1/pre/tasks/$id/log.txt"))"
  [ -e "$1/pre/tasks/$id/resume.rckpt" ] && fail "$2: resume.rckpt left after completion"
  cmp "$ref_model" "$1/pre/tasks/$id/model.rckpt" || fail "$2: resumed model.rckpt differs from the uninterrupted run"
  diff <(jq -S 'del(.timing)' "$T/ref/pre/tasks/$id/metrics.json") <(jq -S 'del(.timing)' "$1/pre/tasks/$id/metrics.json") \
    || fail "$2: resumed metrics differ"
  echo "$2: $(grep -o 'resuming from step [0-9]*' "$1/pre/tasks/$id/log.txt"), model and metrics identical"
}

# 1. signal
"$RAFFLE" sweep --store "$T/a" --work "$T/w" --keep-work "$T/pre.json" 2>"$T/a.log" &
p=$!
for _ in $(seq 1 300); do
  ls "$T"/w/pre.*/local/"$id"/log.txt >/dev/null 2>&1 && grep -qs "step [0-9]*/" "$T"/w/pre.*/local/"$id"/log.txt && break
  sleep 0.05
done
kill -USR1 $p
wait $p; rc=$?
[ $rc -eq 75 ] || { cat "$T/a.log"; fail "signal: exit $rc, expected 75 (stopped)"; }
[ -s "$T/a/pre/tasks/$id/resume.rckpt" ] || fail "signal: no resume.rckpt in the store"
"$RAFFLE" sweep --quiet --store "$T/a" "$T/pre.json" || fail "signal: rerun"
check_resumed "$T/a" "signal"

# 2. walltime under MPI
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# The deadline falls a fraction of the reference run's time after launch
# (plus MPI start-up), so the worker's task is stopped mid-training whatever
# the machine's speed; a run that finishes first or never starts is tried
# again earlier/later, and never exercising the resume is a failure.
exercised=0
for frac in 0.5 0.3 0.15; do
  rm -rf "$T/b"
  now=$(date +%s)
  end=$(( now + 120 ))
  margin=$(awk -v r="$ref_s" -v f="$frac" 'BEGIN { print 120 - 1.5 - r * f }')
  SLURM_JOB_END_TIME=$end mpirun -np 2 -x SLURM_JOB_END_TIME "$RAFFLE" sweep --store "$T/b" --walltime-margin "$margin" "$T/pre.json" >"$T/b.log" 2>&1
  rc=$?
  grep -q "walltime" "$T/b.log" || { cat "$T/b.log"; fail "walltime: no walltime message"; }
  if [ $rc -eq 0 ]; then
    echo "walltime: deadline at $frac of the reference run (${ref_s%.*} s): the task finished first; trying earlier"
    continue
  fi
  grep -q '"event":"started"' "$T/b/pre/ledger.jsonl" || { cat "$T/b.log"; fail "walltime: the resumable task was not started"; }
  grep -q "Exit code:    75\|exit code 75\|stopped early" "$T/b.log" || { cat "$T/b.log"; fail "walltime: exit $rc"; }
  mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/b" "$T/pre.json" >"$T/b2.log" 2>&1 || { cat "$T/b2.log"; fail "walltime: rerun"; }
  check_resumed "$T/b" "walltime (2 ranks)"
  exercised=1
  break
done
[ $exercised -eq 1 ] || fail "walltime: the task always finished before the deadline: resume under MPI not exercised"
echo "preempt: ok"
