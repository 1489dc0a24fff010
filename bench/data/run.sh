#!/usr/bin/env bash
# Data-pipeline benchmark: CIFAR parsing speed and the cost of drawing a
# 128-sample 32x32x3 batch with crop+flip augmentation, next to a ResNet-20
# training step (a lower bound at the measured FP32 peak, and PyTorch 1.13's
# measured one-thread step), in one run. Writes bench/results/data.json.
#
#   bench/data/run.sh            (2,000 records per CIFAR file, 2,000 batches)
#   bench/data/run.sh --quick    (500 records per file, 200 batches, 2 PyTorch steps)
set -euo pipefail
cd "$(dirname "$0")/../.."
PER_FILE=2000; BATCHES=2000; STEPS=8
if [ "${1:-}" = "--quick" ]; then PER_FILE=500; BATCHES=200; STEPS=2; fi
PY=/usr/bin/python3
OUT=${OUT:-bench/results/data.json}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
c=$(bench/cbench.sh bench/data/augment_bench.c "$PER_FILE" "$BATCHES")
if "$PY" -c 'import torch' 2>/dev/null; then
  t=$("$PY" bench/data/resnet20_step.py "$STEPS")
else
  echo "bench/data: no PyTorch for $PY (apt-get install python3-torch); PyTorch step not measured" >&2
  t=null
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
fam=$(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
"$PY" - "$c" "$t" "$cpu" "$fam" "$OUT" <<'PYEOF'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
res = {"cpu": sys.argv[3], "cpu_family": int(sys.argv[4]), "raffle": c, "torch_resnet20": t}
if t:
    res["augment_share_of_torch_step"] = (c["augment_ms"] - c["copy_ms"]) / (1e3 * t["cpu_s_per_step"])
open(sys.argv[5], "w").write(json.dumps(res, indent=1) + "\n")
print(f"CPU: {res['cpu']} (family {res['cpu_family']})")
print(f"CIFAR parse: {c['load_us_per_record']:.2f} us/record (incl. split and normalisation)")
print(f"batch of 128 x 3x32x32: copy {c['copy_ms']:.3f} ms, crop+flip {c['augment_ms']:.3f} ms "
      f"(per-pixel _ref {c['augment_ref_ms']:.3f} ms)")
print(f"ResNet-20 step: >= {c['resnet20_step_at_peak_ms']:.1f} ms at the {c['fp32_peak_gflops']:.0f} GFLOP/s peak; "
      f"augmentation <= {100 * c['augment_share_of_step_at_peak']:.3f}% of that")
if t:
    print(f"PyTorch {t['torch']} ResNet-20 ({t['parameters']} params) one thread: {1e3 * t['cpu_s_per_step']:.0f} ms CPU/step; "
          f"augmentation = {100 * res['augment_share_of_torch_step']:.3f}% of it")
PYEOF
