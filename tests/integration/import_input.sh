#!/usr/bin/env bash
# `raffle import --input` through the real binary (issue 20): a ResNet-20
# trained on 28x28x1 images exported to safetensors imports back only when
# the preset is built for that input (the preset's default is 3x32x32), and
# then evaluates to the same accuracy and loss as the checkpoint it came
# from. Without --input the import fails with one line naming the tensor;
# a malformed --input fails naming the option; neither writes anything.
# About 3 s of CPU.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$RAFFLE" train --data synthetic:96 --model resnet-20 --validation 0 --iterations 2 --batch 16 --seed 2 \
  --out "$T/run" --log-every -1 >/dev/null || fail "raffle train"
"$RAFFLE" export --ckpt "$T/run/model.rckpt" --out "$T/st" >/dev/null 2>&1 || fail "raffle export"

"$RAFFLE" import --safetensors "$T/st/model.safetensors" --model resnet-20 --out "$T/no" 2> "$T/err" \
  && fail "import into the 3x32x32 preset succeeded"
[ "$(wc -l < "$T/err")" -eq 1 ] || fail "more than one error line: $(cat "$T/err")"
grep -q 'conv1.weight' "$T/err" || fail "the error does not name conv1.weight: $(cat "$T/err")"
[ -e "$T/no/model.rckpt" ] && fail "a failed import wrote a checkpoint"

for bad in 1x28 1x28x28x1 0x28x28 1xax28 -1x28x28; do
  "$RAFFLE" import --safetensors "$T/st/model.safetensors" --model resnet-20 --input "$bad" --out "$T/bad" 2> "$T/err" \
    && fail "--input $bad accepted"
  grep -q -- '--input' "$T/err" || fail "--input $bad: error does not name the option: $(cat "$T/err")"
done
[ -e "$T/bad" ] && fail "a rejected --input wrote $T/bad"

"$RAFFLE" import --safetensors "$T/st/model.safetensors" --model resnet-20 --input 1x28x28 --out "$T/imp" --json \
  > "$T/imp.json" || fail "raffle import --input 1x28x28"
[ "$(jq -r .parameters "$T/imp.json")" = 269434 ] || fail "parameters: $(cat "$T/imp.json")"
"$RAFFLE" eval --ckpt "$T/run/model.rckpt" --data synthetic:96 --validation 0 --json > "$T/a.json" || fail "eval original"
"$RAFFLE" eval --ckpt "$T/imp/model.rckpt" --data synthetic:96 --validation 0 --json > "$T/b.json" || fail "eval imported"
for k in accuracy loss; do
  [ "$(jq .$k "$T/a.json")" = "$(jq .$k "$T/b.json")" ] || fail "$k: $(jq .$k "$T/a.json") vs $(jq .$k "$T/b.json")"
done
echo "ok: import --input 1x28x28 gives the exported model's accuracy $(jq .accuracy "$T/b.json") and loss"
