#!/usr/bin/env bash
# A hung and a killed worker host in the three-host namespace cluster
# (issue 24; the trial is tests/integration/multihost_faults.bash):
# 1. hang-worker: every raffle process on h3 is stopped (SIGSTOP) mid-sweep:
#    rank 0 gives rank 2 up within the heartbeat timeout (2 s), records its
#    task lost and runs it on h2, finishes the sweep and ends it (exit 76),
#    which kills the stopped processes (the launcher reaches them);
# 2. kill-worker: every raffle process on h3 is killed: Open MPI's runtime
#    ends the whole job at once (before a heartbeat could notice); the
#    rerun records the attempts the job left open as lost, naming the host;
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

l=$(mf_trial kill-worker 1 2) || fail "kill-worker trial"
mf_check kill-worker "$l"
case $l in *hit=1*)
  [ -n "$(jq -c 'select(.event=="lost" and .earlier_run==true and .host=="h3")' "$T/mf-2/mf/ledger.jsonl")" ] ||
    fail "kill-worker: the rerun did not record h3's open attempt as lost" ;; esac
mh_down_check
echo "ok: a stopped host given up and killed, a killed host's attempts recorded lost by the rerun; nothing left, reruns complete"
