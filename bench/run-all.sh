#!/usr/bin/env bash
# What `make bench` runs: the kernel benchmark (writes bench/results/kernels.json),
# the dense GEMM benchmark (bench/results/gemm.txt), then the training, coordinator,
# data and structured-pruning (bench/struct: bench/results/struct.txt) benchmarks if their scripts exist.
# Benchmarks are never timed tests: run them on a quiet machine; every ratio
# they report is measured side by side in one run.
# Usage: bench/run-all.sh [--quick]
set -eu
cd "$(dirname "$0")/.."
quick=""
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    *) echo "run-all: unknown option '$a'" >&2; exit 2 ;;
  esac
done
raffle=build/raffle
[ -x "$raffle" ] || { echo "run-all: $raffle not built (make all)" >&2; exit 1; }
mkdir -p bench/results

echo "== raffle bench kernels" >&2
OPENBLAS_NUM_THREADS=1 "$raffle" bench kernels $quick --out bench/results

# Low-bit kernels (issue 21): int4 x u8 against int8, N:M against unstructured
# sparse, side by side in one run each (docs/kernels.md).
echo "== bench/lowbit (int4 vs int8, N:M vs unstructured)" >&2
mkdir -p bench/results/lowbit
OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/lowbit/q4_vs_int8.c --json bench/results/lowbit/q4_vs_int8.json
nm_rc=0
OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/lowbit/nm_vs_unstructured.c --json bench/results/lowbit/nm_vs_unstructured.json || nm_rc=$?
[ "$nm_rc" -eq 0 ] || [ "$nm_rc" -eq 77 ] || exit "$nm_rc"

for b in gemm train coord data struct; do
  if [ -x "bench/$b/run.sh" ]; then
    echo "== bench/$b/run.sh" >&2
    "bench/$b/run.sh" $quick
  elif [ -f "bench/$b/run.sh" ]; then
    echo "== bench/$b/run.sh" >&2
    bash "bench/$b/run.sh" $quick
  fi
done
