"""One-thread PyTorch ResNet-20 training step at batch 128 (CIFAR variant,
option A shortcuts: strided identity zero-padded in channels, He et al. 2016,
Sec. 4.2): the reference a data-pipeline cost is compared with. Prints JSON
with CPU seconds per step (process CPU time, as augment_bench.c measures).

    /usr/bin/python3 bench/data/resnet20_step.py [STEPS]
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin if stride != 1 or cin != cout else 0

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        out = self.b2(self.c2(out))
        sc = x
        if self.pad:
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(out + sc)


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = ResNet20()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    for _ in range(2):  # warm-up
        opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    c1, w1 = time.process_time(), time.perf_counter()
    params = sum(p.numel() for p in m.parameters())
    print(json.dumps({"torch": torch.__version__, "parameters": params, "steps": steps,
                      "cpu_s_per_step": (c1 - c0) / steps, "wall_s_per_step": (w1 - w0) / steps}))


if __name__ == "__main__":
    main()
