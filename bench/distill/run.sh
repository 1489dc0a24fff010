#!/bin/sh
# Distilled student vs the same student trained alone (Hinton, Vinyals, Dean
# 2015, MNIST: teacher 2x1200 with dropout, student 2x800; paper: 146 test
# errors alone -> 74 distilled at T = 20). Runs on the `mnist` dataset
# (8,000 / 2,000 split, see docs/datasets) for SEEDS seeds and writes
# $SUMMARY (default bench/results/distill.json; docs/distillation.md has the table).
#
#   bench/distill/run.sh                  full: 20 epochs each
#   EPOCHS=5 bench/distill/run.sh   a short run
#   DATA=fashion-mnist TEACHER=lenet-5 STUDENT=lenet-300-100 T=4 N_TEST=10000 \
#     OUT=bench/work/distill_fmnist SUMMARY=bench/results/distill_fmnist.json bench/distill/run.sh
set -eu
cd "$(dirname "$0")/../.."
RAFFLE=${RAFFLE:-build/raffle}
DATA=${DATA:-mnist}
EPOCHS=${EPOCHS:-20}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-$EPOCHS}
SEEDS=${SEEDS:-"0 1 2"}
T=${T:-20}
ALPHA=${ALPHA:-0.9}
TEACHER=${TEACHER:-mlp-1200x2}
STUDENT=${STUDENT:-mlp-800x2}
OUT=${OUT:-bench/work/distill}            # checkpoints and per-run JSON (git-ignored)
SUMMARY=${SUMMARY:-bench/results/distill.json}  # the summary that docs/ quotes

mkdir -p "$OUT"

echo "teacher $TEACHER on $DATA, $TEACHER_EPOCHS epochs" >&2
[ -f "$OUT/teacher/model.rckpt" ] || "$RAFFLE" train --model "$TEACHER" --data "$DATA" --epochs "$TEACHER_EPOCHS" --seed 100 \
    --out "$OUT/teacher" --log-every -1 --json > "$OUT/teacher.json"
for s in $SEEDS; do
    echo "seed $s: $STUDENT alone" >&2
    "$RAFFLE" train --model "$STUDENT" --data "$DATA" --epochs "$EPOCHS" --seed "$s" --log-every -1 \
        --json > "$OUT/alone_$s.json"
    echo "seed $s: $STUDENT distilled (T $T, alpha $ALPHA)" >&2
    "$RAFFLE" distill --teacher "$OUT/teacher/model.rckpt" --model "$STUDENT" --data "$DATA" --epochs "$EPOCHS" \
        --temperature "$T" --alpha "$ALPHA" --seed "$s" --out "$OUT/distilled_$s" --json > "$OUT/distilled_$s.json"
done
python3 bench/distill/summarize.py "$OUT" $SEEDS
cp "$OUT/summary.json" "$SUMMARY"
