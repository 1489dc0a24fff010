#!/usr/bin/env bash
# Fashion-MNIST test accuracy of the model presets (seed 0, at most 20
# epochs, batch 128), written to the "training accuracy" section of
# docs/results.md (the rest of that file is left as it is).
#
#   bench/train/accuracy.sh                      # all four presets
#   bench/train/accuracy.sh lenet-300-100 lenet-5
#   EPOCHS=5 bench/train/accuracy.sh lenet-5     # a shorter check
#
# Targets (issue 3): lenet-300-100 >= 89.0%, lenet-5 >= 90.0%,
# conv-2 >= 91.5%, vit-tiny >= 88.0%. One thread per run; runs one after the
# other (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-20}
DATA=${DATA:-fashion-mnist}
RESULTS=docs/results.md
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(lenet-300-100 lenet-5 conv-2 vit-tiny)
PY=/usr/bin/python3

# Recipes: Adam(W) with a cosine schedule, batch 128, no augmentation.
# The transformer gets the usual ViT regularisation (decoupled weight decay,
# warm-up, label smoothing); the conv nets, which overfit Fashion-MNIST within
# a few epochs, get decoupled weight decay and label smoothing as well.
recipe() {
  case "$1" in
    lenet-300-100) echo "--optimizer adam --lr 1e-3 --schedule cosine" ;;
    lenet-5)       echo "--optimizer adam --lr 2e-3 --schedule cosine" ;;
    conv-2)        echo "--optimizer adamw --lr 5e-4 --weight-decay 0.05 --label-smoothing 0.1 --schedule cosine" ;;
    vit-tiny)      echo "--optimizer adamw --lr 1e-3 --weight-decay 0.05 --warmup 938 --label-smoothing 0.1 --schedule cosine" ;;
    *)             echo "--optimizer adam --lr 1e-3 --schedule cosine" ;;
  esac
}
target() {
  case "$1" in lenet-300-100) echo 0.890 ;; lenet-5) echo 0.900 ;; conv-2) echo 0.915 ;; vit-tiny) echo 0.880 ;; *) echo 0 ;; esac
}

make -s -j2 all >&2
rows=()
for m in "${MODELS[@]}"; do
  r=$(recipe "$m")
  echo "== $m: raffle train --model $m --data $DATA --epochs $EPOCHS --batch 128 --seed 0 $r" >&2
  # shellcheck disable=SC2086
  j=$(build/raffle train --model "$m" --data "$DATA" --epochs "$EPOCHS" --batch 128 --seed 0 --threads 1 \
        --log-every -1 --json $r)
  echo "$j" >&2
  rows+=("$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print("| %s | %.2f%% | %.2f%% | %.1f%% | %d | %d | %.0f | `%s` |" % (sys.argv[2], 100*j["accuracy"], 100*j["test_accuracy_at_best_val"], 100*float(sys.argv[3]), sys.argv[5] and int(sys.argv[5]) or 0, j["parameters"], j["timing"]["seconds"], sys.argv[4]))' "$j" "$m" "$(target "$m")" "$r" "$EPOCHS")")
done

section=$(mktemp)
{
  echo "<!-- train-accuracy:begin (bench/train/accuracy.sh rewrites this section) -->"
  echo "## Training accuracy (Fashion-MNIST test split, seed 0, batch 128)"
  echo
  echo "Measured on one thread with \`bench/train/accuracy.sh MODEL\` (EPOCHS=N where the epochs column is below 20); latest run $(date -u +%Y-%m-%d): \`${MODELS[*]}\`."
  echo
  echo "| model | final test accuracy | test at the best validation epoch | target | epochs | parameters | seconds | recipe |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  missing=()
  for t in lenet-300-100 lenet-5 conv-2 vit-tiny; do
    case " ${MODELS[*]} " in *" $t "*) ;; *) missing+=("$t") ;; esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo
    echo "Not measured in this run: ${missing[*]} (reproduce with \`bench/train/accuracy.sh ${missing[*]}\`)."
  fi
  echo "<!-- train-accuracy:end -->"
} > "$section"
touch "$RESULTS"
"$PY" - "$RESULTS" "$section" <<'PYEOF'
import re, sys
path, sec = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
doc = open(path).read()
pat = re.compile(r"<!-- train-accuracy:begin.*?<!-- train-accuracy:end -->", re.S)
# Rows of models not trained in this run are kept from the previous section
# (each row carries its own epochs and recipe), so presets can be measured
# one at a time; the "not measured" note then lists only models with no row.
def rows(text):
    return {l.split("|")[1].strip(): l for l in text.splitlines()
            if l.startswith("| ") and not l.startswith("| model") and not l.startswith("| ---")}
old = pat.search(doc)
if old:
    new_rows, kept = rows(sec), {k: v for k, v in rows(old.group(0)).items() if k not in rows(sec)}
    if kept:
        order = ["lenet-300-100", "lenet-5", "conv-2", "vit-tiny"]
        merged = {**kept, **new_rows}
        keys = sorted(merged, key=lambda k: order.index(k) if k in order else len(order))
        lines = [l for l in sec.splitlines() if not (l.startswith("| ") and not l.startswith("| model")
                                                      and not l.startswith("| ---"))]
        at = next(i for i, l in enumerate(lines) if l.startswith("| ---")) + 1
        lines[at:at] = [merged[k] for k in keys]
        lines = [l for l in lines if not l.startswith("Not measured in this run")]
        missing = [m for m in order if m not in merged]
        if missing:
            lines.insert(len(lines) - 1, "Not measured: %s (reproduce with `bench/train/accuracy.sh %s`)." % (" ".join(missing), " ".join(missing)))
        sec = "\n".join(lines)
doc = pat.sub(lambda _: sec, doc) if pat.search(doc) else (doc.rstrip("\n") + ("\n\n" if doc.strip() else "") + sec + "\n")
open(path, "w").write(doc)
PYEOF
rm -f "$section"
echo "updated $RESULTS" >&2
