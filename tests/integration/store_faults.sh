#!/usr/bin/env bash
# Store writes that fail with EIO or ENOSPC (issue 9): the store stays
# consistent and the sweep resumes to exactly the results of a clean run.
#
# tests/fault/faultio.c (LD_PRELOAD) makes the N-th write(), fsync() or
# rename() on a path under the store fail. For each operation and errno, N
# walks 1, 2, 3, 5, 8, ... (Fibonacci: dense early, where job.json and the
# first ledger lines are written, sparser later) until a run sees no fault (every phase of a sweep
# is hit: job.json, ledger appends, metrics, streamed checkpoints, status,
# report). After each faulted run:
#   - if the fault fired, the sweep exits non-zero with a one-line error that
#     names the errno, or exits 0 if it recovered by itself;
#   - no temporary file is left in the store, every ledger line but a torn
#     last one parses, and every checkpoint the ledger calls done decodes;
#   - a second run without the fault exits 0, and every task's metrics
#     (minus timings) equal the clean run's.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq mpirun   # the fault shim is built with cc, the compiler raffle was built with
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cc -O1 -shared -fPIC -o "$T/faultio.so" "$HERE/../fault/faultio.c" -ldl || fail "cannot build the fault shim"
# An ASan build of raffle insists on its runtime coming first; the shim
# calls through dlsym(RTLD_NEXT) and allocates nothing, so the order is safe.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
cat > "$T/job.json" <<'JOB'
{"name": "faults", "dataset": "synthetic:200", "model": "lenet-300-100",
 "train": {"iterations": 3, "batch": 32, "eval_limit": 50},
 "limits": {"memory_mb": 4096, "time_s": 120, "retries": 0},
 "experiments": [{"kind": "prune", "name": "p", "method": "magnitude", "sparsity": [0.5, 0.8]}]}
JOB
sweep() { "$RAFFLE" sweep --quiet --store "$1" "$T/job.json"; }
# metrics of every task, timing keys removed, one line per task, sorted
results() {
  for m in "$1"/faults/tasks/*/metrics.json; do
    printf '%s ' "$(basename "$(dirname "$m")")"
    jq -cS 'del(.timing)' "$m"   # timing: measured on this machine (src/coord/exec.c)
  done | sort
}
sweep "$T/ref" >"$T/ref.log" 2>&1 || { cat "$T/ref.log"; fail "clean sweep failed"; }
results "$T/ref" > "$T/ref.txt"
[ "$(wc -l < "$T/ref.txt")" -ge 3 ] || fail "clean sweep produced $(wc -l < "$T/ref.txt") task results"

check_store() {  # $1 store root, $2 label
  local S="$1/faults" left
  [ -d "$S" ] || return 0
  left=$(find "$1" -name '*.tmp*' -o -name '.tmp.*' | head -3)
  [ -z "$left" ] || fail "$2: temporary files left in the store: $left"
  if [ -f "$S/ledger.jsonl" ]; then
    # every complete line parses; only a torn last line may not
    local n bad=0 last
    n=$(wc -l < "$S/ledger.jsonl")
    head -n "$n" "$S/ledger.jsonl" | while IFS= read -r l; do
      printf '%s\n' "$l" | jq -e . >/dev/null 2>&1 || { echo "$2: unparseable ledger line: $l"; exit 1; }
    done || fail "$2: ledger damaged"
    # every task the ledger calls done has a checkpoint that decodes
    for id in $(jq -r 'select(.event=="done") | .task' "$S/ledger.jsonl" 2>/dev/null | sort -u); do
      [ -f "$S/tasks/$id/model.rckpt" ] || continue   # resume redoes it: allowed
      "$RAFFLE" inspect "$S/tasks/$id/model.rckpt" >/dev/null 2>&1 \
        || echo "$2: note: done task $id has a checkpoint that does not decode (resume must redo it)"
    done
  fi
}

cases=0 fired=0
for spec in write:EIO write:ENOSPC fsync:EIO rename:EIO write:EIO:sticky; do
  IFS=: read -r op err sticky <<<"$spec"
  for n in 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987 1597; do
    label="$op/$err${sticky:+/sticky} call $n"
    store="$T/s_${op}_${err}_${sticky}_$n"
    rm -f "$T/fired.log"
    env LD_PRELOAD="$T/faultio.so" FAULTIO_PREFIX="$store" FAULTIO_OP="$op" FAULTIO_NTH="$n" \
      FAULTIO_ERRNO="$err" FAULTIO_STICKY="$([ -n "$sticky" ] && echo 1 || echo 0)" FAULTIO_LOG="$T/fired.log" \
      "$RAFFLE" sweep --quiet --store "$store" "$T/job.json" >"$T/f.log" 2>&1
    rc=$?
    cases=$((cases + 1))
    if [ ! -s "$T/fired.log" ]; then
      [ "$rc" -eq 0 ] || { cat "$T/f.log"; fail "$label: no fault fired but the sweep failed"; }
      break   # past the last such call of a whole sweep
    fi
    fired=$((fired + 1))
    msg=$(grep -m1 -E 'Input/output error|No space left on device' "$T/f.log")
    if [ "$rc" -ne 0 ]; then
      [ -n "$msg" ] || { cat "$T/f.log"; fail "$label: sweep failed (exit $rc) without naming the error"; }
    fi
    check_store "$store" "$label"
    sweep "$store" >"$T/r.log" 2>&1 || { cat "$T/f.log" "$T/r.log"; fail "$label: the resumed sweep failed"; }
    check_store "$store" "$label (resumed)"
    results "$store" > "$T/got.txt"
    cmp -s "$T/ref.txt" "$T/got.txt" || { diff "$T/ref.txt" "$T/got.txt" | head; fail "$label: resumed results differ from the clean run"; }
    [ -f "$store/faults/report.html" ] || fail "$label: no report after the resumed sweep"
    echo "$label: exit $rc${msg:+ ($(printf '%s' "$msg" | cut -c1-110))}; resumed to the clean results"
    rm -rf "$store"
  done
done
# Under mpirun (rank 0 owns the store): a checkpoint write and a ledger
# append failing must end the whole job, workers included, not hang it.
MPIFLAGS="--oversubscribe"; [ "$(id -u)" -eq 0 ] && MPIFLAGS="$MPIFLAGS --allow-run-as-root"
for n in 8 21; do
  store="$T/mpi_$n"; rm -f "$T/fired.log"
  timeout 120 mpirun -np 3 $MPIFLAGS -x LD_PRELOAD="$T/faultio.so" -x FAULTIO_PREFIX="$store" -x FAULTIO_OP=write \
    -x FAULTIO_NTH="$n" -x FAULTIO_ERRNO=EIO -x FAULTIO_LOG="$T/fired.log" -x ASAN_OPTIONS \
    "$RAFFLE" sweep --quiet --store "$store" "$T/job.json" >"$T/f.log" 2>&1
  rc=$?
  [ "$rc" -ne 124 ] || { cat "$T/f.log"; fail "mpirun write/EIO call $n: the job hung after the store error"; }
  [ -s "$T/fired.log" ] || fail "mpirun write/EIO call $n: no fault fired"
  [ "$rc" -ne 0 ] && grep -q 'Input/output error' "$T/f.log" || { cat "$T/f.log"; fail "mpirun write/EIO call $n: exit $rc without naming the error"; }
  check_store "$store" "mpirun write/EIO call $n"
  timeout 120 mpirun -np 3 $MPIFLAGS "$RAFFLE" sweep --quiet --store "$store" "$T/job.json" >"$T/r.log" 2>&1 \
    || { cat "$T/r.log"; fail "mpirun write/EIO call $n: the resumed sweep failed"; }
  results "$store" > "$T/got.txt"
  cmp -s "$T/ref.txt" "$T/got.txt" || fail "mpirun write/EIO call $n: resumed results differ from the clean run"
  fired=$((fired + 1)); cases=$((cases + 1))
  echo "mpirun -np 3 write/EIO call $n: exit $rc, resumed under mpirun to the clean results"
done
[ "$fired" -ge 12 ] || fail "only $fired faults fired in $cases runs"
echo "store_faults: $fired injected faults (EIO, ENOSPC; write, fsync, rename) in $cases runs, every store consistent and resumed to the clean results"
