"""PyTorch reference for tests/unit/test_bn.c (run with /usr/bin/python3,
Debian's python3-torch 1.13): one nn.BatchNorm2d (momentum 0.1, eps 1e-5),
optionally followed by a ReLU, in training mode then eval mode.

  bn_ref.py DIR N C H W RELU
reads DIR/in.bin: float32 x [N,C,H,W], dy [N,C,H,W], weight [C], bias [C],
running_mean [C], running_var [C]; writes DIR/out.bin: float32 y (train,
batch statistics) [N,C,H,W], dx [N,C,H,W], dweight [C], dbias [C], the
updated running_mean [C] and running_var [C] (unbiased variance), then y of
x in eval mode (running statistics) [N,C,H,W].
"""
import sys

import numpy as np
import torch

d, n, c, h, w, relu = sys.argv[1], *map(int, sys.argv[2:7])
v = np.fromfile(d + "/in.bin", dtype=np.float32)
k = n * c * h * w
x = torch.tensor(v[:k].reshape(n, c, h, w), requires_grad=True)
dy = torch.tensor(v[k:2 * k].reshape(n, c, h, w))
o = 2 * k
bn = torch.nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
with torch.no_grad():
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(torch.tensor(v[o:o + c]))
        o += c
bn.train()
y = bn(x)
if relu:
    y = torch.relu(y)
y.backward(dy)
bn.eval()
with torch.no_grad():
    ye = bn(x)
    if relu:
        ye = torch.relu(ye)
out = [y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var, ye]
np.concatenate([t.detach().numpy().ravel() for t in out]).astype(np.float32).tofile(d + "/out.bin")
