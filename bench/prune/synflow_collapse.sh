#!/usr/bin/env bash
# Must-show 3 (issue 4): pruning at initialisation of conv-6 to 99.9%
# (1000× compression), global ranking: SynFlow (data-free, 100 rounds) vs
# magnitude-at-init vs SNIP (and GraSP, random), then training with the mask
# fixed. Reports the collapsed layers right after pruning (layers with no
# weight on an input→output path; Tanaka et al. 2020) and the test accuracy
# (chance = 10%).
#
#   bench/prune/synflow_collapse.sh                                     # full: 3 seeds, 10 epochs
#   SEEDS=0 ITERATIONS=200 METHODS="synflow magnitude snip" bench/prune/synflow_collapse.sh   # smoke
#
# Output: bench/results/prune/synflow/{records.jsonl,table.md}
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-"0 1 2"}
METHODS=${METHODS:-"synflow magnitude snip grasp random"}
SPARSITY=${SPARSITY:-0.999}
EPOCHS=${EPOCHS:-10}
ITERATIONS=${ITERATIONS:-0}
BATCH=${BATCH:-128}
LR=${LR:-3e-4}
EVAL_LIMIT=${EVAL_LIMIT:-0}
MODEL=${MODEL:-conv-6}
DATA=${DATA:-fashion-mnist}
OUT=${OUT:-bench/results/prune/synflow}
PY=/usr/bin/python3
[ -n "${RAFFLE:-}" ] || make -s -j2 all >&2
RAFFLE=${RAFFLE:-build/raffle}
mkdir -p "$OUT"
: > "$OUT/records.jsonl"
train_args=(--finetune-epochs "$EPOCHS")
[ "$ITERATIONS" -gt 0 ] && train_args=(--finetune-iterations "$ITERATIONS")
for s in $SEEDS; do
  for m in $METHODS; do
    "$RAFFLE" prune --model "$MODEL" --data "$DATA" --method "$m" --sparsity "$SPARSITY" --scope global \
      "${train_args[@]}" --batch "$BATCH" --optimizer adam --lr "$LR" --eval-limit "$EVAL_LIMIT" --seed "$s" \
      --out "$OUT/${m}_s$s" --json > "$OUT/${m}_s$s.json"
    jq -c --arg s "$s" --arg m "$m" '{group:$m, seed:($s|tonumber), accuracy, sparsity,
        collapsed:(.collapsed_at_prune|length), names:(.collapsed_at_prune|join(" "))}' \
      "$OUT/${m}_s$s.json" >> "$OUT/records.jsonl"
  done
done
{
  echo "$MODEL / $DATA at sparsity $SPARSITY (global), seeds: $SEEDS, training: ${train_args[*]}"
  echo
  $PY bench/prune/summarize.py < "$OUT/records.jsonl"
  echo
  echo "collapsed layers per run:"
  jq -r '"- \(.group) seed \(.seed): \(if .names == "" then "none" else .names end)"' "$OUT/records.jsonl"
} | tee "$OUT/table.md"
