#!/usr/bin/env bash
# `raffle eval --predictions` through the real binary (issue 20): a model
# trained with padding, a validation split and augmentation is evaluated
# from its checkpoint alone (the data preparation comes from the settings
# it recorded), and the .npy files it writes are read back by an
# independent reader (Python's struct, no numpy): logits [n, classes]
# float32, predicted and true labels int32 [n]; argmax(logits) == pred,
# mean(pred == labels) equals the accuracy eval printed and the task's
# reported test accuracy (metrics.json). The validation split is evaluated
# too (--split val) against val_accuracy. Bad arguments fail with one line
# and write nothing.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd python3   # reads the .npy files back
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$RAFFLE" train --data synthetic:640 --model lenet-5 --pad-to 32 --validation 128 --augment crop:2+flip \
  --iterations 30 --batch 32 --eval-every 10 --seed 3 --out "$T/run" --log-every -1 >/dev/null \
  || fail "raffle train"
[ -f "$T/run/metrics.json" ] || fail "no metrics.json"

"$RAFFLE" eval --ckpt "$T/run/model.rckpt" --predictions "$T/p" --json > "$T/eval.json" || fail "raffle eval --predictions"
"$RAFFLE" eval --ckpt "$T/run/model.rckpt" --split val --predictions "$T/v" --json > "$T/val.json" || fail "raffle eval --split val"
for f in p.logits.npy p.pred.npy p.labels.npy v.logits.npy v.pred.npy v.labels.npy; do
  [ -f "$T/$f" ] || fail "$f not written"
done

python3 - "$T" <<'PY' || exit 1
import ast, json, struct, sys
root = sys.argv[1]

def npy(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY", path + ": not a .npy file"
    major = b[6]
    hl, off = (struct.unpack("<H", b[8:10])[0], 10) if major == 1 else (struct.unpack("<I", b[8:12])[0], 12)
    h = ast.literal_eval(b[off:off + hl].decode("latin1"))
    assert not h["fortran_order"], path
    fmt = {"<f4": "f", "<i4": "i"}[h["descr"]]
    n = 1
    for d in h["shape"]:
        n *= d
    data = struct.unpack("<%d%s" % (n, fmt), b[off + hl:])
    return h["shape"], data

def check(prefix, reported, what):
    (n, k), logits = npy(f"{root}/{prefix}.logits.npy")
    (n2,), pred = npy(f"{root}/{prefix}.pred.npy")
    (n3,), labels = npy(f"{root}/{prefix}.labels.npy")
    assert n == n2 == n3, (n, n2, n3)
    assert k == 10, k
    for i in range(n):
        row = logits[i * k:(i + 1) * k]
        assert pred[i] == row.index(max(row)), f"{prefix}: sample {i}: pred {pred[i]} is not the argmax"
    acc = sum(p == y for p, y in zip(pred, labels)) / n
    for name, value in reported.items():
        assert abs(acc - value) < 1e-12, f"{prefix}: accuracy from the files {acc} != {name} {value}"
    print(f"{what}: {n} samples, accuracy {acc:.4f} = {', '.join(reported)}")
    return n

m = json.load(open(f"{root}/run/metrics.json"))
e = json.load(open(f"{root}/eval.json"))
v = json.load(open(f"{root}/val.json"))
assert e["split"] == "test" and v["split"] == "val", (e["split"], v["split"])
assert e["data_prep"]["pad_to"] == 32 and e["data_prep"]["validation"] == 128, e["data_prep"]
n = check("p", {"eval accuracy": e["accuracy"], "metrics test_accuracy": m["test_accuracy"],
                "metrics accuracy": m["accuracy"]}, "test")
assert n == 160, n
nv = check("v", {"eval val_accuracy": v["val_accuracy"], "metrics val_accuracy": m["val_accuracy"]}, "validation")
assert nv == 128, nv
PY

# wrong uses: one line, exit 2 or 1, nothing written
out=$("$RAFFLE" eval --ckpt "$T/run/model.rckpt" --split train 2>&1); rc=$?
[ "$rc" = 2 ] || fail "--split train exited $rc: $out"
out=$("$RAFFLE" eval --ckpt "$T/run/model.rckpt" --validation 0 --split val 2>&1); rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "no validation split" || fail "--split val without one: $rc $out"
out=$("$RAFFLE" eval --ckpt "$T/run/model.rckpt" --pad-to 0 --predictions "$T/bad" 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "28x28 data into a 32x32 model: $rc $out"
ls "$T"/bad* >/dev/null 2>&1 && fail "a failed eval left prediction files"
out=$("$RAFFLE" eval --ckpt "$T/run/model.rckpt" --predictions "$T/no/such/dir/p" 2>&1); rc=$?
[ "$rc" = 1 ] || fail "unwritable predictions path exited $rc: $out"
echo "ok"
