#!/usr/bin/env python3
"""Summarises bench/distill/run.sh: mean, std and test errors per arm."""
import json, os, statistics, sys

out, seeds = sys.argv[1], sys.argv[2:]
def load(p):
    with open(p) as f:
        return json.loads(f.read().strip().splitlines()[-1])
teacher = load(f"{out}/teacher.json")
rows = {}
for arm in ("alone", "distilled"):
    accs = [load(f"{out}/{arm}_{s}.json")["accuracy"] for s in seeds]
    rows[arm] = {"accuracy": accs, "mean": statistics.mean(accs),
                 "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
n_test = int(os.environ.get("N_TEST", "2000"))   # mnist: 2,000 test samples; fashion-mnist: 10,000
summary = {"teacher_accuracy": teacher["accuracy"], "seeds": seeds, "arms": rows,
           "test_errors": {k: [round((1 - a) * n_test) for a in v["accuracy"]] for k, v in rows.items()}}
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary))
