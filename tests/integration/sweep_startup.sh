#!/usr/bin/env bash
# A rank that never joins the sweep (issue 24: faults during start-up,
# before heartbeats run): under `mpirun -np 3`, the process of one rank is
# stopped (SIGSTOP) before it execs raffle, so it never reaches MPI_Init.
# The others would wait in MPI_Init's fence forever; with --startup-timeout 2
# each of them ends within the timeout with one line naming the start-up
# step and exit 69, mpirun passes 69 on, nothing is written into the store
# and no process of the job is left (mpirun kills the stopped one). Once
# for a stopped worker (rank 2), once for a stopped rank 0. Then a healthy
# 3-rank sweep of about 20 s with --startup-timeout 15 finishes (the timeout
# ends at the start-up: it does not cut a sweep that runs longer). About 30 s.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/mpi_local.bash"
cat > "$T/su.json" <<'JOB'
{"name": "su", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 4, "sleep_ms": 1200}]}
JOB

for victim in 2 0; do
  log=$T/log-stop$victim
  t0=$(date +%s.%N)
  # the shell of rank $victim stops itself before it execs raffle
  timeout -k 5 60 mpirun -np 3 sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = "$1" ]; then kill -STOP $$; fi; shift; exec "$@"' \
    sh "$victim" "$RAFFLE" sweep --quiet --startup-timeout 2 --store "$T/s$victim" "$T/su.json" >"$log" 2>&1 &
  mpid=$!
  # mpirun and the three ranks' processes
  for _ in $(seq 1 100); do pids=$(desc "$mpid" | tr '\n' ' '); [ "$(echo $pids | wc -w)" -ge 4 ] && break; sleep 0.05; done
  [ "$(echo $pids | wc -w)" -ge 4 ] || fail "stop $victim: the job's processes not found under mpirun ($pids)"
  wait "$mpid"
  rc=$?
  secs=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  [ "$rc" = 69 ] || fail "stop $victim: exit $rc, expected 69"
  awk -v s="$secs" 'BEGIN { exit !(s < 12) }' || fail "stop $victim: the job ended after $secs s (start-up timeout 2 s)"
  grep -q "^raffle sweep: rank [0-9] on .*: start-up not finished after 2 s (MPI_Init): .*exit 69" "$log" ||
    fail "stop $victim: no start-up line"
  [ ! -e "$T/s$victim/su" ] || fail "stop $victim: the store was written to"
  # shellcheck disable=SC2086
  left=$(wait_gone 5 $pids) || fail "stop $victim: processes left 5 s after mpirun: $left"
  echo "stopped rank $victim before MPI_Init: exit 69 after $secs s, one line per waiting rank, nothing written, nothing left"
done

# a healthy sweep longer than the start-up timeout is not cut by it
# (16 tasks of 2.5 s on two workers: about 20 s, past the 15 s timeout).
# The timeout leaves a healthy start-up room: in CI's fresh root under load
# MPI_Init alone took over 4 s, so a 4 s timeout cut a healthy sweep.
sed 's/"count": 4, "sleep_ms": 1200/"count": 16, "sleep_ms": 2500/' "$T/su.json" > "$T/su16.json"
grep -q '"count": 16' "$T/su16.json" || fail "test set-up: su16.json"
timeout -k 5 120 mpirun -np 3 "$RAFFLE" sweep --quiet --startup-timeout 15 --store "$T/ok" "$T/su16.json" >"$T/log-ok" 2>&1 ||
  fail "a healthy sweep with --startup-timeout 15 failed"
[ "$(jq -r 'select(.event=="done") | .task' "$T/ok/su/ledger.jsonl" | sort -u | wc -l)" = 16 ] || fail "healthy sweep: not every task done"
echo "ok: a rank that never joins ends the start-up within the timeout (exit 69); a healthy sweep is not cut"
