#!/usr/bin/env bash
# What `make demo` runs after building: the demo sweep (jobs/demo.json, a
# small Fashion-MNIST pruning + lottery-ticket study) on 3 MPI ranks, or
# in-process when mpirun is missing; then where the results and report are.
set -eu
cd "$(dirname "$0")/.."
job=jobs/demo.json
store=${RAFFLE_STORE:-results}
name=$(build/raffle validate --json "$job" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
build/raffle validate "$job"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
rc=0
if command -v mpirun >/dev/null 2>&1; then
  mpirun -np 3 --oversubscribe build/raffle sweep --store "$store" "$job" || rc=$?
else
  echo "demo: mpirun not found: running the sweep in-process" >&2
  build/raffle sweep --store "$store" "$job" || rc=$?
fi
echo
echo "results:  $store/$name/  (ledger.jsonl, tasks/<id>/{metrics.json,model.rckpt,log.txt})"
echo "report:   $store/$name/report.html  (also report.json, report.csv)"
echo "status:   build/raffle status $store/$name"
echo "rebuild:  build/raffle report $store/$name"
exit $rc
