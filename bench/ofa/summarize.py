#!/usr/bin/env python3
"""Summarises `raffle ofa --json` runs: OUT/<model>.json (every task of the
experiment with its directory) for each model -> OUT/summary.json (printed
too). Usage: summarize.py OUT MODEL [MODEL ...]"""
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
res = {}
for m in models:
    with open(f"{out}/{m}.json") as f:
        j = json.loads(f.read().strip().splitlines()[-1])
    tasks = []
    for t in j["tasks"]:
        with open(os.path.join(t["dir"], "task.json")) as f:
            t["settings"] = json.load(f)["settings"]
        tasks.append(t)
    def one(kind, data=None, parent_init=False):
        for t in tasks:
            s = t["settings"]
            if t["kind"] == kind and (data is None or s["data"] == data) and (s.get("init") == "parent") == parent_init:
                return t
        raise SystemExit(f"{m}: no {kind} task for {data}")
    up = one("train")
    sparse = one("ofa-sparse")
    dense = os.path.getsize(os.path.join(up["dir"], "model.rckpt"))
    r = {"upstream_teacher": up["accuracy"], "sparse": sparse["accuracy"], "sparse_sparsity": sparse["sparsity"],
         "dense_fp32_bytes": dense, "downstream": {}}
    for q in (t for t in tasks if t["kind"] == "ofa-qat"):
        d = q["settings"]["data"]
        t = one("train", d, True)["accuracy"]
        r["downstream"][d] = {"teacher": t, "transfer": one("ofa-transfer", d)["accuracy"], "int8": q["accuracy"],
                              "delta_points": 100 * (q["accuracy"] - t), "sparsity": q["sparsity"],
                              "bytes": q["bytes"], "ratio_vs_dense_fp32": dense / q["bytes"]}
    res[m] = r
with open(f"{out}/summary.json", "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
