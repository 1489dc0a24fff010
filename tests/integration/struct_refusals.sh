#!/usr/bin/env bash
# A structured method on a layer it cannot slice, through the real binary
# (issue 21; about 1 s, synthetic data): `raffle validate` of a job and
# `raffle prune` each exit non-zero with one line on stderr naming the layer,
# and the refused prune writes no model.rckpt and no metrics.json.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# refused WHAT PATTERN CMD...: exit 1 (2 for a usage error), exactly one line on stderr, matching PATTERN
refused() {
  local what=$1 pat=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "$what: exit $rc, expected 1: $(cat "$T/err")"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  grep -qF "$pat" "$T/err" || fail "$what: stderr lacks '$pat': $(cat "$T/err")"
  echo "ok: $what: $(cat "$T/err")"
}
job() {   # job MODEL METHOD LAYERS
  printf '{"name":"x","dataset":"synthetic:64","model":"%s","train":{"iterations":1},"experiments":[{"kind":"prune","method":"%s","sparsity":0.5,"layers":"%s"}]}\n' \
    "$1" "$2" "$3" >"$T/job.json"
}
job lenet-300-100 neuron_l1 fc3
refused "validate neuron_l1 fc3" "cannot slice layer 'fc3' (linear): its outputs are the model's logits" "$RAFFLE" validate "$T/job.json"
job conv-2 filter_l1 fc1
refused "validate filter_l1 fc1" "layer 'fc1' is linear" "$RAFFLE" validate "$T/job.json"
job lenet-300-100 head fc1
refused "validate head fc1" "layer 'fc1' (linear) has none" "$RAFFLE" validate "$T/job.json"
job resnet-20 slimming linear
refused "validate slimming linear" "cannot slice layer 'linear'" "$RAFFLE" validate "$T/job.json"
for pair in neuron_l1:fc3 head:fc2; do
  meth=${pair%%:*} layer=${pair#*:}
  refused "prune $meth $layer" "layer '$layer'" "$RAFFLE" prune --data synthetic:64 --model lenet-300-100 --method "$meth" \
    --layers "$layer" --sparsity 0.5 --finetune-iterations 0 --out "$T/p_$meth"
  if [ -e "$T/p_$meth/model.rckpt" ] || [ -e "$T/p_$meth/metrics.json" ]; then
    fail "prune $meth $layer wrote a result: $(ls "$T/p_$meth")"
  fi
done
echo "struct_refusals: ok"
