#!/usr/bin/env bash
# Fault run (issue 19): a 10-task sweep (2 trainings, 4 prunes fine-tuning a
# trained parent, 4 sleeping no-ops) under mpirun -np 3, hit by one fault per
# try at a random moment, then run again without the fault until it
# finishes. Scenarios (TRIES each, default 5):
#   kill-rank0    kill -9 of rank 0 (the coordinator)
#   kill-worker   kill -9 of a worker rank
#   kill-child    kill -9 of a task child (`raffle run`)
#   full-disk     the store on a tmpfs of 0.6-3 MB (the sweep ends with
#                 ENOSPC), then the tmpfs grown and the sweep rerun
#   dav-down      --store http://... to nginx, which is killed mid-sweep and
#                 restarted after it
#   dav-frozen    the same with nginx SIGSTOPped mid-sweep, SIGCONT after it
#   requeue       Slurm (cluster/slurm-local.sh, cluster/raffle.sbatch, srun
#                 --mpi=pmix, 2 tasks): USR1 to the batch shell mid-run, the
#                 template requeues, the requeued job finishes
#   two-sweeps    a second sweep of the same store started 0-3 s after the first
# A try "survived" when the finished store holds every task of a clean
# reference run with identical metrics (less the machine-measured "timing")
# and byte-identical checkpoints. lost: tasks missing or different;
# duplicated: tasks with more than one "done" ledger event (work done twice);
# left: what remains after the recovery: temp files in the store, scratch
# directories, *.part files, raffle processes still alive 10 s later, on the
# server *.upload-* files or files that differ from the local store, a
# non-empty spool; hangs: runs that passed their timeout.
#
# Usage: bench/fault/run.sh [TRIES] [SCENARIO ...]   (root: tmpfs and Slurm)
# Writes bench/results/fault.json and prints the table for docs/hardening.md.
# "notes" per try in fault.json say whether the fault hit a running sweep:
# k<pid> a process was killed, n nothing left to kill (the run had ended);
# e the full disk failed the run, f it fit; s files were spooled by the
# faulted run, x none; requeue: the job's restart count; two-sweeps: r the
# second was refused by the lock, else its exit status.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
tries=${1:-5}
shift || true
scenarios=${*:-kill-rank0 kill-worker kill-child full-disk dav-down dav-frozen requeue two-sweeps}
command -v mpirun >/dev/null && command -v jq >/dev/null || { echo "fault: needs mpirun and jq" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/raffle-fault.XXXXXX)
chmod 755 "$T"
RAFFLE="$T/raffle"
cp build/raffle "$RAFFLE" || { echo "fault: build/raffle missing (make all)" >&2; exit 2; }
MNT="$T/mnt"; mkdir -p "$MNT"
cleanup() {
  mountpoint -q "$MNT" && umount -l "$MNT"
  [ -f "$T/dav/nginx.pid" ] && { kill -CONT "$(cat "$T/dav/nginx.pid")" $(pgrep -P "$(cat "$T/dav/nginx.pid")") 2>/dev/null; scripts/webdav-local.sh stop "$T/dav" >/dev/null 2>&1; }
  [ -d "$T/slurm" ] && cluster/slurm-local.sh stop "$T/slurm" >/dev/null 2>&1
  rm -rf "$T"
}
trap cleanup EXIT
cat > "$T/fault.json" <<'JOB'
{"name": "fault", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 1500, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 120, "retries": 2},
 "experiments": [
   {"kind": "train", "seed": [0, 1]},
   {"kind": "prune", "method": ["magnitude", "random"], "sparsity": [0.5, 0.9], "seed": 0, "finetune": {"iterations": 300}},
   {"kind": "noop", "count": 4, "sleep_ms": 1500}]}
JOB
SWEEP=(sweep --quiet --resume-every 1 --status-every 1)
TIMEOUT=300

echo "fault: reference run" >&2
s0=$(date +%s.%N)
mpirun -np 3 "$RAFFLE" "${SWEEP[@]}" --store "$T/ref" "$T/fault.json" >"$T/ref.log" 2>&1 || { cat "$T/ref.log"; exit 1; }
ref_s=$(awk -v a="$s0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
ids=$(jq -r 'select(.event=="done") | .task' "$T/ref/fault/ledger.jsonl" | sort -u)
ntasks=$(echo "$ids" | wc -l)
echo "fault: reference: $ntasks tasks in $ref_s s" >&2

rand_between() { awk -v a="$1" -v b="$2" -v r="$RANDOM" 'BEGIN { printf "%.2f", a + (b - a) * r / 32767 }'; }

# runs "$@" with the timeout; a hang is logged (runs may be in the background)
timed() {
  timeout "$TIMEOUT" "$@"
  local rc=$?
  [ $rc -eq 124 ] && { echo "$*" >> "$T/hangs.log"; echo "fault: HANG: $*" >&2; }
  return $rc
}
nhangs() { [ -f "$T/hangs.log" ] && wc -l < "$T/hangs.log" || echo 0; }

# sweep STORE [extra args]: one run under mpirun -np 3 (store may be a URL)
sweep() {
  local store=$1; shift
  timed mpirun -np 3 "$RAFFLE" "${SWEEP[@]}" --work "$T/w" --store "$store" "$@" "$T/fault.json"
}

# recover STORE [args]: reruns until exit 0 (at most 4 times)
recover() {
  local k
  for k in 1 2 3 4; do sweep "$@" >>"$T/try.log" 2>&1 && return 0; sleep 1; done
  return 1
}

# pid of rank R of the running sweep (0: the coordinator), or a task child
rank_pid() {
  local p
  for p in $(pgrep -f "raffle sweep --quiet --resume-every 1 --status-every 1 --work $T/w"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
  done
}

# check STORE_DIR: prints "survived lost duplicated left" for the try
check() {
  local dir=$1 L="$1/ledger.jsonl" lost=0 dup=0 left=0 id n
  for id in $ids; do
    if ! [ -f "$dir/tasks/$id/metrics.json" ] ||
       ! diff -q <(jq -S 'del(.timing)' "$T/ref/fault/tasks/$id/metrics.json") <(jq -S 'del(.timing)' "$dir/tasks/$id/metrics.json") >/dev/null; then
      lost=$((lost + 1)); echo "fault: lost: $id (metrics)" >&2; continue
    fi
    if [ -f "$T/ref/fault/tasks/$id/model.rckpt" ] && ! cmp -s "$T/ref/fault/tasks/$id/model.rckpt" "$dir/tasks/$id/model.rckpt"; then
      lost=$((lost + 1)); echo "fault: lost: $id (checkpoint)" >&2; continue
    fi
    n=$(jq -r --arg id "$id" 'select(.event=="done" and .task==$id) | .task' "$L" 2>/dev/null | wc -l)
    [ "$n" -gt 1 ] && { dup=$((dup + 1)); echo "fault: duplicated: $id done $n times" >&2; }
  done
  sleep 10
  n=$(find "$dir" \( -name '.tmp.*' -o -name '*.tmp.[0-9]*' -o -name '*.part' \) | wc -l)
  [ "$n" -gt 0 ] && echo "fault: left: $n temp file(s) in the store: $(find "$dir" -name '*tmp*' | head -n 3)" >&2
  left=$((left + n))
  n=$(find "$T/w" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [ "$n" -gt 0 ] && echo "fault: left: scratch $(ls "$T/w")" >&2
  left=$((left + n))
  n=$(pgrep -f "$T/w" | wc -l)
  [ "$n" -gt 0 ] && echo "fault: left: $n process(es)" >&2
  left=$((left + n))
  [ -s "$dir/.spool/queue" ] && { left=$((left + $(wc -l < "$dir/.spool/queue"))); echo "fault: left: spool $(head -n 2 "$dir/.spool/queue")" >&2; }
  if [ -n "${REMOTE:-}" ]; then
    n=$(find "$REMOTE" -name '*.upload-*' | wc -l)
    [ "$n" -gt 0 ] && echo "fault: left: $n .upload file(s) on the server" >&2
    left=$((left + n))
    n=$(diff -rq -x .spool -x .lock "$dir" "$REMOTE" 2>/dev/null | wc -l)
    [ "$n" -gt 0 ] && echo "fault: left: remote differs: $(diff -rq -x .spool -x .lock "$dir" "$REMOTE" | head -n 2)" >&2
    left=$((left + n))
  fi
  echo "$([ $lost -eq 0 ] && echo 1 || echo 0) $lost $dup $left"
}

declare -A R_TRIED R_SURV R_LOST R_DUP R_LEFT R_HANG R_NOTE
record() {   # SCENARIO "survived lost dup left" hangs_before
  local sc=$1; set -- $2
  R_TRIED[$sc]=$(( ${R_TRIED[$sc]:-0} + 1 ))
  R_SURV[$sc]=$(( ${R_SURV[$sc]:-0} + $1 ))
  R_LOST[$sc]=$(( ${R_LOST[$sc]:-0} + $2 ))
  R_DUP[$sc]=$(( ${R_DUP[$sc]:-0} + $3 ))
  R_LEFT[$sc]=$(( ${R_LEFT[$sc]:-0} + $4 ))
}

dav_start() {
  port=$(( 21000 + RANDOM % 20000 ))
  rm -rf "$T/dav"
  scripts/webdav-local.sh start "$T/dav" "$port" >/dev/null || { echo "fault: nginx did not start" >&2; return 1; }
  URL="http://127.0.0.1:$port/store/"
  REMOTE="$T/dav/www/store/fault"
}
nginx_pids() { local m; m=$(cat "$T/dav/nginx.pid" 2>/dev/null) && echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }

slurm_up=""
slurm_start() {
  [ -n "$slurm_up" ] && return 0
  [ "$(id -u)" -eq 0 ] && scripts/install-deps.sh --with-slurm >/dev/null 2>&1 &&
    cluster/slurm-local.sh start "$T/slurm" >"$T/slurm.env" 2>"$T/slurm.err" || { echo "fault: no Slurm: $(tail -n 1 "$T/slurm.err" 2>/dev/null)" >&2; return 1; }
  eval "$(cat "$T/slurm.env")"
  export SLURM_CONF
  slurm_up=1
}

try_one() {   # SCENARIO TRY
  local sc=$1 k=$2 store="$T/s" at p rc
  rm -rf "$T/s" "$T/w" "$T/try.log"; REMOTE=""
  at=$(rand_between 0.5 "$ref_s")
  case "$sc" in
  kill-rank0|kill-worker|kill-child)
    sweep "$store" >"$T/try.log" 2>&1 &
    local mp=$!
    sleep "$at"
    case "$sc" in
      kill-rank0)  p=$(rank_pid 0) ;;
      kill-worker) p=$(rank_pid $(( 1 + RANDOM % 2 ))) ;;
      kill-child)  p=$(pgrep -f "run $T/w/" | shuf -n 1) ;;
    esac
    [ -n "$p" ] && kill -9 "$p"
    R_NOTE[$sc]="${R_NOTE[$sc]:-}${p:+k}${p:-n}"
    wait $mp
    # a killed rank's peers linger a moment after mpirun has gone
    for _ in $(seq 1 100); do pgrep -f "$T/w" >/dev/null || break; sleep 0.1; done
    recover "$store" ;;
  full-disk)
    local size=$(( 600 + RANDOM % 2400 ))
    mount -t tmpfs -o "size=${size}k" tmpfs "$MNT" || { echo "fault: cannot mount a tmpfs" >&2; return 1; }
    store="$MNT"
    sweep "$store" >"$T/try.log" 2>&1; rc=$?
    [ $rc -eq 0 ] && R_NOTE[$sc]="${R_NOTE[$sc]:-}f" || R_NOTE[$sc]="${R_NOTE[$sc]:-}e"
    mount -o remount,size=64m "$MNT"
    recover "$store" ;;
  dav-down|dav-frozen)
    dav_start || return 1
    sweep "$URL" --store-local "$T/s" --mirror-wait 3 >"$T/try.log" 2>&1 &
    local mp=$!
    sleep "$at"
    if [ "$sc" = dav-down ]; then scripts/webdav-local.sh stop "$T/dav" >/dev/null 2>&1
    else kill -STOP $(nginx_pids); fi
    wait $mp
    [ -s "$T/s/fault/.spool/queue" ] && R_NOTE[$sc]="${R_NOTE[$sc]:-}s" || R_NOTE[$sc]="${R_NOTE[$sc]:-}x"
    if [ "$sc" = dav-down ]; then scripts/webdav-local.sh start "$T/dav" "$port" >/dev/null
    else kill -CONT $(nginx_pids); fi
    recover "$URL" --store-local "$T/s"
    store="$T/s" ;;
  requeue)
    slurm_start || return 1
    local jid
    jid=$(sbatch --parsable --ntasks=2 --time=10 --chdir="$T" -o "$T/slurm-%j.out" \
      --export=ALL,RAFFLE="$RAFFLE",RAFFLE_SWEEP_ARGS="--work $T/w --resume-every 1",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      cluster/raffle.sbatch "$T/fault.json" "$T/s") || return 1
    for _ in $(seq 1 600); do grep -qs '"event":"started"' "$T/s/fault/ledger.jsonl" && break; sleep 0.1; done
    sleep "$at"
    scancel --signal=USR1 --batch "$jid"
    # until the job has sat in a final state for 5 s (a requeue passes
    # through such states on its way back to PENDING)
    local end=$(( $(date +%s) + TIMEOUT )) st rs final=0
    while [ "$(date +%s)" -lt "$end" ]; do
      st=$(scontrol show job "$jid" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
      rs=$(scontrol show job "$jid" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
      case "$st" in
        COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) final=$((final + 1)); [ $final -ge 5 ] && break ;;
        PENDING) final=0 ;;   # a requeued job waits out Slurm's hold (cluster/slurm-lib.sh)
        *) final=0 ;;
      esac
      sleep 1
    done
    [ "$(date +%s)" -ge "$end" ] && { echo "slurm job $jid" >> "$T/hangs.log"; echo "fault: HANG: Slurm job $jid ($st)" >&2; scancel "$jid"; }
    R_NOTE[$sc]="${R_NOTE[$sc]:-}${rs:-0}"
    # a job that ended before the signal reached it needs no recovery
    [ "$st" = COMPLETED ] || recover "$store" ;;
  two-sweeps)
    sweep "$store" >"$T/try.log" 2>&1 &
    local m1=$!
    sleep "$(rand_between 0 3)"
    sweep "$store" >"$T/try2.log" 2>&1; rc=$?
    grep -q "in use by another sweep" "$T/try2.log" && R_NOTE[$sc]="${R_NOTE[$sc]:-}r" || R_NOTE[$sc]="${R_NOTE[$sc]:-}${rc}"
    wait $m1
    recover "$store" ;;
  esac
  local res
  res=$(check "$store/fault")
  record "$sc" "$res"
  mountpoint -q "$MNT" && umount "$MNT"
  [ -f "$T/dav/nginx.pid" ] && scripts/webdav-local.sh stop "$T/dav" >/dev/null 2>&1
  echo "fault: $sc try $k at ${at}s: survived/lost/dup/left = $res" >&2
}

for sc in $scenarios; do
  h0=$(nhangs)
  for k in $(seq 1 "$tries"); do try_one "$sc" "$k"; done
  R_HANG[$sc]=$(( $(nhangs) - h0 ))
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); fam=$(grep -m1 'cpu family' /proc/cpuinfo | awk '{print $NF}')
{
  echo "| fault | tried | survived | lost | duplicated | left behind | hangs |"
  echo "|---|---|---|---|---|---|---|"
  for sc in $scenarios; do
    echo "| $sc | ${R_TRIED[$sc]:-0} | ${R_SURV[$sc]:-0} | ${R_LOST[$sc]:-0} | ${R_DUP[$sc]:-0} | ${R_LEFT[$sc]:-0} | ${R_HANG[$sc]:-0} |"
  done
} | tee "$T/table.md"
mkdir -p bench/results
{
  echo "{\"cpu\": \"$cpu (family $fam)\", \"tasks\": $ntasks, \"reference_s\": $ref_s, \"tries\": $tries, \"scenarios\": {"
  first=1
  for sc in $scenarios; do
    [ $first -eq 1 ] || echo ","
    first=0
    printf '"%s": {"tried": %d, "survived": %d, "lost": %d, "duplicated": %d, "left": %d, "hangs": %d, "notes": "%s"}' \
      "$sc" "${R_TRIED[$sc]:-0}" "${R_SURV[$sc]:-0}" "${R_LOST[$sc]:-0}" "${R_DUP[$sc]:-0}" "${R_LEFT[$sc]:-0}" "${R_HANG[$sc]:-0}" "${R_NOTE[$sc]:-}"
  done
  echo "}}"
} | jq . > bench/results/fault.json
