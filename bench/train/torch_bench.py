"""Times PyTorch training steps of a raffle preset (built from its spec by
torch_models.py) on one thread, batch B, Adam: the same work `raffle train
--iterations N` does per step (forward, cross-entropy, backward, optimizer).

Inputs are random tensors of the dataset's shape: the speed of these models
does not depend on the pixel values. Prints one JSON object.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

import torch_models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True, help="JSON spec file (probe spec NAME)")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.spec) as f:
        spec = json.load(f)
    model = torch_models.build(spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shape = spec["input"]
    k = spec.get("classes", 10)
    n_batches = 16
    xs = [torch.randn(a.batch, *shape) for _ in range(n_batches)]
    ys = [torch.randint(0, k, (a.batch,)) for _ in range(n_batches)]
    model.train()

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs[i % n_batches]), ys[i % n_batches])
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)
    t, c = time.perf_counter(), time.process_time()
    for i in range(a.iterations):
        step(i)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({
        "torch_version": torch.__version__,
        "parameters": torch_models.n_params(model),
        "train_flops_per_sample": torch_models.train_flops_per_sample(model, shape),
        "iterations": a.iterations,
        "batch": a.batch,
        "seconds": dt,
        "samples_per_s": a.iterations * a.batch / dt,
        "cpu_seconds": dc,
        "cpu_samples_per_s": a.iterations * a.batch / dc,
    }))


if __name__ == "__main__":
    sys.exit(main())
