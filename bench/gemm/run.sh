#!/usr/bin/env bash
# raffle's dense GEMM against OpenBLAS sgemm (the environment's
# OPENBLAS_CORETYPE, plus SkylakeX and Cooperlake in child processes), BLIS
# when installed, and the measured FP32 peak, per training product of the
# presets, on 1 and 2 threads (bench/gemm/gemm_bench.c explains the columns).
# Writes bench/results/gemm.txt (OUT=... to change; --quick: fewer, shorter
# rounds). RAFFLE_BLIS_LIB / RAFFLE_BLIS2_LIB=/path/libblis.so.4 point at a
# BLIS for 1 / 2 threads that is not installed system-wide (e.g. unpacked
# from Debian's libblis4-serial / libblis4-pthread with dpkg -x). Run on a quiet machine: the 2-thread column needs
# both cores.
#   bench/gemm/run.sh [--quick]
set -eu
cd "$(dirname "$0")/../.."
quick=""
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    *) echo "bench/gemm: unknown option '$a' (only --quick)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-bench/results/gemm.txt}
mkdir -p "$(dirname "$OUT")"
blis=()
[ -n "${RAFFLE_BLIS_LIB:-}" ] && blis+=(--blis "$RAFFLE_BLIS_LIB")
[ -n "${RAFFLE_BLIS2_LIB:-}" ] && blis+=(--blis2 "$RAFFLE_BLIS2_LIB")
OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/gemm/gemm_bench.c $quick --out "$OUT" "${blis[@]}"
cat "$OUT"
