#!/usr/bin/env python3
"""Deep Compression tables from a sweep of jobs/deep-compression.json.

    bench/lowbit/dc_table.py STORE/deep-compression OUT_DIR [RAFFLE]

Reads STORE/report.json and each task's metrics.json, follows every finished
quantize task to its prune parent (the last step of an iterative chain of
prune stages, `from` one another; or a gradual `gmp` stage) and on to the
dense train task, reads the per-tensor
sizes of its checkpoint with `RAFFLE inspect --json` (default build/raffle),
and writes to OUT_DIR:

  records.jsonl  one record per quantize task (experiment, dataset, seed,
                 dense / pruned / final test and validation accuracies,
                 per-layer kept fraction, bits and bytes, ratios)
  table.md       mean +- std over seeds per experiment and dataset; the
                 per-layer comparison with the paper's Tables 2 and 3; the
                 configurations selected on the validation split.

Selection never reads the test split: per model and dataset, among the
experiments whose mean ratio against raw fp32 reaches the paper's (40x,
39x), the one with the highest mean validation accuracy of the final
(shared) model (ties, equal to 1e-6: the higher ratio); again for issue 21's
goal of 50x; for issue 21's Fashion-MNIST target, among the dc-fmnist-90*
experiments and bit widths that reach 25x against raffle's dense
checkpoint, likewise. Experiments named *-confirm (a selected recipe rerun
on fresh seeds) are never candidates; their rows and a comparison with
the same recipe on the selection seeds are reported on their own.

Two dense references per record: its own dense parent ("loss") and the
better (on the test split, so the comparison is the conservative one) of
raffle's two dense recipes for that model, data set and seed, with and
without weight decay ("loss vs best dense"): a -wd experiment's own parent
is the weight-decay dense model, which errs more on Fashion-MNIST, and a
loss against it alone would flatter the compressed model."""
import json
import os
import statistics
import subprocess
import sys

# Han, Mao and Dally 2016 (ICLR), Table 1: top-1 error before / after, size, ratio.
PAPER = {
    "lenet-300-100": {"ref_err": 1.64, "err": 1.58, "kb_before": 1070, "kb_after": 27, "ratio": 40},
    "lenet-5-caffe": {"ref_err": 0.80, "err": 0.74, "kb_before": 1720, "kb_after": 44, "ratio": 39},
}
# Tables 2 and 3: per layer, weights kept (P), weight bits (P+Q), and the
# compressed size as a percentage of fp32 after P+Q+H (weights, indices,
# codebook).
PAPER_LAYERS = {
    "lenet-300-100": [("fc1.weight", "ip1", 0.08, 6, 2.32), ("fc2.weight", "ip2", 0.09, 6, 3.04),
                      ("fc3.weight", "ip3", 0.26, 6, 12.7)],
    "lenet-5-caffe": [("conv1.weight", "conv1", 0.66, 8, 67.45), ("conv2.weight", "conv2", 0.12, 8, 5.28),
                      ("fc1.weight", "ip1", 0.08, 5, 2.45), ("fc2.weight", "ip2", 0.19, 5, 6.13)],
}
# Issue 21: the 90%-sparse lenet-300-100 on Fashion-MNIST, >= 25x smaller
# than raffle's dense checkpoint at <= 0.5 point accuracy loss.
FMNIST_TARGET = {"experiment": "dc-fmnist-90", "ratio_dense_ckpt": 25.0, "max_loss_pt": 0.5}
# Issue 21's goal beyond the paper: 50x against raw fp32 at the same error.
GOAL_RATIO = 50


def is_confirm(e):
    """A selected recipe rerun on fresh seeds: reported, never a candidate."""
    return e.endswith("-confirm")


def is_fmnist_target(e):
    return e == FMNIST_TARGET["experiment"] or e.startswith(FMNIST_TARGET["experiment"] + "-")


def inspect(raffle, path):
    out = subprocess.run([raffle, "inspect", "--json", path], check=True, capture_output=True, text=True).stdout
    return {t["name"]: t for t in json.loads(out)["tensors"]}


def read_records(store, raffle):
    rep = json.load(open(os.path.join(store, "report.json")))
    tasks = {t["id"]: t for t in rep["tasks"]}

    def metrics(tid):
        return json.load(open(os.path.join(store, "tasks", tid, "metrics.json")))

    recs = []
    for t in rep["tasks"]:
        if t["kind"] != "quantize" or t["status"] != "done":
            continue
        # quantize -> prune (one step, or the last of an iterative chain of
        # prune stages with "from") -> ... -> dense train
        chain, x = [], tasks[t["parents"][0]]
        while x["kind"] in ("prune", "gmp"):
            chain.append(x)
            x = tasks[x["parents"][0]]
        if not chain or x["kind"] != "train":
            continue
        prune, dense = chain[0], x
        q, p, d = metrics(t["id"]), metrics(prune["id"]), metrics(dense["id"])
        tens = inspect(raffle, os.path.join(store, "tasks", t["id"], "model.rckpt"))
        layers = {}
        for name, bits in sorted((q.get("weight_bits") or {}).items()):
            ti = tens[name]
            numel = 1
            for x in ti["shape"]:
                numel *= x
            layers[name] = {"numel": numel, "kept": ti["nnz"] / numel, "bits": bits, "bytes": ti["bytes"],
                            "pct_of_fp32": 100.0 * ti["bytes"] / (4.0 * numel),
                            "bits_per_kept_weight": 8.0 * ti["bytes"] / max(ti["nnz"], 1)}
        recs.append({
            "experiment": t["experiment"], "dataset": t["dataset"], "model": t["model"], "seed": t["seed"],
            "task": t["id"], "layers": layers, "sparsity": q["sparsity"],
            "pruning": "gradual" if prune["kind"] == "gmp" else "%d step%s" % (len(chain), "s" if len(chain) > 1 else ""),
            "dense_accuracy": d["accuracy"], "dense_val_accuracy": d.get("val_accuracy"),
            "pruned_accuracy": p["accuracy"], "pruned_val_accuracy": p.get("val_accuracy"),
            "accuracy": q["accuracy"], "val_accuracy": q.get("val_accuracy"),
            "best_val_accuracy": q.get("best_val_accuracy"), "test_accuracy_at_best_val": q.get("test_accuracy_at_best_val"),
            "bytes": q["bytes"], "raw_fp32_bytes": q["raw_fp32_bytes"], "dense_ckpt_bytes": d["bytes"],
            "ratio_raw": q["raw_fp32_bytes"] / q["bytes"], "ratio_dense_ckpt": d["bytes"] / q["bytes"],
            "pruned_bytes": p["bytes"], "isa": (q.get("engine") or {}).get("isa"),
        })
    recs.sort(key=lambda r: (r["experiment"], r["dataset"], r["seed"]))
    best = {}   # (model, dataset, seed) -> the better dense test accuracy
    for r in recs:
        k = (r["model"], r["dataset"], r["seed"])
        best[k] = max(best.get(k, 0.0), r["dense_accuracy"])
    for r in recs:
        r["best_dense_accuracy"] = best[(r["model"], r["dataset"], r["seed"])]
    return recs


def ms(v, scale=1.0, fmt="%.2f"):
    v = [x * scale for x in v]
    if len(v) == 1:
        return fmt % v[0]
    return (fmt % statistics.mean(v)) + " ± " + (fmt % statistics.stdev(v))


def mean(rs, f):
    return statistics.mean(f(r) for r in rs)


def per_seed(rs):
    """Each seed's loss against its own dense parent and, in brackets, against the best dense model."""
    return ", ".join("s%d %.2f (%.2f)" % (r["seed"], 100 * (r["dense_accuracy"] - r["accuracy"]),
                                          100 * (r["best_dense_accuracy"] - r["accuracy"])) for r in sorted(rs, key=lambda r: r["seed"]))


def seed_table(groups):
    lines = ["| experiment | model | data | bits per layer | loss per seed, pt: own dense (best dense) | × raw fp32 per seed | "
             "× raffle dense ckpt per seed |", "|" + "---|" * 7]
    for (e, m, ds, bits), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            e, m, ds, "/".join(str(b) for b in bits), per_seed(rs), ", ".join("%.1f" % r["ratio_raw"] for r in rs),
            ", ".join("%.1f" % r["ratio_dense_ckpt"] for r in rs)))
    return lines


def summary_table(groups):
    lines = ["| experiment | model | data | seeds | pruning | kept per layer | bits per layer | dense error | pruned error | "
             "final error | loss (pt) | loss vs best dense (pt) | final val acc | bytes | × raw fp32 | × raffle dense ckpt |",
             "|" + "---|" * 16]
    for (e, m, ds, _), rs in sorted(groups.items()):
        lay = rs[0]["layers"]
        kept = "/".join("%.0f" % (100 * mean(rs, lambda r, n=n: r["layers"][n]["kept"])) for n in lay) + "%"
        bits = "/".join(str(lay[n]["bits"]) for n in lay)
        lines.append("| %s | %s | %s | %d | %s | %s | %s | %s%% | %s%% | %s%% | %s | %s | %s%% | %s | %s | %s |" % (
            e, m, ds, len(rs), rs[0]["pruning"], kept, bits,
            ms([1 - r["dense_accuracy"] for r in rs], 100), ms([1 - r["pruned_accuracy"] for r in rs], 100),
            ms([1 - r["accuracy"] for r in rs], 100), ms([r["dense_accuracy"] - r["accuracy"] for r in rs], 100),
            ms([r["best_dense_accuracy"] - r["accuracy"] for r in rs], 100),
            ms([r["val_accuracy"] for r in rs], 100), ms([r["bytes"] for r in rs], 1, "%.0f"),
            ms([r["ratio_raw"] for r in rs], 1, "%.1f"), ms([r["ratio_dense_ckpt"] for r in rs], 1, "%.1f")))
    return lines


def layer_table(groups):
    lines = ["| model (MNIST) | layer | weights | kept: paper / raffle | bits: paper / raffle | "
             "size % of fp32: paper (P+Q+H) / raffle | raffle bits per kept weight |", "|" + "---|" * 7]
    for model, rows in PAPER_LAYERS.items():
        exp = "dc-lenet300-paper" if model == "lenet-300-100" else "dc-lenet5-paper"
        rs = [r for (e, m, ds, _), g in groups.items() if (e, m, ds) == (exp, model, "mnist") for r in g]
        if not rs:
            continue
        for name, pname, pkept, pbits, ppct in rows:
            L = [r["layers"][name] for r in rs]
            lines.append("| %s | %s (%s) | %d | %.0f%% / %.1f%% | %d / %d | %.2f%% / %.2f%% | %.2f |" % (
                model, name, pname, L[0]["numel"], 100 * pkept, 100 * statistics.mean(x["kept"] for x in L), pbits,
                L[0]["bits"], ppct, statistics.mean(x["pct_of_fp32"] for x in L),
                statistics.mean(x["bits_per_kept_weight"] for x in L)))
    return lines


def selection_table(groups):
    lines = ["| model | data | target | candidates (mean val acc, × raw) | selected | final error | loss (pt) | "
             "loss vs best dense (pt) | loss per seed (vs best dense) | × raw fp32 | × raffle dense ckpt | paper |",
             "|" + "---|" * 12]
    by_md = {}
    for (e, m, ds, _), rs in groups.items():
        if not is_fmnist_target(e) and not is_confirm(e):
            by_md.setdefault((m, ds), []).append((e, rs))
    for (m, ds), all_cands in sorted(by_md.items()):
        p = PAPER[m]
        for target in (p["ratio"], GOAL_RATIO):
            # the paper's ratio: every experiment is a candidate; the goal: those that reach it
            cands = [(e, rs) for e, rs in all_cands if target == p["ratio"] or mean(rs, lambda r: r["ratio_raw"]) >= target]
            ok = [(e, rs) for e, rs in cands if mean(rs, lambda r: r["ratio_raw"]) >= target]
            cand_txt = ", ".join("%s (%.2f%%, %.1f×)" % (e, 100 * mean(rs, lambda r: r["val_accuracy"]),
                                                         mean(rs, lambda r: r["ratio_raw"])) for e, rs in sorted(cands))
            paper = "%.2f%% → %.2f%%, %d×" % (p["ref_err"], p["err"], p["ratio"])
            label = "≥ %d× raw%s" % (target, "" if target == p["ratio"] else " (goal)")
            if not ok:
                lines.append("| %s | %s | %s | %s | none reaches it | | | | | | | %s |" % (m, ds, label, cand_txt, paper))
                continue
            e, rs = max(ok, key=lambda x: (round(mean(x[1], lambda r: r["val_accuracy"]), 6), mean(x[1], lambda r: r["ratio_raw"])))
            lines.append("| %s | %s | %s | %s | %s | %s%% | %s | %s | %s | %s | %s | %s |" % (
                m, ds, label, cand_txt, e, ms([1 - r["accuracy"] for r in rs], 100),
                ms([r["dense_accuracy"] - r["accuracy"] for r in rs], 100),
                ms([r["best_dense_accuracy"] - r["accuracy"] for r in rs], 100), per_seed(rs),
                ms([r["ratio_raw"] for r in rs], 1, "%.1f"), ms([r["ratio_dense_ckpt"] for r in rs], 1, "%.1f"), paper))
    # issue 21's Fashion-MNIST target: one candidate per experiment and bit width
    cands = {}
    for (e, m, ds, _), rs in groups.items():
        if is_fmnist_target(e):
            for r in rs:
                cands.setdefault((e, max(l["bits"] for l in r["layers"].values())), []).append(r)
    if cands:
        ok = {k: rs for k, rs in cands.items() if mean(rs, lambda r: r["ratio_dense_ckpt"]) >= FMNIST_TARGET["ratio_dense_ckpt"]}
        cand_txt = ", ".join("%s %d bits (%.2f%%, %.1f×)" % (e, b, 100 * mean(rs, lambda r: r["val_accuracy"]),
                                                            mean(rs, lambda r: r["ratio_dense_ckpt"])) for (e, b), rs in sorted(cands.items()))
        target = "≥ %.0f× dense ckpt, loss ≤ %.1f pt" % (FMNIST_TARGET["ratio_dense_ckpt"], FMNIST_TARGET["max_loss_pt"])
        if ok:
            (e, b), rs = max(ok.items(), key=lambda x: mean(x[1], lambda r: r["val_accuracy"]))
            lines.append("| lenet-300-100 (90%% global) | fashion-mnist | %s | %s | %s, %d bits | %s%% | %s | %s | %s | %s | %s | issue 6: blocked at 8 bits |" % (
                target, cand_txt, e, b, ms([1 - r["accuracy"] for r in rs], 100), ms([r["dense_accuracy"] - r["accuracy"] for r in rs], 100),
                ms([r["best_dense_accuracy"] - r["accuracy"] for r in rs], 100), per_seed(rs),
                ms([r["ratio_raw"] for r in rs], 1, "%.1f"), ms([r["ratio_dense_ckpt"] for r in rs], 1, "%.1f")))
        else:
            lines.append("| lenet-300-100 (90%% global) | fashion-mnist | %s | %s | none reaches it | | | | | | | |" % (target, cand_txt))
    return lines


def confirm_table(groups):
    """Each *-confirm experiment (a recipe rerun on fresh seeds) beside the same recipe on the selection seeds."""
    lines = ["| recipe | data | seeds: selection → fresh | final error | loss vs best dense (pt) | loss per seed (vs best dense) | "
             "× raw fp32 |", "|" + "---|" * 7]
    for (e, m, ds, bits), rs in sorted(groups.items()):
        if not is_confirm(e):
            continue
        base = groups.get((e[:-len("-confirm")], m, ds, bits))
        for name, g in ((e[:-len("-confirm")], base), (e, rs)):
            if not g:
                continue
            lines.append("| %s | %s | %s | %s%% | %s | %s | %s |" % (
                name, ds, ",".join(str(r["seed"]) for r in sorted(g, key=lambda r: r["seed"])),
                ms([1 - r["accuracy"] for r in g], 100), ms([r["best_dense_accuracy"] - r["accuracy"] for r in g], 100),
                per_seed(g), ms([r["ratio_raw"] for r in g], 1, "%.1f")))
    return lines if len(lines) > 2 else []


def main():
    store, out = sys.argv[1], sys.argv[2]
    raffle = sys.argv[3] if len(sys.argv) > 3 else "build/raffle"
    recs = read_records(store, raffle)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "records.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    groups = {}
    for r in recs:   # one group per bit-width grid point too (dc-fmnist-90's bits [5, 4])
        groups.setdefault((r["experiment"], r["model"], r["dataset"], tuple(l["bits"] for l in r["layers"].values())), []).append(r)
    lines = summary_table(groups)
    lines += ["", "Per layer at the paper's settings (MNIST, mean over seeds) beside Han et al. 2016, Tables 2 and 3:", ""]
    lines += layer_table(groups)
    lines += ["", "Every seed (loss = dense − final test accuracy, points):", ""]
    lines += seed_table(groups)
    lines += ["", "Selected on the validation split (mean over seeds; the test split only reported):", ""]
    lines += selection_table(groups)
    conf = confirm_table(groups)
    if conf:
        lines += ["", "Recipes rerun on fresh seeds (new dense models too; never candidates above), beside the selection seeds:", ""]
        lines += conf
    lines += ["", "Paper (Han et al. 2016, Table 1; MNIST 60,000/10,000): " + "; ".join(
        "%s %.2f%% → %.2f%% error, %d KB → %d KB (%d×)" % (m, v["ref_err"], v["err"], v["kb_before"], v["kb_after"], v["ratio"])
        for m, v in PAPER.items())]
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
