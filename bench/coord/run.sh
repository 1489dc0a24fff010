#!/usr/bin/env bash
# Coordinator benchmark: dispatch rate with no-op tasks, checkpoint gather
# bandwidth against raw MPI point-to-point, memory per queued task. Runs
# `raffle bench coord` under mpirun with 3 ranks (1 coordinator + 2 workers)
# and writes bench/results/coord.json. A benchmark, not a test: run it on a
# quiet machine (every ratio is measured side by side in the same run).
# Usage: bench/coord/run.sh [--quick] [-np N]
set -eu
cd "$(dirname "$0")/../.."
np=3; extra=()
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
mpirun -np "$np" --oversubscribe build/raffle bench coord "${extra[@]}" --out bench/results
