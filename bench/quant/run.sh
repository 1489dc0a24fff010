#!/bin/sh
# int8 PTQ (min-max and 99.99th percentile) and QAT against fp32 (Jacob et
# al. 2018) on lenet-5 and vit-tiny, Fashion-MNIST, with every matrix product
# in int8 (vit-tiny: patch_embed, the 4 products of each of the 4 blocks and
# the head = 18). Each int8 checkpoint is also re-evaluated with `raffle eval`,
# which rebuilds the integer path from the file. Writes $SUMMARY (default
# bench/results/quant.json; table in docs/quantization.md).
#
#   bench/quant/run.sh                                   full (fp32 trained here if $OUT/<model>.rckpt is absent)
#   VIT_EPOCHS=2 TRAIN_LIMIT=20000 MODELS=lenet-5 bench/quant/run.sh   a short run
#
# fp32 recipes (bench/train/accuracy.sh): lenet-5 20 epochs Adam 2e-3 cosine
# (90.3%); vit-tiny AdamW 1e-3, wd 0.05, label smoothing 0.1, cosine, one
# epoch of warm-up, VIT_EPOCHS epochs (default 7: the 2-core machine's budget;
# accuracy.sh's 20 epochs reach 88%).
set -eu
cd "$(dirname "$0")/../.."
RAFFLE=${RAFFLE:-build/raffle}
DATA=${DATA:-fashion-mnist}
LENET_EPOCHS=${LENET_EPOCHS:-20}
VIT_EPOCHS=${VIT_EPOCHS:-7}
QAT_EPOCHS=${QAT_EPOCHS:-1}
MODELS=${MODELS:-"lenet-5 vit-tiny"}
OUT=${OUT:-bench/work/quant_full}        # checkpoints and per-run JSON (git-ignored)
SUMMARY=${SUMMARY:-bench/results/quant.json}  # the summary that docs/ quotes
LIMIT=""
[ -n "${TRAIN_LIMIT:-}" ] && LIMIT="--train-limit $TRAIN_LIMIT"
mkdir -p "$OUT"
recipe() {
    case "$1" in
    lenet-5)  echo "--epochs $LENET_EPOCHS --optimizer adam --lr 2e-3 --schedule cosine" ;;
    vit-tiny) echo "--epochs $VIT_EPOCHS --optimizer adamw --lr 1e-3 --weight-decay 0.05 --warmup 469 --label-smoothing 0.1 --schedule cosine" ;;
    *)        echo "--epochs 20" ;;
    esac
}
for m in $MODELS; do
    if [ ! -f "$OUT/$m/model.rckpt" ]; then
        echo "$m: fp32 $(recipe "$m")" >&2
        # shellcheck disable=SC2046
        nice "$RAFFLE" train --model "$m" --data "$DATA" $(recipe "$m") --batch 128 --seed 0 --threads 1 --log-every -1 \
            --out "$OUT/$m" --json > "$OUT/${m}_fp32.json"
    fi
    # an arm whose JSON exists is kept (resume after an interruption; delete $OUT to redo)
    for c in minmax percentile; do
        [ -s "$OUT/${m}_ptq_$c.json" ] && continue
        echo "$m: PTQ $c" >&2
        nice "$RAFFLE" quantize --ckpt "$OUT/$m/model.rckpt" --data "$DATA" --mode ptq --calib "$c" $LIMIT \
            --out "$OUT/${m}_ptq_$c" --json > "$OUT/${m}_ptq_$c.json"
    done
    [ -s "$OUT/${m}_qat.json" ] || { echo "$m: QAT, $QAT_EPOCHS epoch(s)" >&2; nice "$RAFFLE" quantize --ckpt "$OUT/$m/model.rckpt" --data "$DATA" --mode qat --epochs "$QAT_EPOCHS" $LIMIT \
        --out "$OUT/${m}_qat" --json > "$OUT/${m}_qat.json"; }
    for a in ptq_minmax ptq_percentile qat; do
        "$RAFFLE" eval --ckpt "$OUT/${m}_$a/model.rckpt" --data "$DATA" --json > "$OUT/${m}_${a}_eval.json"
    done
done
python3 - "$OUT" "$SUMMARY" $MODELS <<'PY'
import json, os, sys
out, summary, models = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(p):
    with open(p) as f:
        return json.loads(f.read().strip().splitlines()[-1])
res = {}
if os.path.exists(summary):
    with open(summary) as f:
        res = json.load(f)
for m in models:
    r = {"fp32": load(f"{out}/{m}_ptq_minmax.json")["fp32_test_accuracy"],
         "fp32_bytes": os.path.getsize(f"{out}/{m}/model.rckpt")}
    if os.path.exists(f"{out}/{m}_fp32.json"):
        f32 = load(f"{out}/{m}_fp32.json")
        r["fp32_train"] = {"steps": f32.get("steps"), "seconds": f32["timing"].get("seconds"), "test_accuracy_at_best_val": f32.get("test_accuracy_at_best_val")}
    for arm in ("ptq_minmax", "ptq_percentile", "qat"):
        j = load(f"{out}/{m}_{arm}.json")
        j.update(j.get("timing", {}))   # metrics.json keeps latencies under "timing"
        e = load(f"{out}/{m}_{arm}_eval.json")
        r[arm] = {"accuracy": j["accuracy"], "delta_points": round(100 * (j["accuracy"] - r["fp32"]), 3),
                  "eval_accuracy": e["accuracy"], "int8_products": j["int8_products"], "bytes": j["bytes"],
                  "int8_latency_b1_ms": j["int8_latency_b1_ms"], "fp32_latency_b1_ms": j["fp32_latency_b1_ms"],
                  "int8_latency_b64_ms": j["int8_latency_b64_ms"], "fp32_latency_b64_ms": j["fp32_latency_b64_ms"],
                  "int8_speedup_b1": j["int8_speedup_b1"], "int8_speedup_b64": j["int8_speedup_b64"],
                  "steps": j.get("steps", 0)}
    res[m] = r
with open(summary, "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
PY
