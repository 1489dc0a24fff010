#!/usr/bin/env bash
# raffle across three hosts (cluster/netns-cluster.sh: a network namespace,
# address, hostname and scratch directory each), launched by Open MPI's rsh
# launcher through cluster/netns-agent.sh, TCP only:
# 1. a 5-rank sweep of jobs/smoke.json (every experiment kind; rank 0 on h1,
#    ranks 1-2 on h2, 3-4 on h3) finishes every task once, and its
#    checkpoints and metrics (without "timing", which holds the host, rank
#    and timings) are byte-identical to a 3-rank run on h1 alone;
# 2. every ledger line and metrics.json names the host and rank that ran the
#    task, and the hosts are the ones the ranks were placed on;
# 3. per-node scratch: each task ran in its own host's scratch directory
#    (TMPDIR there), under its rank, and in no other host's;
# 4. the traffic crossed the veths: each worker host's eth0 sent at least
#    half the checkpoint bytes its tasks produced, h1's received them (that
#    run has --direct-writes off: every checkpoint through rank 0);
# 5. direct writes (the default, auto): the store is in a directory every
#    host sees, so the probe makes all four workers write their checkpoints
#    into it themselves ("direct" on their done lines, the sweep line says
#    direct_ranks 4), the worker hosts' eth0 carry far less than the
#    checkpoints, and the results are byte-identical to the 1-host run.
# Skipped (exit 77, with the reason) only where network namespaces cannot be
# created (not root, no CAP_SYS_ADMIN, no /run/netns).
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/integration/multihost.bash"
mh_prereqs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mh_up 3
# every experiment kind (prune, lottery, distill, quantize, ofa, noop)
cp "$here/jobs/smoke.json" "$T/smoke.json"
total=$("$RAFFLE" validate --json "$T/smoke.json" | jq .tasks) || fail "validate"

# eth0 byte counters of HOST: "RX TX" (netlink: nsenter does not remount /sys)
bytes() { cl on "$1" ip -s link show eth0 | awk '/RX:/ { getline; rx = $1 } /TX:/ { getline; tx = $1 } END { print rx, tx }'; }
declare -A rx0 tx0
for h in h1 h2 h3; do read -r rx0[$h] tx0[$h] <<<"$(bytes $h)"; done

cd "$T" || exit 1
sweep() {  # HOSTS NP STORE [ARGS...]
  local hosts=$1 np=$2 store=$3; shift 3
  MH_TIMEOUT=300 cl run mpirun --host "$hosts" -np "$np" "$RAFFLE" sweep --quiet --store "$store" "$@" \
    "$T/smoke.json" >"$T/log-$store" 2>&1 || fail "sweep on $hosts: exit $? ($(tail -n 3 "$T/log-$store"))"
  local L="$T/$store/smoke/ledger.jsonl" n dup
  n=$(jq -r 'select(.event=="done") | .task' "$L" | sort -u | wc -l)
  dup=$(jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d | wc -l)
  [ "$n" = "$total" ] || fail "$store: $n of $total tasks done"
  [ "$dup" = 0 ] || fail "$store: $dup task(s) done twice"
}
t0=$(date +%s)
sweep h1:1,h2:2,h3:2 5 multi --keep-work --direct-writes off
t_multi=$(( $(date +%s) - t0 ))
declare -A rx1 tx1
for h in h1 h2 h3; do read -r rx1[$h] tx1[$h] <<<"$(bytes $h)"; done
sweep h1:3 3 single
L="$T/multi/smoke/ledger.jsonl"

# 1. byte-identical results
ck=0
for d in "$T"/single/smoke/tasks/*/; do
  id=$(basename "$d") o="$T/multi/smoke/tasks/$id"
  if [ -f "$d/model.rckpt" ]; then cmp -s "$d/model.rckpt" "$o/model.rckpt" || fail "task $id: checkpoint differs (3 hosts vs 1)"; ck=$((ck + 1)); fi
  diff <(jq -S 'del(.timing)' "$d/metrics.json") <(jq -S 'del(.timing)' "$o/metrics.json") >/dev/null ||
    fail "task $id: metrics differ (3 hosts vs 1)"
done
[ "$ck" -gt 0 ] || fail "no checkpoints compared"

# 2. host and rank on every task's ledger lines and metrics: rank 1-2 on h2, 3-4 on h3
want_host() { case $1 in 1|2) echo h2 ;; 3|4) echo h3 ;; *) echo h1 ;; esac; }
jq -r 'select(.event=="started" or .event=="done") | "\(.rank) \(.host)"' "$L" | sort -u > "$T/placed"
while read -r r h; do
  [ "$h" = "$(want_host "$r")" ] || fail "ledger: rank $r recorded on host '$h', placed on $(want_host "$r")"
done < "$T/placed"
[ "$(cut -d' ' -f2 "$T/placed" | sort -u | tr '\n' ' ')" = "h2 h3 " ] || fail "work did not go to both h2 and h3: $(tr '\n' ' ' < "$T/placed")"
jq -r 'select(.event=="done") | "\(.task) \(.rank) \(.host)"' "$L" > "$T/done"
while read -r id r h; do
  [ "$(jq -r '"\(.timing.rank) \(.timing.host)"' "$T/multi/smoke/tasks/$id/metrics.json")" = "$r $h" ] ||
    fail "task $id: metrics.json does not say rank $r on $h"
done < "$T/done"
[ "$(jq -r '.timing.host' "$T"/single/smoke/tasks/*/metrics.json | sort -u)" = h1 ] || fail "single-host run: metrics name another host than h1"

# 3. per-node scratch: DIR/HOST/scratch/raffle-UID/smoke.PID/rankR/tasks/ID on the host that ran it, nowhere else
uid=$(id -u)
while read -r id r h; do
  for x in h1 h2 h3; do
    n=$(find "$CD/$x/scratch/raffle-$uid" -path "*/rank$r/tasks/$id" -type d 2>/dev/null | wc -l)
    if [ "$x" = "$h" ]; then [ "$n" = 1 ] || fail "task $id (rank $r on $h): not in $h's scratch"
    else [ "$n" = 0 ] || fail "task $id (rank $r on $h): also in $x's scratch"; fi
  done
done < "$T/done"
[ -z "$(find "$CD/h1/scratch" -path '*/rank*' 2>/dev/null)" ] || fail "h1 (rank 0 only) has worker scratch directories"

# 4. traffic over the veths: checkpoints went from h2/h3 to h1
for h in h2 h3; do
  ckb=$(jq -r --arg h "$h" 'select(.event=="done" and .host==$h) | .ckpt_bytes' "$L" | awk '{ s += $1 } END { print s + 0 }')
  sent=$(( tx1[$h] - tx0[$h] ))
  [ "$ckb" -gt 0 ] && [ "$sent" -ge $(( ckb / 2 )) ] || fail "$h: eth0 sent $sent bytes for $ckb checkpoint bytes"
  echo "$h: eth0 sent $sent bytes, its tasks' checkpoints $ckb bytes"
done
got=$(( rx1[h1] - rx0[h1] ))
echo "h1: eth0 received $got bytes"
# 5. direct writes into the shared store
declare -A tx2
for h in h2 h3; do read -r _ tx2[$h] <<<"$(bytes $h)"; done
sweep h1:1,h2:2,h3:2 5 direct
D="$T/direct/smoke/ledger.jsonl"
[ "$(jq -r 'select(.event=="sweep") | "\(.writes) \(.direct_ranks)"' "$D")" = "auto 4" ] ||
  fail "direct: the probe did not find all 4 workers seeing the store: $(jq -c 'select(.event=="sweep")' "$D")"
nd=$(jq -r 'select(.event=="done" and .ckpt_bytes > 0 and .direct != true) | .task' "$D" | wc -l)
[ "$nd" = 0 ] || fail "direct: $nd checkpoint(s) still went through rank 0"
for d in "$T"/single/smoke/tasks/*/; do
  id=$(basename "$d") o="$T/direct/smoke/tasks/$id"
  if [ -f "$d/model.rckpt" ]; then cmp -s "$d/model.rckpt" "$o/model.rckpt" || fail "task $id: checkpoint differs (direct writes vs 1 host)"; fi
  diff <(jq -S 'del(.timing)' "$d/metrics.json") <(jq -S 'del(.timing)' "$o/metrics.json") >/dev/null || fail "task $id: metrics differ (direct)"
done
for h in h2 h3; do
  ckb=$(jq -r --arg h "$h" 'select(.event=="done" and .host==$h) | .ckpt_bytes' "$D" | awk '{ s += $1 } END { print s + 0 }')
  read -r _ t <<<"$(bytes $h)"
  sent=$(( t - tx2[$h] ))
  [ "$sent" -lt $(( ckb / 4 )) ] || fail "direct: $h's eth0 sent $sent bytes for $ckb checkpoint bytes written directly"
  echo "direct: $h: eth0 sent $sent bytes, its tasks wrote $ckb checkpoint bytes into the store"
done
mh_down_check
echo "ok: $total tasks on 3 hosts (${t_multi} s), $ck checkpoints identical to a 1-host run, host/rank recorded, per-node scratch honoured"
