#!/bin/sh
# int8 PTQ (min-max and 99.99th percentile) and QAT against fp32 (Jacob et
# al. 2018) on lenet-5 and vit-tiny, Fashion-MNIST. Writes
# $SUMMARY (default bench/results/quant.json; table in docs/quantization.md).
#
#   bench/quant/run.sh                                   full: 20 fp32 epochs, 1 QAT epoch
#   EPOCHS=2 TRAIN_LIMIT=20000 MODELS=lenet-5 bench/quant/run.sh   a short run
set -eu
cd "$(dirname "$0")/../.."
RAFFLE=${RAFFLE:-build/raffle}
DATA=${DATA:-fashion-mnist}
EPOCHS=${EPOCHS:-20}
QAT_EPOCHS=${QAT_EPOCHS:-1}
MODELS=${MODELS:-"lenet-5 vit-tiny"}
OUT=${OUT:-bench/work/quant}            # checkpoints and per-run JSON (git-ignored)
SUMMARY=${SUMMARY:-bench/results/quant.json}  # the summary that docs/ quotes
LIMIT=""
[ -n "${TRAIN_LIMIT:-}" ] && LIMIT="--train-limit $TRAIN_LIMIT"
mkdir -p "$OUT"
for m in $MODELS; do
    echo "$m: fp32, $EPOCHS epochs" >&2
    [ -f "$OUT/$m.rckpt" ] || "$RAFFLE" train --model "$m" --data "$DATA" --epochs "$EPOCHS" --seed 0 --log-every 0 \
        --out "$OUT/$m.rckpt" --json > "$OUT/${m}_fp32.json"
    for c in minmax percentile; do
        echo "$m: PTQ $c" >&2
        "$RAFFLE" quantize --ckpt "$OUT/$m.rckpt" --data "$DATA" --mode ptq --calib "$c" $LIMIT \
            --out "$OUT/${m}_ptq_$c" --json > "$OUT/${m}_ptq_$c.json"
    done
    echo "$m: QAT, $QAT_EPOCHS epoch(s)" >&2
    "$RAFFLE" quantize --ckpt "$OUT/$m.rckpt" --data "$DATA" --mode qat --epochs "$QAT_EPOCHS" $LIMIT \
        --out "$OUT/${m}_qat" --json > "$OUT/${m}_qat.json"
done
python3 - "$OUT" $MODELS <<'PY'
import json, sys
out, models = sys.argv[1], sys.argv[2:]
def load(p):
    with open(p) as f:
        return json.loads(f.read().strip().splitlines()[-1])
res = {}
for m in models:
    r = {"fp32": load(f"{out}/{m}_ptq_minmax.json")["fp32_accuracy"]}
    for arm in ("ptq_minmax", "ptq_percentile", "qat"):
        j = load(f"{out}/{m}_{arm}.json")
        r[arm] = {"accuracy": j["accuracy"], "delta_points": 100 * (j["accuracy"] - r["fp32"]),
                  "bytes": j["bytes"], "int8_layers": j["int8_layers"], "latency_ms": j["latency_ms"],
                  "dense_latency_ms": j["dense_latency_ms"]}
    res[m] = r
with open(f"{out}/summary.json", "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
PY
cp "$OUT/summary.json" "$SUMMARY"
