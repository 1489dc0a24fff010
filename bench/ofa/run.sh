#!/bin/sh
# Prune Once For All (Zafrir et al. 2021) on lenet-5 and vit-tiny: upstream
# Fashion-MNIST, downstream mnist and fashion-mnist, 90% sparse + int8.
# Compares each final int8 model with its dense teacher and reports the
# checkpoint size on disk and its ratio to the dense fp32 teacher checkpoint.
# Writes $SUMMARY (default bench/results/ofa.json; table in docs/distillation.md).
#
#   bench/ofa/run.sh                     full: 10/10/3/1 epochs
#   SHORT="--teacher-epochs 2 --sparse-epochs 2 --transfer-epochs 1 --train-limit 20000" \
#     MODELS=lenet-5 bench/ofa/run.sh    a short run
set -eu
cd "$(dirname "$0")/../.."
RAFFLE=${RAFFLE:-build/raffle}
MODELS=${MODELS:-"lenet-5 vit-tiny"}
SPARSITY=${SPARSITY:-0.9}
OUT=${OUT:-bench/work/ofa}            # checkpoints and per-run JSON (git-ignored)
SUMMARY=${SUMMARY:-bench/results/ofa.json}  # the summary that docs/ quotes
SHORT=${SHORT:-}
mkdir -p "$OUT"
for m in $MODELS; do
    echo "ofa $m" >&2
    "$RAFFLE" ofa --model "$m" --sparsity "$SPARSITY" $SHORT --out-dir "$OUT/$m" --json > "$OUT/$m.json"
done
python3 bench/ofa/summarize.py "$OUT" $MODELS
cp "$OUT/summary.json" "$SUMMARY"
