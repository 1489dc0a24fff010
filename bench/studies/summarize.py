#!/usr/bin/env python3
"""Tables of issue 20's studies from their stores (docs/results.md, "Studies").

    bench/studies/summarize.py [--raffle BIN] [--store DIR] [--jobs DIR] [--write docs/results.md]

Reads each job's tasks from `raffle validate --list` (id -> settings: the
job decides what a task is) and the finished ones' STORE/NAME/tasks/ID/
metrics.json (the numbers). Every accuracy is labelled with its split:
selection (best epoch, early stopping) is on the validation split, the test
split is only reported. Partial stores give partial tables: n says how many
seeds a mean covers, and what is still missing is listed. With --write the
tables replace the studies section of that file (between its markers).
"""
import argparse, json, math, os, re, statistics, subprocess, sys

JOBS = ["dense-resnet20-vgg11", "lth-resnet20-rewind", "prune-at-init-resnet20-vgg11"]
BEGIN, END = "<!-- studies20:begin (bench/studies/summarize.py rewrites this section) -->", "<!-- studies20:end -->"


def tasks_of(raffle, job_path):
    out = subprocess.run([raffle, "validate", job_path, "--list"], capture_output=True, text=True, check=True).stdout
    tasks = []
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]{16}) (\S+)\s+parents \[([^\]]*)\] (\{.*\})$", line)
        if m:
            tasks.append({"id": m.group(1), "kind": m.group(2), "parents": m.group(3).split(), "settings": json.loads(m.group(4))})
    return tasks


def metrics(store, name, tid):
    p = os.path.join(store, name, "tasks", tid, "metrics.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def ms(xs, pct=True):
    xs = [x for x in xs if x is not None and x >= 0]
    if not xs:
        return "—"
    k = 100 if pct else 1
    if len(xs) == 1:
        return f"{k * xs[0]:.2f}" + ("%" if pct else "")
    return f"{k * statistics.mean(xs):.2f} ± {k * statistics.stdev(xs):.2f}" + ("%" if pct else "")


def dense(store, tasks, name):
    rows, missing = [], []
    models = []
    for t in tasks:
        if t["settings"]["model"] not in models:
            models.append(t["settings"]["model"])
    out = ["| model | seeds done | test accuracy (final model) | test accuracy at the best validation epoch | best validation accuracy | best epoch / epochs | recipe |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for mod in models:
        ts = [t for t in tasks if t["settings"]["model"] == mod]
        ms_ = [(t, metrics(store, name, t["id"])) for t in ts]
        done = [(t, m) for t, m in ms_ if m]
        missing += [f"{mod} seed {t['settings']['seed']}" for t, m in ms_ if not m]
        s = ts[0]["settings"]
        n_train = (45000 if s["data"].startswith("cifar") else 55000)   # the default validation split held out
        per_epoch = n_train // s["batch"]
        be = [m["best_iteration"] / per_epoch for _, m in done if m.get("best_iteration", -1) >= 0]
        recipe = (f"SGD lr {s['lr']}, momentum {s['momentum']}, wd {s['weight_decay']}, {s['schedule']}, "
                  f"{s['epochs']} epochs, batch {s['batch']}, {s['augment']}")
        out.append(f"| {mod} | {len(done)}/{len(ts)} | {ms([m['test_accuracy'] for _, m in done])} | "
                   f"{ms([m['test_accuracy_at_best_val'] for _, m in done])} | {ms([m['best_val_accuracy'] for _, m in done])} | "
                   f"{(statistics.mean(be) if be else float('nan')):.1f} / {s['epochs']} | {recipe} |")
    return out, missing


def lottery(store, tasks, name):
    lines = {}
    missing = []
    for t in tasks:
        s = t["settings"]
        line = "reinit control" if s["control"] == "reinit" else f"rewind to {'iteration 0' if s['rewind'] == 'init' else s['rewind'].replace('step:', 'step ')}"
        m = metrics(store, name, t["id"])
        if not m:
            missing.append(f"{line} round {s['round']} seed {s['seed']}")
            continue
        lines.setdefault(line, {}).setdefault(s["round"], []).append(m)
    if not lines:
        return ["(no task finished yet)"], missing
    out = ["| line | round | weights remaining | test at best val (early stop) | test final | best validation | best iteration | n |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for line in sorted(lines):
        for rnd in sorted(lines[line]):
            v = lines[line][rnd]
            bi = [m["best_iteration"] for m in v if m.get("best_iteration", -1) >= 0]
            out.append(f"| {line} | {rnd} | {100 * statistics.mean(m['remaining'] for m in v):.1f}% | "
                       f"{ms([m['test_accuracy_at_best_val'] for m in v])} | {ms([m['test_accuracy'] for m in v])} | "
                       f"{ms([m['best_val_accuracy'] for m in v])} | {statistics.mean(bi) if bi else float('nan'):.0f} | {len(v)} |")
    return out, missing


def prune_at_init(store, tasks, name):
    cells, missing = {}, []
    for t in tasks:
        s = t["settings"]
        x = round(-math.log10(1 - s["sparsity"]), 1)
        m = metrics(store, name, t["id"])
        if not m:
            missing.append(f"{s['model']} {s['method']} 10^{x} seed {s['seed']}")
            continue
        cells.setdefault((s["model"], s["method"]), {}).setdefault(x, []).append(m)
    if not cells:
        return ["(no task finished yet)"], missing
    xs = sorted({x for c in cells.values() for x in c})
    out = ["Test accuracy after the short training (mean over the seeds done); a † marks a collapsed layer at pruning "
           "(`collapsed_at_prune` non-empty); validation accuracy in brackets. Collapse point: the smallest compression "
           "with a collapsed layer or a test accuracy below 12% (chance is 10%).", "",
           "| model | method | " + " | ".join(f"10^{x:g}" for x in xs) + " | collapse point |",
           "| --- | --- | " + " | ".join("---" for _ in xs) + " | --- |"]
    for (mod, meth) in sorted(cells):
        c = cells[(mod, meth)]
        row, first = [], None
        for x in xs:
            v = c.get(x)
            if not v:
                row.append("")
                continue
            col = any(m.get("collapsed_at_prune") for m in v)
            chance = statistics.mean(m["test_accuracy"] for m in v) < 0.12
            if (col or chance) and first is None:
                first = x
            row.append(f"{ms([m['test_accuracy'] for m in v])}{' †' if col else ''} ({ms([m['val_accuracy'] for m in v])})")
        out.append(f"| {mod} | {meth} | " + " | ".join(row) + f" | {'10^%g' % first if first is not None else '> measured'} |")
    return out, missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raffle", default="build/raffle")
    ap.add_argument("--store", default="/work/studies")
    ap.add_argument("--jobs", default="jobs")
    ap.add_argument("--write")
    a = ap.parse_args()
    parts = [BEGIN, "## Studies of issue 20 (Fashion-MNIST; generated from the stores)", "",
             f"`bench/studies/summarize.py --store {a.store}`; selection on the validation split (5,000 training images "
             "held out, split seed 0 for every run), the test split only reported.", ""]
    for job, fn, title in [(JOBS[0], dense, "Dense training"), (JOBS[1], lottery, "Lottery tickets on ResNet-20"),
                           (JOBS[2], prune_at_init, "Pruning at initialisation")]:
        path = os.path.join(a.jobs, job + ".json")
        with open(path) as f:
            name = json.load(f).get("name", job)   # the store directory
        tasks = tasks_of(a.raffle, path)
        table, missing = fn(a.store, tasks, name)
        parts += [f"### {title} (`jobs/{job}.json`: {len(tasks) - len(missing)}/{len(tasks)} tasks done)", ""] + table + [""]
        if missing:
            parts += [f"Not done yet ({len(missing)}): " + ", ".join(missing[:12]) + (" …" if len(missing) > 12 else ""), ""]
    parts.append(END)
    text = "\n".join(parts) + "\n"
    if not a.write:
        sys.stdout.write(text)
        return
    with open(a.write) as f:
        doc = f.read()
    if BEGIN in doc:
        doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END) + 1:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(a.write, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
