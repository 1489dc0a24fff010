#!/usr/bin/env python3
"""Order-0 entropy of the int8 values a checkpoint would store, per scale
granularity (docs/checkpoint-format.md, "Could context modelling get there?").

    build/raffle export --ckpt DIR/model.rckpt --out /tmp/m.safetensors
    bench/quant/value_entropy.py /tmp/m.safetensors

For every 2-D "*.weight" tensor: the kept (non-zero) weights, quantized
symmetrically to [-127, 127] with one scale per output row (raffle's PTQ)
and with one scale per tensor, and the Shannon entropy of the resulting
values (bits per value and bytes). Plain Python, no numpy."""
import json
import math
import struct
import sys
from collections import Counter


def entropy_bits(counts):
    total = sum(counts.values())
    return -sum(c * math.log2(c / total) for c in counts.values())


def main(path):
    blob = open(path, "rb").read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    totals = {"row": 0.0, "tensor": 0.0}
    for name, meta in header.items():
        if name == "__metadata__" or not name.endswith("weight") or len(meta["shape"]) != 2:
            continue
        if meta["dtype"] != "F32":
            sys.exit(f"{path}: {name}: dtype {meta['dtype']}, expected F32")
        a, b = meta["data_offsets"]
        w = struct.unpack("<%df" % ((b - a) // 4), blob[base + a:base + b])
        rows, cols = meta["shape"]
        nnz = sum(1 for x in w if x != 0.0)
        tensor_max = max(abs(x) for x in w)
        for mode in ("row", "tensor"):
            counts = Counter()
            for r in range(rows):
                row = w[r * cols:(r + 1) * cols]
                mx = max(abs(x) for x in row) if mode == "row" else tensor_max
                if mx == 0.0:
                    continue
                for x in row:
                    if x != 0.0:
                        q = max(-127, min(127, round(x / mx * 127)))
                        counts[q if q != 0 else (1 if x > 0 else -1)] += 1
            bits = entropy_bits(counts)
            totals[mode] += bits
            print(f"{name:12s} {rows}x{cols} nnz {nnz:7d} scale per {mode:6s}: "
                  f"{bits / max(1, nnz):.3f} bits/value, {bits / 8:9.0f} bytes")
    print("total bytes of values: per row %.0f, per tensor %.0f" % (totals["row"] / 8, totals["tensor"] / 8))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: value_entropy.py MODEL.safetensors")
    main(sys.argv[1])
