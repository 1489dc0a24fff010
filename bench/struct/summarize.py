#!/usr/bin/env python3
"""The structured-pruning study tables of docs/results.md ("Structured
pruning"), from the stores of jobs/struct-resnet20.json and
jobs/struct-lenet300.json (stdlib only):
    bench/struct/summarize.py STORE/struct-resnet20 [STORE/struct-lenet300 ...]
(`raffle report STORE/NAME` first if the sweep has not ended.) Accuracies: the saved (final) model on the test split, its validation
accuracy, and the test accuracy at the best validation evaluation (selection
on the validation split; the test split is never maximised). Latency: the
task's own measurement (batch 1, dense sgemm before and after slicing for a
structured method; the deployed form otherwise), one run on a shared machine,
so bench/struct/run.sh has the side-by-side numbers."""
import json
import os
import sys


def pct(v):
    return "—" if v is None or v < 0 else "%.2f%%" % (100 * v)


def table(sweep):
    job = json.load(open(os.path.join(sweep, "job.json")))
    # settings from report.json (written at the end of a sweep, or by `raffle report STORE/NAME`)
    report = json.load(open(os.path.join(sweep, "report.json")))
    rows = []
    for t in report["tasks"]:
        mp = os.path.join(sweep, "tasks", t["id"], "metrics.json")
        if t.get("status") == "done" and os.path.exists(mp):
            rows.append((t["kind"], t["settings"], json.load(open(mp))))
    rows.sort(key=lambda r: (r[0] != "train", r[1].get("method", ""), r[1].get("nm", "")))
    dense = next((m for k, _, m in rows if k == "train"), None)
    out = ["### %s (`jobs/%s.json`: %d of %d tasks done)" % (job["name"], job["name"], len(rows), 1 + sum(
        1 for e in job["experiments"] if e["kind"] != "train")), ""]
    out.append("| model | method | parameters | nonzero weights | MACs | test acc. (final) | val. acc. (final) "
               "| test acc. at best val. | Δ test vs dense | dense ms b=1 (before → after) | deployed ms b=1 |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, st, m in rows:
        tm = m.get("timing", {})
        if kind == "train":
            method = "dense (%s epochs)" % st.get("epochs")
        else:
            method = st.get("method", "?")
            if st.get("nm"):
                method += " %s" % st["nm"]
            method += " (s=%g, %s; %s fine-tune steps)" % (st.get("sparsity", 0), st.get("scope", "?"), m.get("finetune_steps"))
        flops = m.get("flops")
        fb = m.get("flops_before")
        fl = "%.2fM" % (flops / 1e6) if flops else "—"
        if fb:
            fl += " (%.1f%%)" % (100.0 * flops / fb)
        delta = "—" if dense is None or kind == "train" else "%+.2f" % (100 * (m["test_accuracy"] - dense["test_accuracy"]))
        before, after = tm.get("dense_latency_before_ms"), tm.get("dense_latency_sliced_ms")
        dl = "%.3f → %.3f" % (before, after) if before else "%.3f" % tm.get("dense_latency_ms", float("nan"))
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.3f (%s) |" % (
            st.get("model"), method, m.get("parameters"), m.get("nonzero_parameters"), fl, pct(m.get("test_accuracy")),
            pct(m.get("val_accuracy")), pct(m.get("test_accuracy_at_best_val")), delta, dl, tm.get("latency_ms", float("nan")),
            tm.get("deployed_form", "?")))
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: summarize.py STORE/NAME ...")
    print("\n\n".join(table(s) for s in sys.argv[1:]))
