#!/usr/bin/env bash
# Structured against unstructured sparsity, latency side by side in one run
# (docs/kernels.md, "Structured vs unstructured sparsity"): runs
# jobs/struct-lenet300.json into STORE (about a minute on one core; a rerun
# reuses the finished tasks), adds the checkpoints of jobs/struct-resnet20.json
# when STORE holds that sweep finished (about an hour on this machine: run it
# yourself, `raffle sweep jobs/struct-resnet20.json --store STORE`), and times
# every checkpoint with bench/struct/latency.c: dense, deployed (calibrated
# sparse / N:M kernels) and the kernel forced, at batch 1 and 128, with the
# tasks' test and validation accuracy. Writes bench/results/struct.txt
# (OUT=... to change) with the CPU, the load average before and after (the
# machine is shared: the table is the median of ROUNDS rounds, the JSON lines
# carry min and max).
#   STORE=DIR ROUNDS=N bench/struct/run.sh [--quick]   (default STORE build/bench-store, ROUNDS 7;
#                                              --quick: 3 rounds instead of 7)
# STRUCT_RESNET=struct-resnet20-quick reads the ResNet-20 checkpoints from
# jobs/struct-resnet20-quick.json's sweep instead (latency only: its models
# are barely trained; its filter-l1 row is absent).
set -eu
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-7}
for a in "$@"; do
  case "$a" in
    --quick) rounds=3 ;;
    *) echo "bench/struct: unknown option '$a' (only --quick)" >&2; exit 2 ;;
  esac
done
STORE=${STORE:-build/bench-store}
OUT=${OUT:-bench/results/struct.txt}
raffle=build/raffle
mkdir -p "$STORE" "$(dirname "$OUT")"
export OPENBLAS_NUM_THREADS=1
"$raffle" sweep jobs/struct-lenet300.json --store "$STORE" --quiet >&2
args=()
# adds LABEL=CKPT of experiment $2 of sweep $1 when it has finished
add() {
  local dir
  dir=$("$raffle" find "$STORE/$1" "experiment=$2" status=done 2>/dev/null | head -n 1) || true
  if [ -n "$dir" ] && [ -f "$dir/model.rckpt" ]; then args+=("$3=$dir/model.rckpt"); fi
}
add struct-lenet300 dense "lenet-300-100 dense"
add struct-lenet300 neuron-l1 "lenet-300-100 neuron_l1 sliced"
add struct-lenet300 magnitude "lenet-300-100 magnitude"
add struct-lenet300 nm-2-4 "lenet-300-100 2:4"
resnet=${STRUCT_RESNET:-struct-resnet20}
add "$resnet" dense "resnet-20 dense"
add "$resnet" filter-l1 "resnet-20 filter_l1 sliced"
add "$resnet" magnitude "resnet-20 magnitude"
add "$resnet" nm-2-4 "resnet-20 2:4"
[ "${#args[@]}" -ge 4 ] || { echo "bench/struct: the lenet-300-100 sweep in $STORE did not finish" >&2; exit 1; }
[ "${#args[@]}" -gt 4 ] || echo "bench/struct: no finished $resnet sweep in $STORE: lenet-300-100 only" >&2
{
  echo "# bench/struct/run.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none), $rounds rounds"
  echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/[[:space:]]*:[[:space:]]*/ /'), one thread"
  echo "# engine options from the environment: $(env | grep -E '^RAFFLE_(ISA|CONV|GEMM|TB_CHUNK|FEAT_RUNS)=' | tr '\n' ' ' || true)(unset: auto)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  bench/cbench.sh bench/struct/latency.c "$rounds" fashion-mnist "${args[@]}"
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
