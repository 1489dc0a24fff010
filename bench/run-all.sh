#!/usr/bin/env bash
# What `make bench` runs: the kernel benchmark (writes bench/results/kernels.json),
# then the training and coordinator benchmarks if their scripts exist.
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
OPENBLAS_NUM_THREADS=1 "$raffle" bench kernels $quick --out bench/results/kernels.json

for b in train coord data; do
  if [ -x "bench/$b/run.sh" ]; then
    echo "== bench/$b/run.sh" >&2
    "bench/$b/run.sh" $quick
  elif [ -f "bench/$b/run.sh" ]; then
    echo "== bench/$b/run.sh" >&2
    bash "bench/$b/run.sh" $quick
  fi
done
