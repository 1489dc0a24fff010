#!/usr/bin/env bash
# Issue 23 ("correct, complete records": raffle validate) and issue 19,
# defect 11: validate reports every error of a job at once, each with its
# JSON path (and --json lists them); model names get a did-you-mean and spec
# paths are checked before any work; the command line refuses negative,
# zero or out-of-range numbers with exit 2 instead of using a default.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/bad.json" <<'JOB'
{"dataset": "synthetic", "model": "lenet5",
 "train": {"lr": 0, "epochs": -1},
 "experiments": [{"kind": "prune", "method": "magnitud", "sparsity": [0.5, 1.3]},
                 {"kind": "distill", "teacher": {"model": "lenet-300-1OO"}},
                 {"kind": "train", "model": "nothere/m.json"}]}
JOB
out=$("$RAFFLE" validate "$T/bad.json" 2>&1); rc=$?
[ $rc = 1 ] || { echo "validate exit $rc, expected 1: $out"; exit 1; }
for want in 'model: unknown model "lenet5" (did you mean "lenet-5"?)' \
            'train.lr: 0 is outside (0, 10]' 'train.epochs: -1 is outside' \
            'experiments\[0\].method: "magnitud" is not one of' 'experiments\[0\].sparsity\[1\]: 1.3 is outside' \
            'experiments\[1\].teacher.model: unknown model "lenet-300-1OO" (did you mean "lenet-300-100"?)' \
            'experiments\[2\].model: nothere/m.json: No such file or directory' '7 errors'; do
  echo "$out" | grep -q -- "$want" || { echo "validate output lacks '$want':"; echo "$out"; exit 1; }
done
[ "$(echo "$out" | grep -c "error: $T/bad.json: ")" = 7 ] || { echo "expected 7 error lines naming the file: $out"; exit 1; }
n=$("$RAFFLE" validate --json "$T/bad.json" 2>/dev/null | jq '.errors | length')
[ "$n" = 7 ] || { echo "validate --json: $n errors listed, expected 7"; exit 1; }
# sweep refuses the same job with the same lines, before any store exists
out=$("$RAFFLE" sweep --store "$T/s" "$T/bad.json" 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q '7 errors' && [ ! -e "$T/s" ] || { echo "sweep of the bad job: exit $rc: $out"; exit 1; }
# numbers on the command line: exit 2 and the flag named, never the default
expect2() {
  local want=$1; shift
  out=$(timeout 60 "$RAFFLE" "$@" 2>&1); rc=$?
  [ $rc = 2 ] || { echo "raffle $*: exit $rc, expected 2: $out"; exit 1; }
  echo "$out" | grep -q -- "$want" || { echo "raffle $*: message lacks '$want': $out"; exit 1; }
}
expect2 '--epochs: -1 is outside' train -d synthetic:64 -m lenet-300-100 --epochs -1 --out "$T/o"
expect2 '--iterations: 0 means not given' train -d synthetic:64 -m lenet-300-100 --iterations 0 --out "$T/o"
expect2 '--batch: 0 is outside' train -d synthetic:64 -m lenet-300-100 --batch 0 --out "$T/o"
expect2 '--threads: 0 is out of range' train -d synthetic:64 -m lenet-300-100 --threads 0 --out "$T/o"
expect2 '--model: unknown model "lenet5" (did you mean "lenet-5"?)' train -d synthetic:64 -m lenet5 --out "$T/o"
expect2 '--retries: -1 is out of range' sweep --store "$T/s" --retries -1 "$T/bad.json"
expect2 '--memory-mb: 0 is out of range' sweep --store "$T/s" --memory-mb 0 "$T/bad.json"
expect2 '--time-limit: must be > 0' sweep --store "$T/s" --time-limit 0 "$T/bad.json"
expect2 '--batch: 0 is out of range' eval --batch 0 "$T/none.rckpt"
[ ! -e "$T/o" ] && [ ! -e "$T/s" ] || { echo "a refused command left output behind"; exit 1; }
echo "ok: every error of a job at once with its JSON path; bad numbers on the command line exit 2"
