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
python3 - "$OUT" $MODELS <<'PY'
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
res = {}
for m in models:
    with open(f"{out}/{m}.json") as f:
        j = json.loads(f.read().strip().splitlines()[-1])
    st = {s["stage"]: s for s in j["stages"]}
    dense = os.path.getsize(f"{out}/{m}/teacher/model.rckpt")
    r = {"upstream_teacher": st["teacher"]["accuracy"], "sparse": st["sparse"]["accuracy"],
         "sparse_sparsity": st["sparse"]["sparsity"], "dense_fp32_bytes": dense, "downstream": {}}
    for name, s in st.items():
        if not name.endswith("/qat"):
            continue
        d = name[: -len("/qat")]
        t = st[d + "/teacher"]["accuracy"]
        r["downstream"][d] = {"teacher": t, "transfer": st[d + "/transfer"]["accuracy"], "int8": s["accuracy"],
                              "delta_points": 100 * (s["accuracy"] - t), "sparsity": s["sparsity"],
                              "bytes": s["bytes"], "ratio_vs_dense_fp32": dense / s["bytes"]}
    res[m] = r
with open(f"{out}/summary.json", "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
PY
cp "$OUT/summary.json" "$SUMMARY"
