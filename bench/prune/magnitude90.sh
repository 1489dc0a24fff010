#!/usr/bin/env bash
# Must-show 1 (issue 4): lenet-300-100 on Fashion-MNIST, magnitude pruning to
# 90% (global ranking) plus fine-tuning, against the dense model it came from
# and against that dense model trained for the same extra epochs, mean ± std
# over seeds. Dense training is lottery round 0 (Adam 1.2e-3,
# batch 60), so every number comes from the same code path.
#
#   bench/prune/magnitude90.sh                       # full: 3 seeds, 20 + 10 epochs
#   SEEDS="0" EPOCHS=1 FT_EPOCHS=1 bench/prune/magnitude90.sh   # smoke
#
# Output: bench/results/prune/magnitude90/{records.jsonl,table.md}
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-20}
FT_EPOCHS=${FT_EPOCHS:-10}
DATA=${DATA:-fashion-mnist}
OUT=${OUT:-bench/results/prune/magnitude90}
PY=/usr/bin/python3
[ -n "${RAFFLE:-}" ] || make -s -j2 all >&2
RAFFLE=${RAFFLE:-build/raffle}
mkdir -p "$OUT"
: > "$OUT/records.jsonl"
for s in $SEEDS; do
  "$RAFFLE" train --model lenet-300-100 --data "$DATA" --epochs "$EPOCHS" \
    --batch 60 --lr 1.2e-3 --seed "$s" --out "$OUT/dense_s$s" --json > "$OUT/dense_s$s.json"
  jq -c --arg s "$s" '{group:"dense", seed:($s|tonumber), accuracy, remaining:(1 - .sparsity)}' \
    "$OUT/dense_s$s.json" >> "$OUT/records.jsonl"
  "$RAFFLE" prune --ckpt "$OUT/dense_s$s/model.rckpt" --data "$DATA" --method magnitude \
    --sparsity 0.9 --scope global --finetune-epochs "$FT_EPOCHS" --batch 60 --lr 1.2e-3 --seed "$s" \
    --out "$OUT/mag90_s$s" --json > "$OUT/mag90_s$s.json"
  jq -c --arg s "$s" '{group:"magnitude 90% + fine-tune", seed:($s|tonumber), accuracy, sparsity,
      collapsed:(.collapsed_layers|length)}' "$OUT/mag90_s$s.json" >> "$OUT/records.jsonl"
  # Fair dense baseline: the same extra epochs on the dense model (sparsity 0).
  "$RAFFLE" prune --ckpt "$OUT/dense_s$s/model.rckpt" --data "$DATA" --method magnitude \
    --sparsity 0 --scope global --finetune-epochs "$FT_EPOCHS" --batch 60 --lr 1.2e-3 --seed "$s" \
    --out "$OUT/dense_more_s$s" --json > "$OUT/dense_more_s$s.json"
  jq -c --arg s "$s" '{group:"dense + same extra epochs", seed:($s|tonumber), accuracy, sparsity}' \
    "$OUT/dense_more_s$s.json" >> "$OUT/records.jsonl"
done
{
  echo "lenet-300-100 / $DATA, seeds: $SEEDS, dense epochs $EPOCHS, fine-tune epochs $FT_EPOCHS"
  echo
  $PY bench/prune/summarize.py < "$OUT/records.jsonl"
} | tee "$OUT/table.md"
