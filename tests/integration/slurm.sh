#!/usr/bin/env bash
# raffle under a real single-node Slurm on 127.0.0.1 (cluster/slurm-local.sh):
# 1. a sweep submitted with sbatch and cluster/raffle.sbatch (srun --mpi=pmix,
#    2 tasks) finishes with every task done, and the ledger and report.json
#    carry the Slurm job id;
# 2. preemption: USR1 to the batch shell mid-run (what --signal=B:USR1@N
#    does before the walltime); the sweep stops, the running training task
#    saves its state and is recorded "preempted", the template requeues the
#    job, and the requeued run (SLURM_RESTART_COUNT=1) resumes it: every task
#    done exactly once, none failed, the preempted one resumed from its step.
# Skipped (exit 77, with the reason) without root; a missing Slurm package
# is a missing prerequisite (tests/integration/lib.sh), and a cluster that
# does not start is a failure.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_root "the local Slurm cluster runs munged and slurmd"
need_cmd munged munge unmunge slurmctld slurmd sbatch srun scontrol scancel jq
here=$(cd "$(dirname "$0")/../.." && pwd)
t_start=$(date +%s)
T=$(mktemp -d /tmp/raffle-slurm.XXXXXX)
chmod 755 "$T"
cleanup() { "$here/cluster/slurm-local.sh" stop "$T/slurm" >/dev/null 2>&1; rm -rf "$T"; }
trap cleanup EXIT
if ! "$here/cluster/slurm-local.sh" start "$T/slurm" >"$T/env" 2>"$T/start.err"; then
  cat "$T/start.err"; echo "FAIL: the local Slurm cluster did not start: $(tail -n 1 "$T/start.err")"; exit 1
fi
eval "$(cat "$T/env")"
export SLURM_CONF
srun --mpi=list 2>&1 | grep -q pmix || missing "this Slurm has no PMIx plugin (srun --mpi=list)"
cp "$RAFFLE" "$T/raffle"
# Open MPI's shared-memory segments are named after the Slurm job id, which
# every test cluster starts at 1: keep them in this test's directory
# (scripts/run-integration-tests.sh gives each test its own already).
mkdir -p "$T/shm"
export OMPI_MCA_btl_vader_backing_directory=${OMPI_MCA_btl_vader_backing_directory:-$T/shm}
fail() { echo "FAIL: $*"; for f in "$T"/out-*.txt; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done; exit 1; }

# submit JOB.json: prints the job id
submit() {
  sbatch --parsable --ntasks=2 --time=10 --chdir="$T" -o "$T/out-%j.txt" \
    --export=ALL,RAFFLE="$T/raffle",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    "$here/cluster/raffle.sbatch" "$1" "$T/store"
}
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
restarts() { scontrol show job "$1" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2; }
# wait_done ID RESTARTS SECONDS: until the job completed after RESTARTS
# requeues (SECONDS is a hang guard, generous: under ASan at load 20 the
# requeued run alone took over 150 s). A requeue goes RUNNING -> PENDING (reason BeginTime: Slurm holds
# the job cred_expire + 1 s, 21 s here, cluster/slurm-lib.sh) -> RUNNING; no
# final state is passed through, so any final state other than COMPLETED
# after the wanted restarts is a failure. The test never releases the held
# job early: that lets the old run's late completion message end the new run
# (the cause of an earlier intermittent "job ended FAILED, Restarts=1").
wait_done() {
  local end=$(( $(date +%s) + $3 )) st rs
  while [ "$(date +%s)" -lt "$end" ]; do
    st=$(state "$1"); rs=$(restarts "$1")
    case "$st" in
      COMPLETED) [ "${rs:-0}" -ge "$2" ] && return 0
                 fail "job $1 completed after ${rs:-0} requeues, expected $2" ;;
      FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
        scontrol show job "$1" 2>&1 | sed 's/^/  /'
        tail -n 20 "$T/slurm/slurmctld.log" 2>/dev/null | sed 's/^/  slurmctld: /'
        fail "job $1 ended $st after ${rs:-0} requeues" ;;
    esac
    sleep 1
  done
  fail "job $1 did not finish within $3 s (state $(state "$1"))"
}

# 1. a small sweep
cat > "$T/tiny.json" <<'JOB'
{"name": "tiny", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 30, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 60, "retries": 1},
 "experiments": [
   {"kind": "train", "seed": [0, 1]},
   {"kind": "prune", "method": "magnitude", "sparsity": [0.5, 0.9], "seed": 0, "finetune": {"iterations": 10}},
   {"kind": "noop", "count": 2}]}
JOB
total=$("$T/raffle" validate --json "$T/tiny.json" | jq .tasks)
jid=$(submit "$T/tiny.json") || fail "sbatch"
wait_done "$jid" 0 200
L="$T/store/tiny/ledger.jsonl"
ndone=$(grep -c '"event":"done"' "$L")
[ "$ndone" -eq "$total" ] || fail "tiny: $ndone of $total tasks done"
[ "$(jq -r 'select(.event=="sweep") | .env.slurm.job_id' "$L")" = "$jid" ] || fail "tiny: ledger has no Slurm job id $jid"
[ "$(jq -r '.slurm.job_id' "$T/store/tiny/report.json")" = "$jid" ] || fail "tiny: report.json has no Slurm job id"
grep -q "<summary>Runs: 1</summary>" "$T/store/tiny/report.html" && grep -q "<td class='s'>$jid</td>" "$T/store/tiny/report.html" ||
  fail "tiny: report.html shows no run with Slurm job $jid"
echo "sbatch sweep: $ndone/$total tasks done in job $jid"

# 2. preemption and requeue
# One task long enough to be mid-run 2 s after it starts on any machine
# (30000 steps: ~10 CPU-s at -O2; two 8000-step tasks finished in ~2.6 s
# each in an idle CI root, so the signal fell between them and nothing was
# preempted).
cat > "$T/pre.json" <<'JOB'
{"name": "pre", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 30000, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 300, "retries": 1},
 "experiments": [ {"kind": "train", "seed": [0]} ]}
JOB
total=$("$T/raffle" validate --json "$T/pre.json" | jq .tasks)
L="$T/store/pre/ledger.jsonl"
jid=$(submit "$T/pre.json") || fail "sbatch"
# up to 180 s for the first task to start: at load 18 a helper saw 60 s pass
for _ in $(seq 1 900); do grep -qs '"event":"started"' "$L" && break; sleep 0.2; done
grep -qs '"event":"started"' "$L" || fail "pre: no task started"
sleep 2
scancel --signal=USR1 --batch "$jid" || fail "scancel --signal=USR1"
wait_done "$jid" 1 400
npre=$(grep -c '"event":"preempted"' "$L")
[ "$npre" -ge 1 ] || fail "pre: no task was preempted"
grep -q '"event":"failed"' "$L" && fail "pre: a task was recorded as failed"
for id in $(jq -r 'select(.event=="queued") | .task' "$L" | sort -u); do
  n=$(jq -r --arg id "$id" 'select(.event=="done" and .task==$id) | .task' "$L" | wc -l)
  [ "$n" -eq 1 ] || fail "pre: task $id done $n times"
done
[ "$(grep -c '"event":"done"' "$L")" -eq "$total" ] || fail "pre: not every task done"
for id in $(jq -r 'select(.event=="preempted") | .task' "$L" | sort -u); do
  grep -q "resuming from step" "$T/store/pre/tasks/$id/log.txt" || fail "pre: preempted task $id did not resume"
  echo "pre: task $id $(jq -r --arg id "$id" 'select(.event=="preempted" and .task==$id) | .message' "$L" | head -n 1 | grep -o 'after step [0-9]*'), $(grep -o 'resuming from step [0-9]*' "$T/store/pre/tasks/$id/log.txt")"
done
[ "$(jq -r 'select(.event=="sweep") | .env.slurm.restart_count' "$L" | tr '\n' ' ')" = "0 1 " ] || fail "pre: restart counts in the ledger"
[ "$(jq -r '.slurm.restart_count' "$T/store/pre/report.json")" = "1" ] || fail "pre: report.json restart_count"
echo "slurm: ok ($(( $(date +%s) - t_start )) s)"
