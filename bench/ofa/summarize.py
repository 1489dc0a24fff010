#!/usr/bin/env python3
"""Summarises `raffle ofa --json` runs: OUT/<model>.json and OUT/<model>/teacher/model.rckpt
for each model -> OUT/summary.json (printed too). Usage: summarize.py OUT MODEL [MODEL ...]"""
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
res = {}
for m in models:
    with open(f"{out}/{m}.json") as f:
        j = json.loads(f.read().strip().splitlines()[-1])
    st = {s["stage"]: s for s in j["stages"]}
    dense = os.path.getsize(f"{out}/{m}/teacher/model.rckpt")
    r = {"upstream_teacher": st["teacher"]["accuracy"], "sparse": st["sparse"]["accuracy"],
         "sparse_sparsity": st["sparse"]["sparsity"], "dense_fp32_bytes": dense, "downstream": {}}
    for name, s in st.items():
        if not name.endswith("/qat"):
            continue
        d = name[: -len("/qat")]
        t = st[d + "/teacher"]["accuracy"]
        r["downstream"][d] = {"teacher": t, "transfer": st[d + "/transfer"]["accuracy"], "int8": s["accuracy"],
                              "delta_points": 100 * (s["accuracy"] - t), "sparsity": s["sparsity"],
                              "bytes": s["bytes"], "ratio_vs_dense_fp32": dense / s["bytes"]}
    res[m] = r
with open(f"{out}/summary.json", "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
