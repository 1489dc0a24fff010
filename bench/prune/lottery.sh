#!/usr/bin/env bash
# Must-show 2 (issue 4): lottery tickets on lenet-300-100 / Fashion-MNIST with
# the paper's settings (Frankle & Carbin 2019: Adam 1.2e-3, batch 60, 20% of
# the remaining hidden weights and 10% of the output layer's per round,
# rewind to init), with both controls (random re-initialisation, random
# pruning) at every round. 16 rounds reach 0.8^16 ≈ 2.8% remaining.
#
#   bench/prune/lottery.sh                                   # full: 3 seeds, 50K iterations/round
#   SEEDS=0 ROUNDS=2 ITERATIONS=300 EVAL_EVERY=100 bench/prune/lottery.sh   # smoke
#   CONTROL_FROM=14 bench/prune/lottery.sh                   # controls only at rounds >= 14 (the <= 4.4% rounds)
#
# Output: bench/results/prune/lottery/{records.jsonl,table.md}
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-"0 1 2"}
ROUNDS=${ROUNDS:-16}
ITERATIONS=${ITERATIONS:-50000}
EVAL_EVERY=${EVAL_EVERY:-1000}
REWIND=${REWIND:-init}
CONTROL_FROM=${CONTROL_FROM:-1}        # run the controls only from this round on
DATA=${DATA:-fashion-mnist}
OUT=${OUT:-bench/results/prune/lottery}
PY=/usr/bin/python3
[ -n "${RAFFLE:-}" ] || make -s -j2 all >&2
RAFFLE=${RAFFLE:-build/raffle}
mkdir -p "$OUT"
: > "$OUT/records.jsonl"
for s in $SEEDS; do
  case "$REWIND" in
    init) rw="--rewind weights" ;;
    step:*) rw="--rewind weights --rewind-iteration ${REWIND#step:}" ;;
    lr) rw="--rewind lr" ;;
    *) echo "REWIND must be init, step:K or lr" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086
  "$RAFFLE" lottery --model lenet-300-100 --data "$DATA" --rounds "$ROUNDS" --rate 0.2 \
    --output-rate 0.1 --iterations "$ITERATIONS" --batch 60 --optimizer adam --lr 1.2e-3 \
    $rw --controls reinit,random --controls-from "$CONTROL_FROM" --eval-every "$EVAL_EVERY" --seed "$s" \
    --out "$OUT/s$s" --json > "$OUT/s$s.json"
  # one record per task: round 0 is the dense run, the controls are labelled imp-reinit / imp-random
  jq -c --arg s "$s" '.tasks[] | select(.kind == "lottery") |
      {group:("round \(.round) \(if .label == "imp" then "ticket" else (.label | sub("imp-"; "")) end)"),
       seed:($s|tonumber), remaining, accuracy, best_accuracy: .test_accuracy_at_best_val, best_val_accuracy, best_iteration}' \
    "$OUT/s$s.json" >> "$OUT/records.jsonl"
done
{
  echo "lenet-300-100 / $DATA, seeds: $SEEDS, $ROUNDS rounds, $ITERATIONS iterations per round, rewind $REWIND, controls from round $CONTROL_FROM"
  echo
  $PY bench/prune/lottery_table.py "$OUT/records.jsonl"
  echo
  $PY bench/prune/summarize.py < "$OUT/records.jsonl"
} | tee "$OUT/table.md"
