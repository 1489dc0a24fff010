#!/usr/bin/env python3
"""Condenses lottery records (lottery.sh's records.jsonl, any number of files
or seeds) into one row per round: remaining weights, then final accuracy
(mean ± std over seeds) and mean best_iteration of the ticket and of each
control. Usage: lottery_table.py records.jsonl [more.jsonl ...]"""
import json
import re
import statistics
import sys

runs = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            m = re.match(r"round (\d+) (\w+)", r["group"])
            runs.setdefault((int(m.group(1)), m.group(2)), []).append(r)


def ms(vals):
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"


kinds = ["ticket", "reinit", "random"]
seeds = max(len(v) for v in runs.values())
dense = {x["seed"]: x for x in runs.get((0, "ticket"), [])}


def delta(v, key):
    """ticket minus the dense round 0 of the same seed, in points, mean ± std"""
    d = [100 * (x[key] - dense[x["seed"]][key]) for x in v if x["seed"] in dense]
    if not d:
        return ""
    return f"{d[0]:+.2f}" if len(d) == 1 else f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f}"


print(f"Final = test accuracy after the last iteration; best = the test accuracy at the iteration of the best validation accuracy (early stopping on validation); "
      f"Δ = ticket minus the dense net of the same seed, in points. n = {seeds} seeds.")
print()
print("| round | remaining | ticket final | ticket best | Δ final | Δ best | reinit final | reinit best | random final | random best "
      "| ticket best iter | reinit best iter |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for rnd in sorted({k[0] for k in runs}):
    t = runs[(rnd, "ticket")]
    row = [str(rnd), f"{t[0]['remaining'] * 100:.1f}%", ms([x["accuracy"] for x in t]), ms([x["best_accuracy"] for x in t]),
           delta(t, "accuracy"), delta(t, "best_accuracy")]
    for k in kinds[1:]:
        v = runs.get((rnd, k))
        row += [ms([x["accuracy"] for x in v]), ms([x["best_accuracy"] for x in v])] if v else ["", ""]
    for k in kinds[:2]:
        v = runs.get((rnd, k))
        row.append(f"{statistics.mean(x['best_iteration'] for x in v):.0f}" if v else "")
    print("| " + " | ".join(row) + " |")
