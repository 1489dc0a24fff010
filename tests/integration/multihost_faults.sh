#!/usr/bin/env bash
# Node loss across three namespace hosts (issue 24; the trial is
# tests/integration/multihost_faults.bash, the fault table bench/netfault/):
# 1. cut-worker: h3's cable is pulled mid-sweep: rank 0 gives rank 2 up
#    within the heartbeat timeout (2 s here), records its task "lost"
#    naming h3 and ends (exit 76; Open MPI's runtime, which lost its daemon
#    on h3, may end the job first), the worker on h3 leaves by itself;
# 2. partition: h1 (rank 0 and mpirun) is cut off from both workers: rank 0
#    records both tasks lost, prints the line naming h2 and h3 and ends the
#    job; mpirun, which would wait for h1's TCP to give up on the cut
#    daemons (about 15 minutes with the kernel's tcp_retries2), is killed
#    half a second later by the guard rank 0 leaves (exit 137); the workers
#    leave within the timeout and end
#    their orted: mpirun is gone within the timeout + 2 s, every process
#    on h2 and h3 (and so everywhere) within the timeout + 5 s (every
#    namespace's process table watched);
# after each, the cable is mended and a rerun finishes every task exactly
# once (0 lost, 0 done twice). About 45 s.
# Skipped (exit 77, with the reason) only where network namespaces cannot be
# created.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/multihost_faults.bash"
mf_up
l=$(mf_trial cut-worker 1 2) || fail "cut-worker trial"
mf_check cut-worker "$l"
case $l in *hit=1*) case $l in *recorded_in_run=0*) fail "cut-worker: rank 0 recorded no lost task" ;; esac ;; esac
d=$(echo "$l" | sed -n 's/.* detect_s=\([^ ]*\).*/\1/p')
awk -v d="$d" 'BEGIN { exit !(d != "-" && d > 0 && d < 5) }' || fail "cut-worker: detection after $d s with a 2 s timeout"
[ "$(jq -r 'select(.event=="lost" and .earlier_run != true) | .host' "$T/mf-1/mf/ledger.jsonl" | sort -u)" = h3 ] ||
  fail "cut-worker: the lost line does not name h3"

l=$(mf_trial partition 1 2) || fail "partition trial"
mf_check partition "$l"
# 137: mpirun killed by rank 0's guard; 76: mpirun ended the job itself first
case $l in *" rc=137 "*|*" rc=76 "*) ;; *) fail "partition: launcher exit status is neither 137 nor 76: $l" ;; esac
grep -q "raffle sweep: lost h2, h3\|raffle sweep: lost h3, h2" "$T/log-mf-2" || fail "partition: no line naming the lost hosts"
# every process of the job gone: mpirun (killed 0.5 s after rank 0's
# end, whatever h1's TCP does) within the timeout + 2 s; on the workers'
# hosts (their ranks, and the orted each of them ends) and so everywhere
# within the timeout + 5 s
v() { echo "$l" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
q=$(v quiet_s) hg=$(v hostgone_s) g=$(v gone_s) lq=$(v launcher_s)
awk -v q="$lq" 'BEGIN { exit !(q > 0 && q < 4) }' || fail "partition: mpirun ended $lq s after the cut (timeout 2 s)"
awk -v q="$q" 'BEGIN { exit !(q > 0 && q < 5) }' || fail "partition: the workers left after $q s (timeout 2 s)"
awk -v q="$hg" 'BEGIN { exit !(q > 0 && q < 7) }' || fail "partition: processes on h2/h3 (orted) left after $hg s (timeout 2 s)"
awk -v q="$g" 'BEGIN { exit !(q > 0 && q < 7) }' || fail "partition: the last process left after $g s (timeout 2 s)"
mh_down_check
echo "ok: a cut worker host and a partitioned rank 0 detected in under 5 s (2 s timeout), tasks recorded lost, nothing left, reruns complete"
