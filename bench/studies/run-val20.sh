#!/bin/sh
# Issue 20's studies as resumable sweeps (docs/results.md, "Issue 20
# studies"): nice'd, two processes at most (the machine is shared):
#   1. jobs/dense-resnet20-vgg11.json, then jobs/prune-at-init-resnet20-vgg11.json
#   2. jobs/lth-resnet20-rewind.json
# Rerunning it resumes from the stores' ledgers (finished tasks are skipped,
# a task interrupted mid-training continues from its resume.rckpt in WORK).
#   RAFFLE=binary (default build/raffle; use a copy so a rebuild does not
#   change the code mid-sweep), STORE (default /work/studies), WORK
#   (default STORE/work), JOBS (default this checkout's jobs/).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
R=${RAFFLE:-$here/build/raffle}
J=${JOBS:-$here/jobs}
S=${STORE:-/work/studies}
W=${WORK:-$S/work}
L=$S/logs
mkdir -p "$L" "$W"
nohup nice -n 10 sh -c "'$R' sweep '$J/dense-resnet20-vgg11.json' --store '$S' --work '$W' --status-every 30 >>'$L/dense-resnet20-vgg11.log' 2>&1; \
  '$R' sweep '$J/prune-at-init-resnet20-vgg11.json' --store '$S' --work '$W' --status-every 30 >>'$L/prune-at-init-resnet20-vgg11.log' 2>&1" \
  >/dev/null 2>&1 &
echo "dense, then prune-at-init: pid $!" | tee -a "$L/pids"
nohup nice -n 10 "$R" sweep "$J/lth-resnet20-rewind.json" --store "$S" --work "$W" --status-every 30 \
  >>"$L/lth-resnet20-rewind.log" 2>&1 &
echo "lth: pid $!" | tee -a "$L/pids"
