"""PyTorch side of test_struct.c: a sliced model exported by raffle to
safetensors, rebuilt in PyTorch 1.13 from the spec in the file's metadata
("raffle_spec") and the tensors' shapes alone, loaded, and run.

    struct_ref.py DIR    reads DIR/model.safetensors and DIR/x.bin (float32,
                         [B, C, H, W] with B, C, H, W in DIR/x.json) and
                         writes DIR/logits_torch.bin (eval mode)

The modules are plain torch.nn ones (Conv2d, Linear, BatchNorm via
F.batch_norm, pooling); their tensors are taken from the file by the
spec's layer names, and every tensor of the file must be used exactly once
(a strict load). Only the layer types the presets' CNNs use are built."""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header, data, out = json.loads(buf[8:8 + n]), buf[8 + n:], {}
    meta = header.pop("__metadata__", {})
    for k, v in header.items():
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).copy())
    return meta, out


class Net(nn.Module):
    def __init__(self, spec, tensors):
        super().__init__()
        self.spec, self.mods, used = spec, nn.ModuleList(), set()

        def take(name):
            used.add(name)
            return nn.Parameter(tensors[name]) if not name.endswith(("running_mean", "running_var")) else tensors[name]

        for i, L in enumerate(spec["layers"]):
            t, name = L["type"], L.get("name", "layers.%d" % i)
            m = nn.Identity()
            if t == "conv2d":
                w = tensors[name + ".weight"]
                kh, kw = L.get("kh", L.get("kernel", 3)), L.get("kw", L.get("kernel", 3))
                m = nn.Conv2d(w.shape[1], w.shape[0], (kh, kw), L.get("stride", 1), L.get("padding", 0),
                              bias=bool(L.get("bias", 1)))
                assert w.shape[0] == L["out"], (name, w.shape, L["out"])
                m.weight = take(name + ".weight")
                if m.bias is not None:
                    m.bias = take(name + ".bias")
            elif t == "linear":
                w = tensors[name + ".weight"]
                m = nn.Linear(w.shape[1], w.shape[0], bias=bool(L.get("bias", 1)))
                assert w.shape[0] == L["out"], (name, w.shape, L["out"])
                m.weight = take(name + ".weight")
                if m.bias is not None:
                    m.bias = take(name + ".bias")
            elif t == "batchnorm":
                m = nn.Module()
                m.weight, m.bias = take(name + ".weight"), take(name + ".bias")
                m.register_buffer("running_mean", take(name + ".running_mean"))
                m.register_buffer("running_var", take(name + ".running_var"))
            self.mods.append(m)
        left = set(tensors) - used
        assert not left, "tensors the spec does not use: %s" % sorted(left)

    def forward(self, x):
        names = [L.get("name", "layers.%d" % i) for i, L in enumerate(self.spec["layers"])]
        outs = {}

        def src(ref, i):
            if ref in ("input", -1):
                return x
            if isinstance(ref, int):
                return outs[names[ref]]
            return outs[ref]

        y = x
        for i, (L, m) in enumerate(zip(self.spec["layers"], self.mods)):
            ins = L.get("inputs", [names[i - 1] if i else "input"])
            ins = ins if isinstance(ins, list) else [ins]
            a = [src(r, i) for r in ins]
            t = L["type"]
            if t in ("conv2d", "linear"):
                y = m(a[0])
            elif t == "batchnorm":
                y = F.batch_norm(a[0], m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, L.get("eps", 1e-5))
            elif t == "relu":
                y = F.relu(a[0])
            elif t == "maxpool":
                k = L.get("kernel", 2)
                y = F.max_pool2d(a[0], k, L.get("stride", k), L.get("padding", 0))
            elif t == "avgpool":
                k = L.get("kernel", 2)
                y = F.avg_pool2d(a[0], k, L.get("stride", k), L.get("padding", 0))
            elif t == "gap":
                y = a[0].mean(dim=(2, 3))
            elif t == "flatten":
                y = a[0].flatten(1)
            elif t == "dropout":
                y = a[0]
            elif t == "add":
                y = a[0]
                for z in a[1:]:
                    if z.shape != y.shape:   # option A: subsample, place the channels at "front"
                        s = math.ceil(z.shape[2] / y.shape[2])
                        z = z[:, :, ::s, ::s]
                        front = L.get("front", (y.shape[1] - z.shape[1]) // 2)
                        z = F.pad(z, (0, 0, 0, 0, front, y.shape[1] - z.shape[1] - front))
                    y = y + z
            elif t == "concat":
                y = torch.cat(a, dim=1)
            else:
                raise ValueError("layer type %s not built here" % t)
            outs[names[i]] = y
        return y


def main():
    d = sys.argv[1]
    meta, tensors = read_safetensors(os.path.join(d, "model.safetensors"))
    spec = json.loads(meta["raffle_spec"])
    shape = json.load(open(os.path.join(d, "x.json")))
    x = torch.from_numpy(np.fromfile(os.path.join(d, "x.bin"), dtype="<f4").reshape(shape))
    net = Net(spec, tensors).eval()
    with torch.no_grad():
        net(x).numpy().astype("<f4").tofile(os.path.join(d, "logits_torch.bin"))


if __name__ == "__main__":
    main()
