#!/usr/bin/env bash
# An invalid job is rejected before any work: validate and sweep (alone and
# under mpirun) exit 1 naming the JSON path, and no store is created.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/bad.json" <<'JOB'
{"name": "bad", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop"}, {"kind": "noop"},
   {"kind": "prune", "method": "magnitude", "sparsity": [0.5, 1.3]}]}
JOB
out=$("$RAFFLE" validate "$T/bad.json" 2>&1); rc=$?
[ $rc = 1 ] || { echo "validate exit $rc, expected 1"; exit 1; }
echo "$out" | grep -q 'experiments\[2\]\.sparsity\[1\]: 1.3 is outside \[0, 1)' || { echo "bad message: $out"; exit 1; }
printf '{"dataset": "synthetic", "model": "m", "experimnts": []}' > "$T/typo.json"
out=$("$RAFFLE" validate "$T/typo.json" 2>&1)
echo "$out" | grep -q 'did you mean "experiments"' || { echo "no did-you-mean: $out"; exit 1; }
out=$("$RAFFLE" sweep --store "$T/s" "$T/bad.json" 2>&1); rc=$?
[ $rc = 1 ] || { echo "sweep exit $rc, expected 1"; exit 1; }
echo "$out" | grep -q 'sparsity\[1\]' || { echo "sweep message: $out"; exit 1; }
[ ! -e "$T/s" ] || { echo "the store was created for an invalid job"; exit 1; }
out=$(timeout 60 mpirun -np 2 --oversubscribe "$RAFFLE" sweep --store "$T/s" "$T/bad.json" 2>&1); rc=$?
[ $rc != 0 ] || { echo "mpirun sweep of an invalid job exited 0"; exit 1; }
[ "$(echo "$out" | grep -c 'sparsity\[1\]: 1.3')" = 1 ] || { echo "expected one error line from rank 0: $out"; exit 1; }
[ ! -e "$T/s" ] || { echo "the store was created for an invalid job (mpirun)"; exit 1; }
# a launch whose ranks do not see each other (Slurm says 3 tasks, MPI has 1):
# refused with both numbers and the fix, before the store is touched
out=$(SLURM_NTASKS=3 "$RAFFLE" sweep --store "$T/s" jobs/smoke.json 2>&1); rc=$?
[ $rc = 1 ] || { echo "SLURM_NTASKS=3 without MPI: exit $rc, expected 1: $out"; exit 1; }
echo "$out" | grep -q 'MPI size 1 but SLURM_NTASKS=3.*srun --mpi=pmix' || { echo "size-check message: $out"; exit 1; }
[ "$(echo "$out" | wc -l)" = 1 ] || { echo "size check: expected one line: $out"; exit 1; }
[ ! -e "$T/s" ] || { echo "the store was created despite the MPI size mismatch"; exit 1; }
out=$(SLURM_NTASKS=1 "$RAFFLE" sweep --store "$T/s1" "$T/bad.json" 2>&1)
echo "$out" | grep -q 'SLURM_NTASKS' && { echo "SLURM_NTASKS=1 with one process was refused: $out"; exit 1; }
"$RAFFLE" validate jobs/smoke.json >/dev/null 2>&1 || [ ! -f jobs/smoke.json ] || { echo "jobs/smoke.json does not validate"; exit 1; }
echo "ok: invalid jobs rejected with their JSON path before any work"
