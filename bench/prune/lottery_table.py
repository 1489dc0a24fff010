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
print(f"| round | remaining | ticket acc | reinit acc | random acc | ticket best iter | reinit best iter | random best iter |  (n = {seeds} seeds)")
print("|---|---|---|---|---|---|---|---|")
for rnd in sorted({k[0] for k in runs}):
    row = [str(rnd), f"{runs[(rnd, 'ticket')][0]['remaining'] * 100:.1f}%"]
    for k in kinds:
        v = runs.get((rnd, k))
        row.append(ms([x["accuracy"] for x in v]) if v else "")
    for k in kinds:
        v = runs.get((rnd, k))
        row.append(f"{statistics.mean(x['best_iteration'] for x in v):.0f}" if v else "")
    print("| " + " | ".join(row) + " |")
