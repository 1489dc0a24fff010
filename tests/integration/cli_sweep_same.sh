#!/usr/bin/env bash
# One kind, two front-ends, the same bytes: each of train, prune, distill
# and quantize (int8; int4 groups; k-means sharing with centroid
# fine-tuning, mixed precision) is run once through its command (`raffle KIND`, no setting
# given beyond what the kind requires) and once as a sweep of a job with
# the same (default) settings, and the checkpoints must be byte-identical
# and metrics.json equal outside "timing" and "engine". Both read one
# settings table per kind (raffle/settings.h, the kind descriptors of
# raffle/task.h): a default that differed between the job and the command
# line would change the weights, the checkpoint metadata, or both.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
D=synthetic:640
M=lenet-300-100
cat > "$T/same.json" <<JOB
{"name": "same", "dataset": "$D", "model": "$M",
 "experiments": [
   {"kind": "train"},
   {"kind": "prune", "method": "magnitude", "sparsity": 0.5},
   {"kind": "distill", "teacher": {"model": "$M"}},
   {"kind": "quantize"},
   {"kind": "quantize", "name": "q4", "scheme": "int4", "group_size": 64, "layer_bits": {"fc3": 8}},
   {"kind": "quantize", "name": "km", "scheme": "kmeans", "bits": 5, "mode": "qat", "layer_bits": {"fc1": 3},
    "qat_train": {"iterations": 3}}]}
JOB
"$RAFFLE" sweep --quiet --store "$T/s" "$T/same.json" || { echo "FAIL: the sweep"; exit 1; }
c=$T/cli
"$RAFFLE" train --data "$D" --model "$M" --out "$c/train" --log-every -1 >/dev/null || { echo "FAIL: raffle train"; exit 1; }
"$RAFFLE" prune --ckpt "$c/train/model.rckpt" --data "$D" --model "$M" --method magnitude --sparsity 0.5 \
  --out "$c/prune" --log-every -1 >/dev/null || { echo "FAIL: raffle prune"; exit 1; }
"$RAFFLE" distill --teacher "$c/train/model.rckpt" --data "$D" --model "$M" --out "$c/distill" --log-every -1 >/dev/null \
  || { echo "FAIL: raffle distill"; exit 1; }
"$RAFFLE" quantize --ckpt "$c/train/model.rckpt" --data "$D" --model "$M" --out "$c/quantize" >/dev/null \
  || { echo "FAIL: raffle quantize"; exit 1; }
"$RAFFLE" quantize --ckpt "$c/train/model.rckpt" --data "$D" --model "$M" --scheme int4 --group-size 64 \
  --layer-bits fc3=8 --out "$c/q4" >/dev/null || { echo "FAIL: raffle quantize --scheme int4"; exit 1; }
"$RAFFLE" quantize --ckpt "$c/train/model.rckpt" --data "$D" --model "$M" --scheme kmeans --bits 5 --mode qat \
  --iterations 3 --layer-bits fc1=3 --out "$c/km" --log-every -1 >/dev/null || { echo "FAIL: raffle quantize --scheme kmeans"; exit 1; }
fail=0
for k in train prune distill quantize q4 km; do
  # the three quantize experiments: told apart by their scheme
  case $k in
    quantize) sel='.kind == "quantize" and (.settings.scheme == null)' ;;
    q4) sel='.kind == "quantize" and .settings.scheme == "int4"' ;;
    km) sel='.kind == "quantize" and .settings.scheme == "kmeans"' ;;
    *) sel=".kind == \"$k\"" ;;
  esac
  ids=$(jq -r ".tasks[] | select($sel) | .id" "$T/s/same/report.json")
  [ "$(echo "$ids" | wc -w)" -eq 1 ] || { echo "FAIL: $k: expected one sweep task, got: $ids"; fail=1; continue; }
  sw=$T/s/same/tasks/$ids
  if cmp -s "$sw/model.rckpt" "$c/$k/model.rckpt"; then
    echo "$k: model.rckpt identical ($(stat -c %s "$sw/model.rckpt") bytes, task $ids)"
  else
    echo "FAIL: $k: model.rckpt differs between the sweep (task $ids) and raffle $k"; fail=1
  fi
  a=$(jq -S 'del(.timing, .engine)' "$sw/metrics.json"); b=$(jq -S 'del(.timing, .engine)' "$c/$k/metrics.json")
  [ "$a" = "$b" ] || { echo "FAIL: $k: metrics.json differs"; diff <(echo "$a") <(echo "$b") | head -20; fail=1; }
  # the settings the two ran with are the same object
  a=$(jq -S '.settings' "$c/$k/task.json")
  b=$(jq -S --arg id "$ids" '.tasks[] | select(.id == $id) | .settings' "$T/s/same/report.json")
  [ "$a" = "$b" ] || { echo "FAIL: $k: settings differ"; diff <(echo "$a") <(echo "$b") | head -20; fail=1; }
done
exit $fail
