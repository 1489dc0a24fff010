"""PyTorch reference implementations of raffle's CIFAR presets, written the
way the public reference code writes them (not built from raffle's specs):

  resnet-20/32/56  akamaster/pytorch_resnet_cifar10 (option A shortcuts:
                   x[:, :, ::2, ::2] zero-padded to the new width, half the
                   zero channels on each side), classifier `linear`
  resnet-18        kuangliu/pytorch-cifar, Synaptic-Flow (3x3 stem, no
                   max-pool, option B: `shortcut` = Sequential(conv 1x1, BN))
  vgg-11/16/19     open_lth models/cifar_vgg.py (ConvModule = conv 3x3 with
                   bias + BN + ReLU in `layers`, AvgPool2d(2), `fc`)

The final pooling is open_lth's AvgPool2d(2) / akamaster's avg_pool2d over
the whole map on 32x32 inputs, and global average pooling otherwise (on a
28x28 input VGG's last map is 1x1, where AvgPool2d(2) cannot run).

Used by tests/unit/test_models.c (run with /usr/bin/python3, Debian's
python3-torch 1.13):
  models_ref.py counts                  JSON {preset: {CxHxW: {"params": {name: numel}, "buffers": {...}}}}
  models_ref.py export NAME C H W SEED DIR
      random weights, non-trivial batch-norm statistics, eval mode:
      DIR/model.safetensors (state_dict, num_batches_tracked as I64),
      DIR/x.bin (float32 [4, C, H, W]), DIR/logits.bin (float32 [4, 10])
  models_ref.py check NAME C H W DIR
      loads DIR/raffle.safetensors (written by raffle) into the reference
      module (strict: only num_batches_tracked may be missing), runs
      DIR/x.bin in eval mode, writes DIR/logits_torch.bin
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Shortcut(nn.Module):
    """Option A: subsample by the stride, zero-pad the channels (no parameters)."""

    def __init__(self, stride, pad_front, pad_back):
        super().__init__()
        self.stride, self.front, self.back = stride, pad_front, pad_back

    def forward(self, x):
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.front, self.back), "constant", 0)


class BasicBlock(nn.Module):
    def __init__(self, cin, c, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != c:
            if option == "A":
                self.shortcut = Shortcut(stride, (c - cin) // 2, c - cin - (c - cin) // 2)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, c, kernel_size=1, stride=stride, bias=False),
                                              nn.BatchNorm2d(c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks, widths, option, in_c, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for s, (n, w) in enumerate(zip(blocks, widths)):
            layer = []
            for i in range(n):
                layer.append(BasicBlock(cin, w, 2 if s > 0 and i == 0 else 1, option))
                cin = w
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.n_stages = len(blocks)
        self.linear = nn.Linear(widths[-1], classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.n_stages):
            out = getattr(self, "layer%d" % (s + 1))(out)
        out = F.avg_pool2d(out, out.size()[3]) if out.size(2) == out.size(3) else F.adaptive_avg_pool2d(out, 1)
        return self.linear(out.view(out.size(0), -1))


class ConvModule(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.conv = nn.Conv2d(cin, c, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(nn.Module):
    def __init__(self, plan, in_c, classes=10):
        super().__init__()
        layers, f = [], in_c
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(ConvModule(f, spec))
                f = spec
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(x)
        x = nn.AvgPool2d(2)(x) if x.shape[-1] == 2 else F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


def build(name, in_c):
    if name in ("resnet-20", "resnet-32", "resnet-56"):
        n = {"resnet-20": 3, "resnet-32": 5, "resnet-56": 9}[name]
        return CifarResNet([n, n, n], [16, 32, 64], "A", in_c)
    if name == "resnet-18":
        return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], "B", in_c)
    if name.startswith("vgg-"):
        return CifarVGG(VGG_PLANS[int(name[4:])], in_c)
    raise SystemExit("models_ref.py: unknown model %s" % name)


PRESETS = ["resnet-20", "resnet-32", "resnet-56", "resnet-18", "vgg-11", "vgg-16", "vgg-19"]
SHAPES = [(3, 32, 32), (1, 28, 28)]


def counts():
    out = {}
    for name in PRESETS:
        out[name] = {}
        for c, h, w in SHAPES:
            m = build(name, c)
            m(torch.zeros(2, c, h, w))  # the forward runs at this size
            out[name]["%dx%dx%d" % (c, h, w)] = {
                "params": {k: p.numel() for k, p in m.named_parameters()},
                "buffers": {k: b.numel() for k, b in m.named_buffers() if not k.endswith("num_batches_tracked")},
            }
    print(json.dumps(out))


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy()
        dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header, data, out = json.loads(buf[8:8 + n]), buf[8 + n:], {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).copy())
    return out


def export(name, c, h, w, seed, d):
    torch.manual_seed(seed)
    m = build(name, c)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
                mod.running_mean.normal_(0.0, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(1000)
    m.eval()
    x = torch.randn(4, c, h, w)
    with torch.no_grad():
        y = m(x)
    write_safetensors(os.path.join(d, "model.safetensors"), m.state_dict())
    x.numpy().astype("<f4").tofile(os.path.join(d, "x.bin"))
    y.numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))


def check(name, c, h, w, d):
    m = build(name, c)
    res = m.load_state_dict(read_safetensors(os.path.join(d, "raffle.safetensors")), strict=False)
    bad = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")] + list(res.unexpected_keys)
    if bad:
        raise SystemExit("models_ref.py: state_dict mismatch: %s" % bad[:8])
    m.eval()
    x = torch.from_numpy(np.fromfile(os.path.join(d, "x.bin"), dtype="<f4").reshape(-1, c, h, w))
    with torch.no_grad():
        m(x).numpy().astype("<f4").tofile(os.path.join(d, "logits_torch.bin"))


def main():
    torch.set_num_threads(1)
    a = sys.argv[1:]
    if a == ["counts"]:
        counts()
    elif len(a) == 7 and a[0] == "export":
        export(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6])
    elif len(a) == 6 and a[0] == "check":
        check(a[1], int(a[2]), int(a[3]), int(a[4]), a[5])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
