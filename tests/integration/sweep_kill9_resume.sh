#!/usr/bin/env bash
# A sweep killed with kill -9 (a session or allocation that ends without a
# signal the sweep can act on) loses at most --resume-every seconds of a
# long training task: the periodic resume point it left in its scratch
# directory is salvaged by the next run (coord.c salvage_resume_points) and
# the task resumes from it, with a model byte-identical to an uninterrupted
# run's. 1. in-process; 2. under mpirun -np 2 (the worker's scratch).
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq mpirun pgrep
T=$(mktemp -d); trap 'pkill -9 -f "$T/raffle" 2>/dev/null; rm -rf "$T"' EXIT
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
cat > "$T/k.json" <<'JOB'
{"name": "k", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 3000, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 600, "retries": 1},
 "experiments": [ {"kind": "train", "seed": [0]} ]}
JOB
fail() { echo "FAIL: $*"; exit 1; }
"$RAFFLE" sweep --quiet --store "$T/ref" "$T/k.json" || fail "reference run"
ref_model=$(ls "$T"/ref/k/tasks/*/model.rckpt)
id=$(basename "$(dirname "$ref_model")")

# waits until a periodic resume point exists under WORK, then kill -9 of every raffle process
kill_after_save() {   # WORK LABEL
  saved() { ls "$1"/k.*/local/"$id"/resume.rckpt "$1"/k.*/rank*/tasks/"$id"/resume.rckpt 2>/dev/null | grep -q .; }
  for _ in $(seq 1 600); do
    saved "$1" && break
    sleep 0.05
  done
  saved "$1" || fail "$2: no periodic resume point appeared"
  sleep 0.3
  pkill -9 -f "$T/raffle"; pkill -9 -f "mpirun.*$T/raffle"
  sleep 0.5
}

check() {   # STORE LABEL
  local L="$1/k/ledger.jsonl"
  [ "$(grep -c '"event":"done"' "$L")" -eq 1 ] || fail "$2: task not done exactly once"
  grep -q "resuming from step" "$1/k/tasks/$id/log.txt" || fail "$2: the rerun started from step 0 ($(head -n 2 "$1/k/tasks/$id/log.txt"))"
  cmp "$ref_model" "$1/k/tasks/$id/model.rckpt" || fail "$2: resumed model.rckpt differs from the uninterrupted run"
  ls "$3"/k.salvage/*.rckpt >/dev/null 2>&1 && fail "$2: a salvaged resume point was left behind"
  echo "$2: $(grep -o 'resuming from step [0-9]*' "$1/k/tasks/$id/log.txt"), model identical"
}

# 0. a salvaged file that is not a usable resume point of the task
#    (damaged, another raffle's format) is dropped and the task starts over
mkdir -p "$T/w0/k.salvage" && head -c 5000 /dev/urandom > "$T/w0/k.salvage/$id.rckpt"
"$RAFFLE" sweep --quiet --store "$T/z" --work "$T/w0" "$T/k.json" 2>"$T/z.log" || { cat "$T/z.log"; fail "damaged salvage: run"; }
cmp "$ref_model" "$T/z/k/tasks/$id/model.rckpt" || fail "damaged salvage: model differs"
[ -e "$T/w0/k.salvage/$id.rckpt" ] && fail "damaged salvage: left in place"
echo "damaged salvage: dropped, task ran from step 0"

# 1. in-process
"$RAFFLE" sweep --quiet --store "$T/a" --work "$T/wa" --resume-every 0.2 "$T/k.json" 2>"$T/a.log" &
kill_after_save "$T/wa" "in-process"
"$RAFFLE" sweep --quiet --store "$T/a" --work "$T/wa" "$T/k.json" 2>>"$T/a.log" || { cat "$T/a.log"; fail "in-process: rerun"; }
check "$T/a" "in-process" "$T/wa"

# 2. mpirun -np 2: the task runs on rank 1, its scratch is rank 1's
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/b" --work "$T/wb" --resume-every 0.2 "$T/k.json" >"$T/b.log" 2>&1 &
kill_after_save "$T/wb" "mpirun"
mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/b" --work "$T/wb" "$T/k.json" >>"$T/b.log" 2>&1 || { cat "$T/b.log"; fail "mpirun: rerun"; }
check "$T/b" "mpirun" "$T/wb"
echo "sweep_kill9_resume: ok"
