#!/usr/bin/env bash
# Issue 19 ("sweeps a cluster user can trust"), the coordinator, store and CLI
# defects, each as a user meets it; every case fails on the code before the
# fix (docs/hardening.md maps defects to tests):
#  d1  a full store under mpirun -np 3 ends every rank promptly with the
#      reason (it deadlocked: rank 0 in MPI_Barrier, a worker in MPI_Send)
#  d2  walltime: a resumable task longer than the time left starts and saves
#      its state at the deadline; the estimate counts that state; a task that
#      cannot fit a whole allocation is refused; no progress is not exit 75
#  d6  a second sweep of the same store is refused naming host and pid
#  d8  --store ftp://... is an error, not a directory "ftp:"
#  d9  raffle fetch of a refused URL leaves no .part
#  d10 raffle validate of a FIFO returns at once
#  d12 numbers beyond range are errors (seed above 2^64, options)
#  d13 the temp files and scratch of a kill -9'd run are swept by the next
#  d14 a task child killed from outside is "killed" and retried, not "oom"
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq pgrep   # d1 without mount rights builds the fault shim with cc, the compiler raffle was built with
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
here=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/raffle-trust.XXXXXX)
MNT=""
cleanup() {
  [ -n "$MNT" ] && umount -l "$MNT" 2>/dev/null
  jobs -p | xargs -r kill -9 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
cp "$RAFFLE" "$T/raffle" && RAFFLE="$T/raffle"
t_start=$(date +%s)
fail() { echo "FAIL: $*"; exit 1; }
ledger_count() { jq -r --arg e "$2" 'select(.event==$e) | .task' "$1" | wc -l; }
# every task of the ledger's job done exactly once
done_once() {
  local L=$1 id n
  for id in $(jq -r 'select(.event=="queued") | .task' "$L" | sort -u); do
    n=$(jq -r --arg id "$id" 'select(.event=="done" and .task==$id) | .task' "$L" | wc -l)
    [ "$n" -eq 1 ] || fail "$2: task $id done $n times"
  done
}
# float seconds since the epoch, D seconds from now
end_in() { awk -v d="$1" -v t="$(date +%s.%N)" 'BEGIN { printf "%.3f", t + d }'; }

# ---- d8, d9, d10, d12: the CLI refuses at once ------------------------------
cat > "$T/small.json" <<'JOB'
{"name": "small", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 2}]}
JOB
(cd "$T" && "$RAFFLE" sweep --quiet --store ftp://127.0.0.1/x small.json 2>"$T/d8.err"); rc=$?
[ $rc -eq 2 ] || fail "d8: sweep --store ftp://... exited $rc, expected 2 ($(cat "$T/d8.err"))"
ls -d "$T"/ftp* >/dev/null 2>&1 && fail "d8: a local directory $(ls -d "$T"/ftp*) was created"
grep -q "unsupported URL scheme" "$T/d8.err" || fail "d8: message: $(cat "$T/d8.err")"
port=$(( 40000 + RANDOM % 20000 ))
mkdir -p "$T/got"
"$RAFFLE" fetch "http://127.0.0.1:$port/store/x/" -o "$T/got" 2>"$T/d9.err" && fail "d9: fetch from a closed port succeeded"
[ -z "$(find "$T/got" -name '*.part')" ] || fail "d9: fetch left $(find "$T/got" -name '*.part')"
mkfifo "$T/fifo.json"
timeout 10 "$RAFFLE" validate "$T/fifo.json" 2>"$T/d10.err"; rc=$?
[ $rc -eq 124 ] && fail "d10: raffle validate of a FIFO blocked"
[ $rc -eq 1 ] && grep -q "not a regular file" "$T/d10.err" || fail "d10: exit $rc: $(cat "$T/d10.err")"
sed 's/"synthetic"/"synthetic:64:18446744073709551616"/' "$T/small.json" > "$T/seed.json"
"$RAFFLE" validate "$T/seed.json" >/dev/null 2>"$T/d12.err" && fail "d12: a seed above 2^64 was accepted"
grep -q "out of range" "$T/d12.err" || fail "d12: message: $(cat "$T/d12.err")"
"$RAFFLE" sweep --retries 99999999999999999999 --store "$T/s12" "$T/small.json" 2>"$T/d12b.err"; rc=$?
[ $rc -eq 2 ] || fail "d12: --retries 99999999999999999999 exited $rc: $(cat "$T/d12b.err")"
echo "d8 d9 d10 d12: refused at once"

# ---- d6: two sweeps of one store ---------------------------------------------
cat > "$T/two.json" <<'JOB'
{"name": "two", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 4, "sleep_ms": 2000}]}
JOB
"$RAFFLE" sweep --quiet --store "$T/s6" "$T/two.json" 2>"$T/d6a.err" &
p1=$!
for _ in $(seq 1 200); do grep -qs '"event":"started"' "$T/s6/two/ledger.jsonl" && break; sleep 0.05; done
s0=$(date +%s)
timeout 60 mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/s6" "$T/two.json" >"$T/d6b.err" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "d6: the second sweep exited $rc"
[ $(( $(date +%s) - s0 )) -lt 30 ] || fail "d6: the second sweep took $(( $(date +%s) - s0 )) s to give up"
grep -q "in use by another sweep (host $(hostname), pid $p1," "$T/d6b.err" || fail "d6: holder not named: $(head -n 3 "$T/d6b.err")"
wait $p1 || fail "d6: the first sweep failed: $(cat "$T/d6a.err")"
L="$T/s6/two/ledger.jsonl"
[ "$(ledger_count "$L" sweep)" -eq 1 ] || fail "d6: $(ledger_count "$L" sweep) sweeps wrote the ledger"
[ "$(ledger_count "$L" done)" -eq 4 ] || fail "d6: $(ledger_count "$L" done) done events for 4 tasks"
done_once "$L" d6
echo "d6: the second sweep refused: $(grep -o 'in use by another sweep[^:]*' "$T/d6b.err" | head -n 1)"

# ---- d14: a task child killed from outside -----------------------------------
cat > "$T/kill.json" <<'JOB'
{"name": "kill", "dataset": "synthetic:600", "model": "lenet-300-100", "limits": {"retries": 1},
 "train": {"iterations": 1500, "batch": 32, "eval_limit": 100},
 "experiments": [{"kind": "train", "seed": [0]}]}
JOB
timeout 120 mpirun -np 2 "$RAFFLE" sweep --quiet --work "$T/w14" --store "$T/s14" "$T/kill.json" >"$T/d14.log" 2>&1 &
mp=$!
child=""
for _ in $(seq 1 300); do child=$(pgrep -f "run $T/w14/" | head -n 1); [ -n "$child" ] && break; sleep 0.05; done
[ -n "$child" ] || fail "d14: no task child appeared"
kill -9 "$child"
wait $mp || fail "d14: the sweep failed: $(tail -n 5 "$T/d14.log")"
L="$T/s14/kill/ledger.jsonl"
cls=$(jq -r 'select(.event=="failed") | .class' "$L" | head -n 1)
[ "$cls" = "killed" ] || fail "d14: the killed attempt is recorded \"$cls\", expected \"killed\""
[ "$(jq -r 'select(.event=="failed") | .retry' "$L" | head -n 1)" = "true" ] || fail "d14: not retried"
[ "$(ledger_count "$L" done)" -eq 1 ] || fail "d14: the task is not done after its retry"
echo "d14: $(jq -r 'select(.event=="failed") | .message' "$L" | head -n 1 | cut -c1-90); retried and done"

# ---- d13: what a kill -9 of rank 0 leaves is swept by the next run ------------
cat > "$T/k13.json" <<'JOB'
{"name": "k13", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 3, "sleep_ms": 1500}]}
JOB
mpirun -np 2 "$RAFFLE" sweep --quiet --work "$T/w13" --store "$T/s13" "$T/k13.json" >"$T/d13a.log" 2>&1 &
mp=$!
for _ in $(seq 1 300); do pgrep -f "run $T/w13/" >/dev/null && break; sleep 0.05; done
r0=""
for p in $(pgrep -f "sweep --quiet --work $T/w13"); do
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=0" && r0=$p
done
[ -n "$r0" ] || fail "d13: rank 0 not found"
kill -9 "$r0"
wait $mp
# the other rank lingers a second or two after mpirun has gone
for _ in $(seq 1 200); do pgrep -f "work $T/w13" >/dev/null || break; sleep 0.1; done
pgrep -f "work $T/w13" >/dev/null && fail "d13: processes of the killed run still alive after 20 s"
[ "$(ls "$T/w13" | wc -l)" -ge 1 ] || fail "d13: the killed run left no scratch (nothing to test)"
left=$(ls "$T/w13" | tr '\n' ' ')
# what a kill between create and rename leaves in the store, and a live writer's file
id=$(jq -r 'select(.event=="queued") | .task' "$T/s13/k13/ledger.jsonl" | head -n 1)
deadpid=$(bash -c 'echo $$')
mkdir -p "$T/s13/k13/tasks/$id"
head -c 942080 /dev/zero > "$T/s13/k13/tasks/$id/.tmp.$deadpid.1"
sleep 300 & live=$!
echo x > "$T/s13/k13/status.json.tmp.$live"
mpirun -np 2 "$RAFFLE" sweep --work "$T/w13" --store "$T/s13" "$T/k13.json" >"$T/d13b.log" 2>&1 || fail "d13: rerun: $(tail -n 5 "$T/d13b.log")"
[ -z "$(ls "$T/w13")" ] || { find "$T/w13"; for d in "$T"/w13/*; do ps -p "${d##*.}" -o pid,stat,cmd; done; cat "$T/d13b.log"; fail "d13: scratch left after the rerun: $(ls "$T/w13") (the killed run left: $left)"; }
[ -e "$T/s13/k13/tasks/$id/.tmp.$deadpid.1" ] && fail "d13: a dead writer's temp file survived the rerun"
[ -e "$T/s13/k13/status.json.tmp.$live" ] || fail "d13: a live writer's temp file was removed"
grep -q "removed [0-9]* temporary file" "$T/d13b.log" || fail "d13: no message about the removed file"
kill $live; wait $live 2>/dev/null
done_once "$T/s13/k13/ledger.jsonl" d13
echo "d13: the kill -9 of rank 0 left $left; the rerun removed them and the dead writer's temp file"

# ---- d2: walltime ------------------------------------------------------------
cat > "$T/wa.json" <<'JOB'
{"name": "wa", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 40000, "batch": 32, "eval_limit": 100},
 "limits": {"retries": 1}, "experiments": [{"kind": "train", "seed": [0]}]}
JOB
# (a) a resumable task whose estimate (~43 s) exceeds the 8 s left starts and saves its state
SLURM_JOB_END_TIME=$(end_in 68) mpirun -np 2 -x SLURM_JOB_END_TIME "$RAFFLE" sweep --store "$T/s2" --walltime-margin 60 \
  "$T/wa.json" >"$T/d2a.log" 2>&1; rc=$?
L="$T/s2/wa/ledger.jsonl"
[ "$(ledger_count "$L" started)" -ge 1 ] || fail "d2: the resumable task was never started ($(grep walltime "$T/d2a.log" | head -n 2))"
[ "$(ledger_count "$L" preempted)" -eq 1 ] || fail "d2: not preempted at the deadline (exit $rc): $(tail -n 3 "$T/d2a.log")"
[ -s "$T"/s2/wa/tasks/*/resume.rckpt ] || fail "d2: no resume.rckpt"
grep -q "stopped early" "$T/d2a.log" || fail "d2: exit $rc, not stopped early"
est1=$(grep -o 'needs ~[0-9]* s and' "$T/d2a.log" | head -n 1 | tr -dc 0-9)
# (b) the estimate counts the saved state: the same task now needs less (the
# rerun is stopped at once: only its estimate is looked at)
SLURM_JOB_END_TIME=$(end_in 55) mpirun -np 2 -x SLURM_JOB_END_TIME "$RAFFLE" sweep --store "$T/s2" --walltime-margin 60 \
  "$T/wa.json" >"$T/d2b.log" 2>&1
est2=$(grep -o 'of the work: ~[0-9]* s of' "$T/d2b.log" | head -n 1 | tr -dc 0-9)
[ -n "$est1" ] && [ -n "$est2" ] && [ "$est2" -lt "$est1" ] || fail "d2: estimate before ${est1:-?} s, after saving ${est2:-?} s"
echo "d2: resumable task started with ~$est1 s needed and 8 s left, saved its state; then ~$est2 s left: $(grep -o 'holds [0-9]*% of the work' "$T/d2b.log")"
# (c) a task that cannot save its state and needs more than a whole allocation is refused
cat > "$T/wb.json" <<'JOB'
{"name": "wb", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 1, "sleep_ms": 60000}, {"kind": "noop", "name": "quick", "count": 1}]}
JOB
s0=$(date +%s)
SLURM_JOB_END_TIME=$(end_in 70) timeout 60 mpirun -np 2 -x SLURM_JOB_END_TIME "$RAFFLE" sweep --store "$T/s2" \
  --walltime-margin 60 "$T/wb.json" >"$T/d2c.log" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "d2: refused case exited $rc"
grep -q "Exit code: *75\|exit code 75\|stopped early" "$T/d2c.log" && fail "d2: a task longer than the allocation makes the sweep ask for a requeue"
L="$T/s2/wb/ledger.jsonl"
jq -s -e 'any(.[]; .event=="failed" and .refused==true)' "$L" >/dev/null || fail "d2: not refused: $(grep walltime "$T/d2c.log" | head -n 2)"
grep -q "more than this whole allocation" "$T/d2c.log" || fail "d2: refusal message"
[ "$(ledger_count "$L" done)" -eq 1 ] || fail "d2: the quick task did not run"
# (d) stopped by the walltime without any progress: exit 1, not 75
SLURM_JOB_END_TIME=$(end_in 55) mpirun -np 2 -x SLURM_JOB_END_TIME "$RAFFLE" sweep --store "$T/s2d" --walltime-margin 60 \
  "$T/two.json" >"$T/d2d.log" 2>&1
grep -q "no task finished or saved its state" "$T/d2d.log" || fail "d2: no-progress message: $(tail -n 3 "$T/d2d.log")"
grep -q "Exit code: *75\|stopped early" "$T/d2d.log" && fail "d2: no progress but exit 75"
echo "d2: refused in $(( $(date +%s) - s0 )) s with exit $rc; a run with no progress exits 1"

# ---- d1: a full store under mpirun -np 3 -------------------------------------
cat > "$T/full.json" <<'JOB'
{"name": "full", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 30, "batch": 32, "eval_limit": 100},
 "experiments": [{"kind": "train", "seed": [0, 1, 2, 3, 4, 5, 6, 7]}]}
JOB
mkdir -p "$T/mnt"
how=""
if [ -z "${RAFFLE_TEST_NO_MOUNT:-}" ] && [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=2m tmpfs "$T/mnt" 2>/dev/null; then
  MNT="$T/mnt"; how="a 2 MiB tmpfs"; pre=()
else
  # no mount rights: the same ENOSPC from the fault shim, from the 40th write on (mid-run, results in flight)
  cc -shared -fPIC -O1 -o "$T/faultio.so" "$here/tests/fault/faultio.c" -ldl || fail "d1: cannot build the fault shim"
  how="ENOSPC injected (tests/fault/faultio.c)"
  pre=(-x LD_PRELOAD="$T/faultio.so" -x FAULTIO_PREFIX="$T/mnt" -x FAULTIO_OP=write -x FAULTIO_NTH=40 -x FAULTIO_ERRNO=ENOSPC -x FAULTIO_STICKY=1)
fi
s0=$(date +%s)
timeout 90 mpirun -np 3 "${pre[@]}" "$RAFFLE" sweep --quiet --store "$T/mnt" "$T/full.json" >"$T/d1.log" 2>&1; rc=$?
dur=$(( $(date +%s) - s0 ))
[ $rc -eq 124 ] && fail "d1: the sweep hung on a full store ($how)"
[ $rc -ne 0 ] || fail "d1: the sweep succeeded on a full store"
grep -q "No space left on device" "$T/d1.log" || fail "d1: the reason is not given: $(head -n 5 "$T/d1.log")"
[ $dur -lt 60 ] || fail "d1: took $dur s to end"
echo "d1: full store ($how): every rank ended in $dur s, exit $rc: $(grep -m1 -o 'error: .*No space left on device' "$T/d1.log" | cut -c1-100)"
echo "sweep_trust: ok ($(( $(date +%s) - t_start )) s)"
