#!/usr/bin/env bash
# Coordinator benchmark: dispatch rate with no-op tasks, checkpoint gather
# bandwidth against raw MPI point-to-point, gathered vs direct writes into
# the store, memory per queued task, the scheduler alone with 1,000 fake
# workers. Runs `raffle bench coord` under mpirun with 2 and with 8
# (oversubscribed) ranks, one after the other in this run, and writes
# bench/results/coord.json: {cpu, cpu_family, runs: [2 ranks, 8 ranks],
# dispatch_8_over_2}. A benchmark, not a test: run it on a quiet machine.
# Usage: bench/coord/run.sh [--quick] [-np "N M ..."]
set -eu
cd "$(dirname "$0")/../.."
np="2 8"; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) extra+=(--quick) ;;
    -np) np=$2; shift ;;
    *) echo "bench/coord/run.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
command -v mpirun >/dev/null || { echo "bench/coord/run.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }
[ -x build/raffle ] || { echo "bench/coord/run.sh: build/raffle not built (make all)" >&2; exit 1; }
mkdir -p bench/results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# ranks waiting in MPI yield the core instead of spinning: 3 ranks share 2 cores here
export OMPI_MCA_mpi_yield_when_idle=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in $np; do
  mpirun -np "$n" --oversubscribe build/raffle bench coord "${extra[@]}" --out "$tmp/np$n" 2>&1 >/dev/null | grep '^coord:' | sed "s/^/np $n: /"
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
fam=$(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
# shellcheck disable=SC2046
jq -s --arg cpu "$cpu" --arg fam "$fam" --arg date "$(date -u +%FT%TZ)" \
  '{cpu: $cpu, cpu_family: $fam, date: $date, runs: .,
    dispatch_last_over_first: (.[-1].dispatch.tasks_per_s / .[0].dispatch.tasks_per_s)}' \
  $(for n in $np; do echo "$tmp/np$n/coord.json"; done) > bench/results/coord.json
echo "wrote bench/results/coord.json (CPU: $cpu, family $fam)"
