#!/usr/bin/env bash
# Multi-host fault table (issue 24): each fault TRIES times (default 5) at a
# random moment of a sweep across the three-host namespace cluster
# (cluster/netns-cluster.sh; one trial is mf_trial in
# tests/integration/multihost_faults.bash, which says what each column
# means). Faults: cut-worker, kill-worker, hang-worker, partition. The job:
# 12 no-op tasks of 1 s on two workers (h2, h3), rank 0 on h1, heartbeat
# timeout HB (default 2 s); the fault lands 0.5-4.5 s after the first task
# started (uniform; the sweep takes about 6 s). Root only.
#
# Usage: bench/netfault/run.sh [TRIES] [FAULT ...]
#        bench/netfault/run.sh --table     (the table of the last run again)
# Writes bench/results/netfault.json (every trial; NETFAULT_OUT=FILE writes
# FILE instead) and prints the table for docs/hardening.md. The hosts' TCP
# gives up after tcp_retries2 = RAFFLE_CLUSTER_TCP_RETRIES (default 3, the
# harness's; 15 is the kernel's default), recorded in the file.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
table() {
  local f
  echo "| fault | tried | fault hit a running task | recorded lost (by the run) | tasks lost | duplicated | left behind | detection (s) | raffle gone on hit host(s) (s) | every process gone on hit host(s) (s) | mpirun gone (s) | every process gone (s) | rank 0's end to hit host(s) raffle-free / all gone (s) | launcher exit |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for f in $(jq -r 'reduce .trials[].fault as $f ([]; if any(.[]; . == $f) then . else . + [$f] end) | .[]' "$OUT"); do
    jq -r --arg f "$f" '[.trials[] | select(.fault == $f)] |
      def nums(k): [.[] | .[k] | select(. != null and . != "-" and (startswith(">") | not)) | tonumber];
      def rng(k): (nums(k) | if length == 0 then "-" else "\(min | . * 100 | round / 100)-\(max | . * 100 | round / 100)" end);
      "| \($f) | \(length) | \([.[] | select(.hit == "1")] | length) | \([.[] | .recorded | tonumber] | add) (\([.[] | .recorded_in_run | tonumber] | add)) | \([.[] | .lost | tonumber] | add) | \([.[] | .dup | tonumber] | add) | \([.[] | .left | tonumber] | add) | \(rng("detect_s")) | \(rng("quiet_s")) | \(rng("hostgone_s")) | \(rng("launcher_s")) | \(rng("gone_s")) | \(rng("endquiet_s")) / \(rng("endgone_s")) | \([.[] | .rc] | unique | join(", ")) |"' \
      "$OUT"
  done
  jq -r '"CPU: \(.cpu) (family \(.cpu_family)); heartbeat timeout \(.heartbeat_s) s; tcp_retries2 \(.tcp_retries2 // 3); \(.date); load average \(.load // "?")"' "$OUT"
}
OUT=${NETFAULT_OUT:-bench/results/netfault.json}
if [ "${1:-}" = --table ]; then table; exit 0; fi
tries=${1:-5}
shift || true
faults=${*:-cut-worker kill-worker hang-worker partition}
RAFFLE=${RAFFLE:-$here/build/raffle}
[ -x "$RAFFLE" ] || { echo "netfault: build raffle first (make)" >&2; exit 2; }
. "$here/tests/integration/multihost_faults.bash"
mh_prereqs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
HB=${HB:-2}
load0=$(awk '{ print $1 ", " $2 ", " $3 " (1, 5, 15 min)" }' /proc/loadavg)
mh_up 3
mf_job 12 1000
out=$T/trials
: > "$out"
for f in $faults; do
  for k in $(seq 1 "$tries"); do
    at=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.1f", 0.5 + 4 * rand() }')
    l=$(mf_trial "$f" "$at" "$HB" 2>>"$T/log-trials")
    echo "$l" | tee -a "$out"
  done
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
# the machine's load over the run (the 15-minute average at its end)
load=$(awk '{ print $1 ", " $2 ", " $3 " (1, 5, 15 min)" }' /proc/loadavg)
fam=$(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //')
mkdir -p bench/results
# every trial as an object of its KEY=VALUE fields
jq -R 'split(" ") | map(split("=") | {(.[0]): .[1]}) | add' "$out" |
  jq -s --arg cpu "$cpu" --arg fam "$fam" --arg hb "$HB" --arg date "$(date -u +%FT%TZ)" --arg load "$load" \
    --arg rt "${RAFFLE_CLUSTER_TCP_RETRIES:-3}" --arg load0 "$load0" \
    '{cpu: $cpu, cpu_family: $fam, heartbeat_s: ($hb | tonumber), tcp_retries2: ($rt | tonumber), date: $date,
      load_at_start: $load0, load: $load, trials: .}' > "$OUT"
echo
table
mh_down_check >/dev/null
