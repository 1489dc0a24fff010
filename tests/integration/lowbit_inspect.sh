#!/usr/bin/env bash
# The newer checkpoint kinds (codebook, sparse-codebook, int4 symmetric and
# affine, N:M) written by an independent Python implementation of
# docs/checkpoint-format.md: `raffle inspect --json` must report each
# tensor's kind, bits per weight (8 x payload bytes / numel), entropy bound
# (computed here from the spec's definition), codebook / int4 / N:M
# details; the text output must show them; `raffle export` must dequantize
# every tensor to the values this script expects; and a codebook entry set
# to NaN must be rejected naming the codebook.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd python3   # writes the test checkpoint
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ck=$tmp/lowbit.rckpt

PYTHONPATH="$(dirname "$0")" python3 - "$ck" "$tmp/expect.json" "$tmp/nan.rckpt" <<'PY'
import json, math, struct, sys
from rckpt import section, write
def packed(syms, b):                          # codec 6: LSB-first b-bit fields
    acc, nb, out = 0, 0, bytearray()
    for s in syms:
        acc |= s << nb; nb += b
        while nb >= 8: out.append(acc & 0xFF); acc >>= 8; nb -= 8
    if nb: out.append(acc)
    return bytes(out)
def bitmap(mask):
    bm = bytearray((len(mask) + 7) // 8)
    for i, m in enumerate(mask):
        if m: bm[i // 8] |= 1 << (i % 8)
    return bytes(bm)
def f32(v): return struct.unpack('<f', struct.pack('<f', v))[0]
def h0(vals):                                  # order-0 entropy, bits
    n = len(vals); c = {}
    for v in vals: c[v] = c.get(v, 0) + 1
    return -sum(k * math.log2(k / n) for k in c.values())
def h2(p): return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
F32, I8, U8 = 0, 1, 2
tensors, expect = [], {}
# dense codebook, 2 bits: [4, 8]
cb = [-0.5, -0.125, 0.25, 0.75]
idx = [(i * 5 + i // 3) % 4 for i in range(32)]
pay = bytes([2]) + section(2, struct.pack('<4f', *cb)) + section(4, packed(idx, 2), 6, 2)
vals = [cb[i] for i in idx]
tensors.append(("cb.weight", U8, 4, [4, 8], pay, sum(1 for v in vals if v != 0)))
expect["cb.weight"] = dict(values=vals, bound=h0(idx) / 8, bits=2)
# sparse codebook, 3 bits: [4, 8], a bitmap mask
cb3 = [f32(-1 + 2 * j / 7) for j in range(8)]
mask = [1 if (i * 7) % 3 == 0 else 0 for i in range(32)]
kept = [(i * 3) % 8 for i in range(sum(mask))]
pay = bytes([3]) + section(1, bitmap(mask)) + section(2, struct.pack('<8f', *cb3)) + section(4, packed(kept, 3), 6, 3)
vals, k = [], 0
for m in mask:
    vals.append(cb3[kept[k]] if m else 0.0); k += m
tensors.append(("scb.weight", U8, 5, [4, 8], pay, sum(mask)))
expect["scb.weight"] = dict(values=vals, bound=(32 * h2(sum(mask) / 32) + h0(kept)) / 8, bits=3)
# int4 symmetric, group 32: [2, 64]
q = [((i * 11) % 16) - 8 for i in range(128)]
sc = [0.5, 0.25, 0.125, 0.0625]
pay = bytes([2]) + section(2, struct.pack('<4f', *sc)) + section(4, packed([v & 15 for v in q], 4), 6, 4)
vals = [q[i] * sc[(i // 64) * 2 + (i % 64) // 32] for i in range(128)]
tensors.append(("q4.weight", I8, 6, [2, 64], pay, sum(1 for v in q if v != 0)))
expect["q4.weight"] = dict(values=vals, bound=h0(q) / 8, group=32, mode="symmetric")
# int4 affine, group 64: [2, 64], zero points 3 and 12
qa = [(i * 7) % 16 for i in range(128)]
sa, za = [0.1, 0.2], [3, 12]
pay = bytes([3]) + section(2, struct.pack('<2f', *sa)) + section(3, struct.pack('<2i', *za)) + section(4, packed(qa, 4), 6, 4)
vals = [(qa[i] - za[i // 64]) * f32(sa[i // 64]) for i in range(128)]
tensors.append(("q4a.weight", I8, 6, [2, 64], pay, sum(1 for i in range(128) if qa[i] != za[i // 64])))
expect["q4a.weight"] = dict(values=vals, bound=h0(qa) / 8, group=64, mode="affine")
# N:M 2:4: [2, 8], positions 2 bits each
w = [0.5 * (i + 1) for i in range(16)]
pos = [[0, 3], [1, 2], [0, 1], [2, 3]]
nm = [0] * 16
for g, p in enumerate(pos):
    for j in p: nm[4 * g + j] = 1
keptw = [w[i] for i in range(16) if nm[i]]
pay = bytes([2]) + section(1, bytes([2, 4]) + packed([j for p in pos for j in p], 2), 7, 0) + section(4, struct.pack('<%df' % len(keptw), *keptw))
tensors.append(("nm.weight", F32, 7, [2, 8], pay, 8))
expect["nm.weight"] = dict(values=[w[i] if nm[i] else 0.0 for i in range(16)], bound=(4 * math.log2(6) + h0(keptw)) / 8, n=2, m=4)

write(sys.argv[1], {"raffle_version": "test"}, tensors)
for name, _, _, shape, pay, _ in tensors:
    numel = shape[0] * shape[1]
    expect[name]["payload"] = len(pay); expect[name]["bpw"] = 8 * len(pay) / numel
json.dump(expect, open(sys.argv[2], 'w'))
# the same file with codebook entry 1 of cb.weight set to NaN
bad = list(tensors)
name, dt, st, shape, pay, nnz = bad[0]
pay = bytes([2]) + section(2, struct.pack('<4f', -0.5, float('nan'), 0.25, 0.75)) + section(4, packed(idx, 2), 6, 2)
bad[0] = (name, dt, st, shape, pay, nnz)
write(sys.argv[3], {"raffle_version": "test"}, bad)
PY
[ -s "$ck" ] || { echo "FAIL: python could not write the checkpoint"; exit 1; }

out=$("$RAFFLE" inspect "$ck" --json) || { echo "FAIL: inspect rejects a valid checkpoint"; "$RAFFLE" inspect "$ck"; exit 1; }
python3 - "$out" "$tmp/expect.json" <<'PY' || { echo "FAIL: inspect --json content: $out"; exit 1; }
import json, sys
o, want = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
t = {x["name"]: x for x in o["tensors"]}
kinds = {"cb.weight": "codebook", "scb.weight": "sparse-codebook", "q4.weight": "int4", "q4a.weight": "int4", "nm.weight": "nm"}
for name, kind in kinds.items():
    x, w = t[name], want[name]
    assert x["storage"] == kind, (name, x)
    assert x["bytes"] == w["payload"], (name, x["bytes"], w["payload"])
    assert abs(x["bits_per_weight"] - w["bpw"]) < 1e-9, (name, x["bits_per_weight"], w["bpw"])
    assert abs(x["entropy_bound_bytes"] - w["bound"]) < 1e-9, (name, x["entropy_bound_bytes"], w["bound"])
    if "bits" in w:
        assert x["codebook"]["bits"] == w["bits"] and x["codebook"]["entries"] == 1 << w["bits"], x
        assert x["side_bytes"] == 4 << w["bits"], x
    if "group" in w:
        assert x["int4"] == {"group_size": w["group"], "mode": w["mode"]}, x
    if "n" in w:
        assert x["nm"] == {"n": w["n"], "m": w["m"]}, x
assert t["cb.weight"]["coding"] == "values=packed2", t["cb.weight"]["coding"]
assert t["nm.weight"]["coding"] == "mask=nm2:4 values=raw", t["nm.weight"]["coding"]
assert abs(o["entropy_bound_bytes"] - sum(w["bound"] for w in want.values())) < 1e-6
assert o["side_bytes"] == 16 + 32 + 16 + 16, o["side_bytes"]
PY
text=$("$RAFFLE" inspect "$ck") || { echo "FAIL: inspect (text)"; exit 1; }
for s in "codebook[4] (2 bits)" "codebook[8] (3 bits)" "int4 symmetric, group 32, scales[4]" "int4 affine, group 64" "  2:4" "bits/w" "bound"; do
  case $text in *"$s"*) ;; *) echo "FAIL: inspect text lacks '$s':"; echo "$text"; exit 1 ;; esac
done

"$RAFFLE" export --ckpt "$ck" --out "$tmp/x" >/dev/null || { echo "FAIL: export"; exit 1; }   # writes DIR/model.safetensors
python3 - "$tmp/x/model.safetensors" "$tmp/expect.json" <<'PY' || { echo "FAIL: exported values differ"; exit 1; }
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); base = 8 + n
want = json.load(open(sys.argv[2]))
for name, w in want.items():
    e = h[name]
    lo, hi = e["data_offsets"]
    got = struct.unpack('<%df' % ((hi - lo) // 4), b[base + lo:base + hi])
    exp = [struct.unpack('<f', struct.pack('<f', v))[0] for v in w["values"]]
    assert list(got) == exp, (name, got[:8], exp[:8])
PY

msg=$("$RAFFLE" inspect "$tmp/nan.rckpt" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] || { echo "FAIL: a NaN codebook entry gave exit $rc"; exit 1; }
case $msg in *cb.weight*codebook*"not finite"*) ;; *) echo "FAIL: NaN codebook message: $msg"; exit 1 ;; esac
echo "ok: codebook, sparse-codebook, int4 and N:M tensors inspected and exported; NaN codebook rejected: $msg"
