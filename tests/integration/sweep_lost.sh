#!/usr/bin/env bash
# Lost and hung ranks on one machine (issue 24; the multi-host faults are
# multihost_faults.sh):
# 1. a hung worker: rank 2 of `mpirun -np 3 raffle sweep --heartbeat 1` is
#    stopped (SIGSTOP, with its task) mid-sweep: rank 0 gives it up within
#    the timeout, records its task "lost" (rank, host; no retry spent) and
#    runs it on rank 1; the sweep ends with exit 76 and a line naming the
#    host; rank 1 (same host) kills rank 2's stopped task child at once
#    (REAP), rank 2 itself when the job ends (the launcher reaches it);
#    every task is done exactly once; none is left;
# 2. a killed run: an in-process sweep killed with kill -9 mid-task leaves
#    an attempt open; the rerun records it "lost" naming the host, and
#    finishes every task exactly once;
# 3. a killed worker: rank 2 of `mpirun -np 3 --heartbeat 5` killed (-9)
#    mid-task: Open MPI ends the job (SIGCONT, SIGTERM, SIGKILL to every
#    rank over 2 s); rank 0, signalled by its launcher, pings the workers and
#    records rank 2's task (and rank 1's, which the launcher kills too)
#    "lost" in the run itself, well before the 5 s heartbeat could, names
#    the host, and the rerun finishes with nothing left open;
# 4. a user's SIGTERM to mpirun (every worker alive): no "lost" line: a stop.
# About 45 s.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/mpi_local.bash"
stopped=""
# shellcheck disable=SC2016
ml_on_exit='kill -CONT $stopped 2>/dev/null'
cat > "$T/lost.json" <<'JOB'
{"name": "lost", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 8, "sleep_ms": 1500}]}
JOB
# has JQ-ARGS...: some input matches (jq 1.6's -e looks at the last input only)
has() { [ -n "$(jq -c "$@")" ]; }
once() {  # LEDGER: every task done exactly once
  local n dup
  n=$(jq -r 'select(.event=="done") | .task' "$1" | sort -u | wc -l)
  dup=$(jq -r 'select(.event=="done") | .task' "$1" | sort | uniq -d | wc -l)
  [ "$n" = 8 ] || fail "$1: $n of 8 tasks done"
  [ "$dup" = 0 ] || fail "$1: $dup task(s) done twice"
}
# waits (up to 20 s) for ledger $1 to show a task started on rank $2
wait_started() {
  local _
  for _ in $(seq 1 200); do
    [ -f "$1" ] && has --argjson r "$2" 'select(.event=="started" and .rank==$r)' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
}
# pids of the processes of MPI rank $2 (the rank and its task child) under
# the mpirun $1: only this test's own processes, never another sweep's
rank_pids() {
  local p
  for p in $(desc "$1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
  done
}

# ---- 1. hung worker -------------------------------------------------------------
L=$T/s/lost/ledger.jsonl
t0=$(date +%s.%N)
timeout -k 5 120 mpirun -np 3 "$RAFFLE" sweep --quiet --heartbeat 1 --store "$T/s" "$T/lost.json" >"$T/log-hung" 2>&1 &
mpid=$!
wait_started "$L" 2
stopped=$(rank_pids "$mpid" 2 | tr '\n' ' ')
[ -n "$stopped" ] || fail "no process of rank 2 found"
# shellcheck disable=SC2086
kill -STOP $stopped
t_stop=$(date +%s.%N)
# the stopped rank's task child: rank 1, on the same host, kills it once
# rank 0 has given rank 2 up (REAP); rank 2 itself stays (stopped) until the
# job ends: killing it would make Open MPI end the whole job at once
ppid_of() { awk '{ sub(/.*\) /, ""); print $2 }' "/proc/$1/stat" 2>/dev/null; }
rank2="" task2=""
for p in $stopped; do case " $stopped " in *" $(ppid_of "$p") "*) task2="$task2 $p" ;; *) rank2=$p ;; esac; done
[ -n "$task2" ] || fail "rank 2's task child not found among $stopped"
reaped=""
for _ in $(seq 1 100); do
  # shellcheck disable=SC2086
  [ -z "$(live_pids $task2)" ] && { reaped=$(awk -v a="$(date +%s.%N)" -v b="$t_stop" 'BEGIN { printf "%.2f", a - b }'); break; }
  sleep 0.05
done
[ -n "$reaped" ] || fail "rank 2's stopped task ($task2) not killed within 5 s of the stop (timeout 1 s)"
grep -q '^[0-9]* (.*) T' "/proc/$rank2/stat" 2>/dev/null || fail "rank 2 ($rank2) not stopped any more when its task was killed"
wait "$mpid"
rc=$?
t_end=$(date +%s.%N)
[ "$rc" = 76 ] || fail "hung worker: exit $rc, expected 76 (ranks lost)"
grep -q "raffle sweep: lost $(hostname)" "$T/log-hung" || fail "no line naming the lost host"
has --arg h "$(hostname)" 'select(.event=="lost" and .rank==2 and .host==$h and .retry==true)' "$L" ||
  fail "no 'lost' ledger line for rank 2 on $(hostname)"
once "$L"
has 'select(.event=="done" and .rank==2)' "$L" && {
  lost_task=$(jq -r 'select(.event=="lost") | .task' "$L")
  has --arg t "$lost_task" 'select(.event=="done" and .task==$t and .rank==2)' "$L" &&
    fail "the lost task was recorded done by the rank that was given up"; }
jq -e '.ranks_lost == 1 and .lost == 1 and .state == "finished"' "$T/s/lost/status.json" >/dev/null ||
  fail "status.json: $(jq -c '{state, lost, ranks_lost}' "$T/s/lost/status.json")"
# rank 2 (and any of its processes) ends with the job: gone or a zombie
# within 10 s of mpirun's exit (Open MPI's SIGKILL comes 2 s after its
# SIGCONT; the bound leaves room for a loaded machine)
# shellcheck disable=SC2086
left=$(wait_gone 10 $stopped) || fail "stopped process(es) left behind 10 s after mpirun's exit: $left"
stopped=""
# detection: the "lost" line's time against the stop
t_lost=$(jq -r 'select(.event=="lost") | .time' "$L" | head -1)
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
det=$(sub "$(date -d "$t_lost" +%s.%N)" "$t_stop")
echo "hung worker: given up after $det s (timeout 1 s), its task killed by rank 1 after $reaped s, exit 76 after $(sub "$t_end" "$t0") s, 8 tasks done once"
has 'select(.event=="rank_lost" and .rank==2 and .reaped_by==1)' "$L" || fail "the rank_lost line does not say rank 1 reaped rank 2"
awk -v d="$det" 'BEGIN { exit !(d > 0.5 && d < 4) }' || fail "detection took $det s with a 1 s timeout"

# ---- 2. a killed run's open attempt --------------------------------------------------
"$RAFFLE" sweep --quiet --store "$T/k" "$T/lost.json" >"$T/log-killed" 2>&1 &
spid=$!
K=$T/k/lost/ledger.jsonl
for _ in $(seq 1 200); do
  [ -f "$K" ] && has 'select(.event=="started")' "$K" 2>/dev/null && break
  sleep 0.1
done
sleep 0.3
kill -9 "$spid"
wait "$spid" 2>/dev/null
open=$(jq -r 'select(.event=="started") | .task' "$K" | tail -1)
"$RAFFLE" sweep --store "$T/k" "$T/lost.json" >"$T/log-rerun" 2>&1 || fail "rerun after kill -9: exit $?"
has --arg t "$open" --arg h "$(hostname)" 'select(.event=="lost" and .task==$t and .earlier_run==true and .host==$h)' "$K" ||
  fail "the rerun did not record the killed run's open attempt as lost"
grep -q "recorded lost" "$T/log-rerun" || fail "the rerun did not say so"
once "$K"

# ---- 3. a killed worker under mpirun: recorded lost by the run itself ---------------
cat > "$T/kw.json" <<'JOB'
{"name": "kw", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 4, "sleep_ms": 1200}]}
JOB
W=$T/w/kw/ledger.jsonl
timeout -k 5 60 mpirun -np 3 "$RAFFLE" sweep --quiet --heartbeat 5 --store "$T/w" "$T/kw.json" >"$T/log-kw" 2>&1 &
mpid=$!
wait_started "$W" 2
sleep 0.3
r2s=" $(rank_pids "$mpid" 2 | tr '\n' ' ') " r2=""
for p in $r2s; do case $r2s in *" $(ppid_of "$p") "*) ;; *) r2=$p ;; esac; done   # the rank, not its task child
[ -n "$r2" ] || fail "killed worker: rank 2 not found"
kill -9 "$r2"
t_kill=$(date +%s.%N)
wait "$mpid"
rc=$?
[ "$rc" = 137 ] || fail "killed worker: mpirun exit $rc, expected 137 (Open MPI's: the killed rank's status)"
grep -q "raffle sweep: lost $(hostname) (1 rank(s) dead or unreachable" "$T/log-kw" || fail "killed worker: no line naming the host"
has --arg h "$(hostname)" 'select(.event=="lost" and .rank==2 and .host==$h and .earlier_run != true)' "$W" ||
  fail "killed worker: rank 0 did not record rank 2's task lost"
t_lost=$(jq -r 'select(.event=="lost" and .rank==2) | .time' "$W" | head -1)
det=$(sub "$(date -d "$t_lost" +%s.%N)" "$t_kill")
awk -v d="$det" 'BEGIN { exit !(d > 0 && d < 2) }' || fail "killed worker: recorded lost $det s after the kill (the launcher's SIGKILL comes after 2 s)"
timeout -k 5 60 mpirun -np 3 "$RAFFLE" sweep --quiet --store "$T/w" "$T/kw.json" >"$T/log-kw-rerun" 2>&1 || fail "killed worker: rerun exit $?"
has 'select(.event=="lost" and .earlier_run==true)' "$W" && fail "killed worker: the rerun found attempts the run left open"
[ "$(jq -r 'select(.event=="done") | .task' "$W" | sort -u | wc -l)" = 4 ] || fail "killed worker: not every task done"
[ -z "$(jq -r 'select(.event=="done") | .task' "$W" | sort | uniq -d)" ] || fail "killed worker: a task done twice"
echo "killed worker: rank 2's task recorded lost by the run $det s after the kill (heartbeat 5 s), mpirun exit 137, rerun complete"

# ---- 4. a user's SIGTERM to mpirun: a stop, nothing recorded lost ---------------------
U=$T/u/kw/ledger.jsonl
timeout -k 5 60 mpirun -np 3 "$RAFFLE" sweep --quiet --heartbeat 5 --store "$T/u" "$T/kw.json" >"$T/log-term" 2>&1 &
mpid=$!
wait_started "$U" 2
kill -TERM "$mpid"
wait "$mpid"
has 'select(.event=="lost")' "$U" && fail "user's SIGTERM to mpirun: attempts recorded lost: $(jq -c 'select(.event=="lost")' "$U")"
echo "ok: hung rank given up and killed, its task run elsewhere; a killed run's open attempt recorded lost by the rerun; a killed worker's task recorded lost by the run; a user's SIGTERM is a stop"
