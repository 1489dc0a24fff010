#!/usr/bin/env bash
# A hung and a killed worker host in the three-host namespace cluster
# (issue 24; the trial is tests/integration/multihost_faults.bash):
# 1. hang-worker: every raffle process on h3 is stopped (SIGSTOP) mid-sweep:
#    rank 0 gives rank 2 up within the heartbeat timeout (2 s), records its
#    task lost and runs it on h2, finishes the sweep and ends it (exit 76),
#    which kills the stopped processes (the launcher reaches them) within
#    5 s of rank 0's end (killing them earlier would make Open MPI end the
#    whole job);
# 2. kill-worker: every raffle process on h3 is killed: Open MPI's runtime
#    ends the whole job (SIGCONT, SIGTERM, SIGKILL to every rank over 2 s);
#    rank 0, signalled by its launcher, pings the workers and records h3's
#    task lost (naming h3) in the run itself, with a line naming h3; the
#    rerun finds nothing left open;
# after each, the rerun finishes every task exactly once and no process is
# left in any namespace. About 35 s.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/multihost_faults.bash"
mf_up
l=$(mf_trial hang-worker 1 2) || fail "hang-worker trial"
mf_check hang-worker "$l"
case $l in *" rc=76 "*) ;; *) fail "hang-worker: exit status is not 76: $l" ;; esac
case $l in *hit=1*) case $l in *recorded_in_run=0*) fail "hang-worker: no lost task recorded" ;; esac ;; esac
grep -q "raffle sweep: lost h3" "$T/log-mf-1" || fail "hang-worker: no line naming h3"
eq=$(echo "$l" | sed -n 's/.* endquiet_s=\([^ ]*\).*/\1/p')
awk -v q="$eq" 'BEGIN { exit !(q != "-" && q < 5) }' || fail "hang-worker: the stopped processes outlived rank 0's end by $eq s"

l=$(mf_trial kill-worker 1 2) || fail "kill-worker trial"
mf_check kill-worker "$l"
case $l in *hit=1*)
  [ -n "$(jq -c 'select(.event=="lost" and .earlier_run != true and .host=="h3")' "$T/mf-2/mf/ledger.jsonl")" ] ||
    fail "kill-worker: rank 0 did not record h3's task lost in the run"
  grep -q "raffle sweep: lost h3 (1 rank(s) dead or unreachable" "$T/log-mf-2" || fail "kill-worker: no line naming h3"
  [ -z "$(jq -c 'select(.event=="lost" and .earlier_run==true)' "$T/mf-2/mf/ledger.jsonl")" ] ||
    fail "kill-worker: the run left attempts open for the rerun" ;; esac
mh_down_check
echo "ok: a stopped host given up and killed after the sweep's end, a killed host's task recorded lost by the run; nothing left, reruns complete"
