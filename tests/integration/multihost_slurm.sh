#!/usr/bin/env bash
# Multi-node Slurm in the namespace cluster (cluster/netns-cluster.sh up 3
# --slurm: munged and slurmctld on h1, a slurmd on each of h1-h3):
# 1. `srun -N 3 --mpi=pmix` puts one task on each node, each with its own
#    hostname and its node's scratch directory as TMPDIR;
# 2. `sbatch -N 3 cluster/raffle.sbatch JOB STORE` (srun --mpi=pmix inside)
#    runs the sweep with rank 0 on h1 and a worker on each of h2 and h3:
#    every task done once, the ledger's Slurm metadata names the three
#    nodes, tasks name the host that ran them, and checkpoints and metrics
#    (without "timing") equal an in-process run's.
# Skipped (exit 77, with the reason) only where network namespaces cannot be
# created.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/multihost.bash"
mh_prereqs --with-slurm
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)
mh_up 3 --slurm
cl run srun --mpi=list 2>&1 | grep -q pmix || fail "this Slurm has no PMIx plugin (srun --mpi=list)"

# 1. placement and node-local TMPDIR
cl run srun -N 3 -n 3 --mpi=pmix sh -c 'echo "$SLURM_PROCID $(hostname) $TMPDIR"' 2>"$T/log-srun" | sort > "$T/srun" ||
  fail "srun -N 3 --mpi=pmix"
printf '0 h1 %s/h1/scratch\n1 h2 %s/h2/scratch\n2 h3 %s/h3/scratch\n' "$CD" "$CD" "$CD" | diff - "$T/srun" >"$T/log-srun-diff" ||
  fail "srun placement or TMPDIR: $(cat "$T/log-srun-diff")"

# 2. the sweep through the sbatch template
cat > "$T/tiny.json" <<'JOB'
{"name": "tiny", "dataset": "synthetic:400", "model": "lenet-300-100",
 "train": {"iterations": 12, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 60, "retries": 1},
 "experiments": [
   {"kind": "prune", "method": "magnitude", "sparsity": [0.5, 0.9], "finetune": {"iterations": 4}},
   {"kind": "lottery", "rounds": 2, "rate": 0.5, "rewind_iteration": 4},
   {"kind": "noop", "count": 2}]}
JOB
total=$("$RAFFLE" validate --json "$T/tiny.json" | jq .tasks) || fail "validate"
jid=$(cl run sbatch --parsable -N 3 --time=10 --chdir="$T" -o "$T/out-%j.txt" \
  --export=ALL,RAFFLE="$RAFFLE" "$here/cluster/raffle.sbatch" "$T/tiny.json" "$T/store") || fail "sbatch"
st=""
for _ in $(seq 1 240); do
  st=$(cl run scontrol show job "$jid" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
  case "$st" in COMPLETED) break ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) fail "job $jid ended $st" ;; esac
  sleep 0.5
done
[ "$st" = COMPLETED ] || fail "job $jid did not finish in 120 s (state $st)"
L="$T/store/tiny/ledger.jsonl"
[ "$(jq -r 'select(.event=="done") | .task' "$L" | sort -u | wc -l)" = "$total" ] || fail "not every task done"
[ "$(jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d | wc -l)" = 0 ] || fail "a task done twice"
[ "$(jq -r 'select(.event=="sweep") | "\(.env.slurm.job_id) \(.env.slurm.nodelist) \(.env.slurm.nodes) \(.ranks) \(.env.host)"' "$L")" = "$jid h[1-3] 3 3 h1" ] ||
  fail "ledger sweep event: $(jq -c 'select(.event=="sweep") | .env' "$L")"
[ "$(jq -r 'select(.event=="done") | "\(.rank) \(.host)"' "$L" | sort -u | tr '\n' ' ')" = "1 h2 2 h3 " ] ||
  fail "tasks did not run on rank 1 = h2 and rank 2 = h3: $(jq -r 'select(.event=="done") | "\(.rank) \(.host)"' "$L" | sort -u | tr '\n' ' ')"

cl run "$RAFFLE" sweep --quiet --store "$T/ref" "$T/tiny.json" >"$T/log-ref" 2>&1 || fail "in-process reference run"
ck=0
for d in "$T"/ref/tiny/tasks/*/; do
  id=$(basename "$d") o="$T/store/tiny/tasks/$id"
  if [ -f "$d/model.rckpt" ]; then cmp -s "$d/model.rckpt" "$o/model.rckpt" || fail "task $id: checkpoint differs (Slurm 3 nodes vs in-process)"; ck=$((ck + 1)); fi
  diff <(jq -S 'del(.timing)' "$d/metrics.json") <(jq -S 'del(.timing)' "$o/metrics.json") >/dev/null || fail "task $id: metrics differ"
done
[ "$ck" -gt 0 ] || fail "no checkpoints compared"
mh_down_check
echo "ok: srun -N 3 placement, sbatch -N 3 job $jid: $total tasks on h2/h3, $ck checkpoints identical ($(( $(date +%s) - t0 )) s)"
