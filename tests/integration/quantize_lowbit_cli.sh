#!/usr/bin/env bash
# raffle quantize below 8 bits from the command line (issue 21): the new
# flags' rejections are one line naming the setting, a non-zero exit, and no
# checkpoint written; the accepted forms write int4 / codebook checkpoints
# that `raffle inspect` describes with bits per weight and the entropy
# bound, and `raffle eval` reproduces the task's accuracy.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
command -v jq >/dev/null || { echo "jq not found: install jq"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
D=synthetic:320
"$RAFFLE" train --data "$D" --model lenet-300-100 --iterations 20 --out "$T/fp32" --log-every -1 >/dev/null 2>&1 \
  || { echo "FAIL: training the parent"; exit 1; }
fail=0
reject() {   # expected message fragment, then the flags
  local want=$1; shift
  rm -rf "$T/bad"
  if out=$("$RAFFLE" quantize --ckpt "$T/fp32/model.rckpt" --data "$D" --out "$T/bad" "$@" 2>&1); then
    echo "FAIL: accepted $*"; fail=1; return
  fi
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: $*: more than one line: $out"; fail=1; }
  case $out in *"$want"*) echo "rejected $*: $out" ;; *) echo "FAIL: $*: '$out' lacks '$want'"; fail=1 ;; esac
  [ ! -e "$T/bad/model.rckpt" ] || { echo "FAIL: $*: a checkpoint was written"; fail=1; }
}
reject "bits: 5 is outside [2, 4] for scheme int4" --scheme int4 --bits 5
reject "9 is outside [2, 8]" --scheme kmeans --bits 9
reject "group_size: 48 is not 32, 64 or 128" --scheme int4 --group-size 48
reject "group_size: only scheme int4 takes it" --scheme kmeans --group-size 64
reject "layer_bits: scheme int8 has one width" --layer-bits fc1=4
reject "expected PATTERN=N" --scheme kmeans --layer-bits fc1
reject "invalid number 'x' for 'fc1'" --scheme kmeans --layer-bits fc1=x
reject "'fc1' given twice" --scheme kmeans --layer-bits fc1=4,fc1=5
reject "is not an integer in [2, 8]" --scheme kmeans --layer-bits fc1=1
reject "is not one of int8, int4, kmeans" --scheme int2

"$RAFFLE" quantize --ckpt "$T/fp32/model.rckpt" --data "$D" --scheme int4 --group-size 32 --layer-bits fc3=8 \
  --out "$T/q4" --json > "$T/q4.json" 2>/dev/null || { echo "FAIL: int4"; exit 1; }
"$RAFFLE" quantize --ckpt "$T/fp32/model.rckpt" --data "$D" --scheme kmeans --bits 4 --layer-bits linear=5,fc1=3 \
  --out "$T/km" --json > "$T/km.json" 2>/dev/null || { echo "FAIL: kmeans"; exit 1; }
for k in q4 km; do
  "$RAFFLE" inspect --json "$T/$k/model.rckpt" > "$T/$k.inspect" || { echo "FAIL: inspect $k"; fail=1; continue; }
  jq -e '.bits_per_weight > 0 and .entropy_bound_bytes > 0 and .side_bytes > 0' "$T/$k.inspect" >/dev/null \
    || { echo "FAIL: $k: inspect lacks bits_per_weight / entropy_bound_bytes / side_bytes"; fail=1; }
  a=$(jq .accuracy "$T/$k.json")
  e=$("$RAFFLE" eval --ckpt "$T/$k/model.rckpt" --data "$D" --json | jq .accuracy)
  [ "$a" = "$e" ] && echo "$k: raffle eval reproduces accuracy $a" || { echo "FAIL: $k: task accuracy $a, eval $e"; fail=1; }
done
# int4: fc1 (784 inputs) one group a row, fc2 (300) too, fc3 int8; kmeans: fc1 3 bits, fc2 and fc3 5 (linear)
jq -e '[.tensors[] | select(.name == "fc1.weight") | .storage] == ["int4"]' "$T/q4.inspect" >/dev/null \
  || { echo "FAIL: q4: fc1 not int4"; fail=1; }
jq -e '.weight_bits == {"fc1.weight": 4, "fc2.weight": 4, "fc3.weight": 8}' "$T/q4.json" >/dev/null \
  || { echo "FAIL: q4: weight_bits $(jq -c .weight_bits "$T/q4.json")"; fail=1; }
jq -e '.weight_bits == {"fc1.weight": 3, "fc2.weight": 5, "fc3.weight": 5}' "$T/km.json" >/dev/null \
  || { echo "FAIL: km: weight_bits $(jq -c .weight_bits "$T/km.json")"; fail=1; }
exit $fail
