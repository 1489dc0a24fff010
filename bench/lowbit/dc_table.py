#!/usr/bin/env python3
"""Deep Compression table from a finished sweep of jobs/deep-compression.json.

    bench/lowbit/dc_table.py results/deep-compression OUT_DIR

Reads STORE/report.json and each task's metrics.json, follows every quantize
task to its prune and dense train parents, and writes OUT_DIR/records.jsonl
(one record per quantize task: experiment, dataset, seed, the three
accuracies, bytes, ratios) and OUT_DIR/table.md (mean +- std over seeds per
experiment and dataset, beside the paper's numbers)."""
import json
import os
import statistics
import sys

# Han, Mao and Dally 2016, Table 1 (top-1 error before/after, size, ratio).
PAPER = {
    "lenet-300-100": {"ref_err": 1.64, "err": 1.58, "kb_before": 1070, "kb_after": 27, "ratio": 40},
    "lenet-5-caffe": {"ref_err": 0.80, "err": 0.74, "kb_before": 1720, "kb_after": 44, "ratio": 39},
}


def main():
    store, out = sys.argv[1], sys.argv[2]
    rep = json.load(open(os.path.join(store, "report.json")))
    tasks = {t["id"]: t for t in rep["tasks"]}

    def metrics(tid):
        return json.load(open(os.path.join(store, "tasks", tid, "metrics.json")))

    recs = []
    for t in rep["tasks"]:
        if t["kind"] != "quantize" or t["status"] != "done":
            continue
        prune = tasks[t["parents"][0]]
        dense = tasks[prune["parents"][0]]
        q, p, d = metrics(t["id"]), metrics(prune["id"]), metrics(dense["id"])
        recs.append({
            "experiment": t["experiment"], "dataset": t["dataset"], "model": t["model"], "seed": t["seed"],
            "weight_bits": q.get("weight_bits"), "sparsity": q["sparsity"],
            "dense_accuracy": d["accuracy"], "pruned_accuracy": p["accuracy"], "accuracy": q["accuracy"],
            "shared_before_finetune_accuracy": q.get("fp32_accuracy"),
            "bytes": q["bytes"], "raw_fp32_bytes": q["raw_fp32_bytes"], "dense_ckpt_bytes": d["bytes"],
            "ratio_raw": q["raw_fp32_bytes"] / q["bytes"], "ratio_dense_ckpt": d["bytes"] / q["bytes"],
            "pruned_bytes": p["bytes"],
        })
    recs.sort(key=lambda r: (r["experiment"], r["dataset"], r["seed"]))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "records.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r, sort_keys=True) + "\n")

    def ms(v, scale=1.0, fmt="%.2f"):
        v = [x * scale for x in v]
        if len(v) == 1:
            return fmt % v[0]
        return (fmt % statistics.mean(v)) + " ± " + (fmt % statistics.stdev(v))

    groups = {}
    for r in recs:
        groups.setdefault((r["experiment"], r["model"], r["dataset"]), []).append(r)
    lines = ["| experiment | model | data | seeds | dense error | pruned error | final error | final − dense | "
             "bytes | × raw fp32 | × raffle dense ckpt |", "|" + "---|" * 11]
    for (e, m, ds), rs in sorted(groups.items()):
        lines.append("| %s | %s | %s | %d | %s%% | %s%% | %s%% | %s | %s | %s | %s |" % (
            e, m, ds, len(rs), ms([1 - r["dense_accuracy"] for r in rs], 100), ms([1 - r["pruned_accuracy"] for r in rs], 100),
            ms([1 - r["accuracy"] for r in rs], 100), ms([r["dense_accuracy"] - r["accuracy"] for r in rs], 100),
            ms([r["bytes"] for r in rs], 1, "%.0f"), ms([r["ratio_raw"] for r in rs], 1, "%.1f"),
            ms([r["ratio_dense_ckpt"] for r in rs], 1, "%.1f")))
    lines.append("")
    lines.append("Paper (Han et al. 2016, Table 1; MNIST 60,000/10,000): " + "; ".join(
        "%s %.2f%% → %.2f%% error, %d KB → %d KB (%d×)" % (m, v["ref_err"], v["err"], v["kb_before"], v["kb_after"], v["ratio"])
        for m, v in PAPER.items()))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
