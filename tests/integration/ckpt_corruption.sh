#!/usr/bin/env bash
# Checkpoint corruption (issue 2, "Done when"): a small checkpoint written by
# an independent Python implementation of docs/checkpoint-format.md must be
# read by `raffle inspect`; then every single-byte flip (XOR 0xFF) and every
# truncation must make `raffle inspect` exit 1 with a one-line message and
# never crash (a signal, exit >= 128, or sanitizer output is a failure).
# The exhaustive loop over rf_ckpt_decode itself is in tests/unit/test_ckpt.c.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd python3
need_python_module torch   # the export must load in PyTorch
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ck=$tmp/small.rckpt

PYTHONPATH="$(dirname "$0")" python3 - "$ck" <<'PY'
import struct, sys
from rckpt import section, write
F32, DENSE, SPARSE = 0, 0, 1
w = [((i * 37) % 11 - 5) * 0.125 for i in range(48)]
mask = [1 if (i * 7) % 5 == 0 else 0 for i in range(48)]
kept = [v for v, m in zip(w, mask) if m]
bitmap = bytearray(6)
for i, m in enumerate(mask):
    if m: bitmap[i // 8] |= 1 << (i % 8)
bias = [0.5, -0.25, 0.0, 1.0]
tensors = [
    ("fc1.weight", F32, SPARSE, [4, 12], bytes([2]) + section(1, bytes(bitmap)) + section(4, struct.pack('<%df' % len(kept), *kept)), sum(mask)),
    ("fc1.bias", F32, DENSE, [4], bytes([1]) + section(4, struct.pack('<4f', *bias)), sum(1 for b in bias if b != 0)),
]
write(sys.argv[1], {"raffle_version": "test", "spec": {"input": [1, 2, 6]}}, tensors)
PY
[ -s "$ck" ] || { echo "FAIL: python could not write the checkpoint"; exit 1; }

out=$("$RAFFLE" inspect "$ck" --json) || { echo "FAIL: inspect rejects a valid checkpoint"; "$RAFFLE" inspect "$ck"; exit 1; }
python3 -c '
import json, sys
o = json.loads(sys.argv[1])
assert o["format_version"] == 1, o
t = {x["name"]: x for x in o["tensors"]}
assert t["fc1.weight"]["storage"] == "sparse" and t["fc1.weight"]["shape"] == [4, 12], t
assert abs(t["fc1.weight"]["sparsity"] - (1 - 10 / 48)) < 1e-9, t
assert t["fc1.bias"]["storage"] == "dense", t
for k in ("bytes", "sparsity", "bits_per_weight", "entropy_bound_bytes", "metadata", "tensors"): assert k in o, k
' "$out" || { echo "FAIL: inspect --json content: $out"; exit 1; }

size=$(stat -c %s "$ck")
echo "checkpoint: $size bytes"
bad=$tmp/bad.rckpt
fail=0
check() {   # $1: description
  local rc msg
  msg=$("$RAFFLE" inspect "$bad" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne 1 ] || [ -z "$msg" ] || [ "$(printf '%s\n' "$msg" | wc -l)" -ne 1 ] \
     || printf '%s' "$msg" | grep -q -e AddressSanitizer -e 'runtime error'; then
    echo "FAIL: $1: exit $rc, message: $msg"; fail=1
  fi
}
# all flipped copies in one Python run (a process per offset is slow)
mkdir -p "$tmp/flips"
python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
for i in range(len(b)):
    x = bytearray(b); x[i] ^= 0xFF
    open("%s/%d" % (sys.argv[2], i), "wb").write(x)
' "$ck" "$tmp/flips"
for ((i = 0; i < size; i++)); do
  bad=$tmp/flips/$i
  check "flip at $i"
done
bad=$tmp/bad.rckpt
for ((len = 0; len < size; len++)); do
  head -c "$len" "$ck" > "$bad"
  check "truncated to $len"
done
"$RAFFLE" inspect "$tmp/missing.rckpt" 2>/dev/null; [ $? -eq 1 ] || { echo "FAIL: missing file"; fail=1; }
[ "$fail" -eq 0 ] && echo "ok: $size flips and $size truncations all rejected"
[ "$fail" -eq 0 ] || exit 1

# safetensors export -> PyTorch -> import -> same weights
st=$tmp/exported/model.safetensors
"$RAFFLE" export --ckpt "$ck" --format safetensors --out "$tmp/exported" || { echo "FAIL: export"; exit 1; }
cat > "$tmp/spec.json" <<'JSON'
{"input": [1, 2, 6], "classes": 4, "layers": [{"type": "flatten"}, {"type": "linear", "name": "fc1", "out": 4}]}
JSON
back=$tmp/back/model.rckpt
"$RAFFLE" import --safetensors "$st" --model "$tmp/spec.json" --out "$tmp/back" || { echo "FAIL: import"; exit 1; }
python3 - "$st" <<'PY' || { echo "FAIL: exported safetensors content"; exit 1; }
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
data = b[8 + n:]
assert n % 8 == 0 and h["__metadata__"]["format"] == "pt", h
w = h["fc1.weight"]; assert w["dtype"] == "F32" and w["shape"] == [4, 12], w
vals = struct.unpack('<48f', data[w["data_offsets"][0]:w["data_offsets"][1]])
want = [((i * 37) % 11 - 5) * 0.125 if (i * 7) % 5 == 0 else 0.0 for i in range(48)]
assert list(vals) == want, (vals, want)
PY
b1=$("$RAFFLE" inspect "$back" --json) || { echo "FAIL: inspect of the imported checkpoint"; exit 1; }
python3 -c '
import json, sys
o = json.loads(sys.argv[1])
t = {x["name"]: x for x in o["tensors"]}
assert t["fc1.weight"]["shape"] == [4, 12] and t["fc1.bias"]["shape"] == [4], t
# dense after the round trip: the 10 kept weights include one 0.0, so 9 non-zeros
nz = sum(1 for i in range(48) if (i * 7) % 5 == 0 and (i * 37) % 11 != 5)
assert t["fc1.weight"]["storage"] == "dense" and abs(t["fc1.weight"]["sparsity"] - (1 - nz / 48)) < 1e-9, t
' "$b1" || { echo "FAIL: imported checkpoint: $b1"; exit 1; }
# wrong model: the error names the tensor
msg=$("$RAFFLE" import --safetensors "$st" --model lenet-300-100 --out "$tmp/x" 2>&1); rc=$?
[ "$rc" -eq 1 ] && printf '%s' "$msg" | grep -q "fc1.weight" || { echo "FAIL: mismatched import: exit $rc: $msg"; exit 1; }
timeout 300 /usr/bin/python3 - "$st" <<'PY' || { echo "FAIL: PyTorch cannot load the export"; exit 1; }
import json, struct, sys, torch
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
sd = {k: torch.frombuffer(bytearray(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]), dtype=torch.float32).reshape(v["shape"])
      for k, v in h.items() if k != "__metadata__"}
model = torch.nn.Sequential()
model.add_module("fc1", torch.nn.Linear(12, 4))
model.load_state_dict(sd, strict=True)
print("pytorch: loaded", sorted(sd))
PY
echo "ok: export, import and PyTorch load"
exit 0
