#!/usr/bin/env python3
"""Mean ± std (sample std, n-1) over seeds of the JSON records the pruning
bench scripts collect. Reads one JSON object per line on stdin, each
{"group": ..., "seed": ..., <numeric fields>...}; prints a markdown table
with one row per group, columns in first-seen order."""
import json
import statistics
import sys

rows, order, fields = {}, [], []
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    rec = json.loads(line)
    g = rec.pop("group")
    rec.pop("seed", None)
    if g not in rows:
        rows[g] = []
        order.append(g)
    rows[g].append(rec)
    for k, v in rec.items():
        if isinstance(v, (int, float)) and k not in fields:
            fields.append(k)


def cell(vals):
    if not vals:
        return ""
    m = statistics.mean(vals)
    if len(vals) == 1:
        return f"{m:.4f} (n=1)"
    return f"{m:.4f} ± {statistics.stdev(vals):.4f} (n={len(vals)})"


print("| run | " + " | ".join(fields) + " |")
print("|---|" + "---|" * len(fields))
for g in order:
    cells = [cell([r[f] for r in rows[g] if isinstance(r.get(f), (int, float))]) for f in fields]
    print(f"| {g} | " + " | ".join(cells) + " |")
