#!/bin/sh
# Prune Once For All (Zafrir et al. 2021) on lenet-5 and vit-tiny: upstream
# Fashion-MNIST, downstream mnist and fashion-mnist, 90% sparse + int8.
# Compares each final int8 model with its dense teacher and reports the
# checkpoint size on disk and its ratio to the dense fp32 teacher checkpoint.
# Writes $SUMMARY (default bench/results/ofa.json; table in docs/distillation.md).
#
#   bench/ofa/run.sh                     full: 10/10/3/1 epochs (teacher/sparse/transfer/QAT)
#   EPOCHS=2 TRANSFER_EPOCHS=1 MODELS=lenet-5 bench/ofa/run.sh    a short run
# `raffle ofa` runs a job's "ofa" experiment task by task (docs/jobs.md):
# upstream Fashion-MNIST, downstream (--transfer) MNIST and Fashion-MNIST.
set -eu
cd "$(dirname "$0")/../.."
RAFFLE=${RAFFLE:-build/raffle}
MODELS=${MODELS:-"lenet-5 vit-tiny"}
SPARSITY=${SPARSITY:-0.9}
OUT=${OUT:-bench/work/ofa}            # checkpoints and per-run JSON (git-ignored)
SUMMARY=${SUMMARY:-bench/results/ofa.json}  # the summary that docs/ quotes
EPOCHS=${EPOCHS:-10}                  # upstream teacher and sparse pre-training
TRANSFER_EPOCHS=${TRANSFER_EPOCHS:-3} # downstream teachers and transfers
EXTRA=${EXTRA:-}                      # more flags, e.g. "--eval-limit 2000"
mkdir -p "$OUT"
for m in $MODELS; do
    echo "ofa $m" >&2
    # shellcheck disable=SC2086
    "$RAFFLE" ofa --model "$m" --data fashion-mnist --transfer mnist,fashion-mnist --sparsity "$SPARSITY" \
        --epochs "$EPOCHS" --schedule cosine --transfer-train-epochs "$TRANSFER_EPOCHS" --transfer-train-lr 5e-4 \
        --qat-train-epochs 1 --qat-train-lr 1e-4 $EXTRA --out "$OUT/$m" --json > "$OUT/$m.json"
done
python3 bench/ofa/summarize.py "$OUT" $MODELS
cp "$OUT/summary.json" "$SUMMARY"
