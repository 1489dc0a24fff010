#!/usr/bin/env bash
# Pipelines in one job (issue 23), run by the real binary under mpirun with
# 3 ranks, on synthetic data (about a minute on 2 cores):
#  - dense -> prune -> int8 of every pruned model ("from", default "all"),
#    and a "best" stage (fine-tuning the validation winner of each sparsity)
#    with a stage from it, which the sweep expands in a second round once
#    the pruned models have ended: rank 0 reads the store, the other ranks
#    get the facts and expand the same DAG;
#  - each best row's parent is the validation winner of its group (from the
#    report's rows), int8 rows' compression_ratio is raw_fp32_bytes / bytes
#    with the dense model's raw size, and above its float parent's;
#  - a rerun reuses every task (resume across the chain); the same job run
#    in-process expands to the same ids;
#  - raffle validate refuses QAT of an int8 stage with the JSON path;
#  - the report passes the headless-Chromium screenshot check.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd mpirun jq chromium
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cat > "$T/pipe.json" <<'JOB'
{"name": "pipe", "dataset": "synthetic:800:7", "model": "lenet-300-100", "validation": 200,
 "train": {"iterations": 30, "batch": 32, "eval_limit": 200},
 "limits": {"memory_mb": 2048, "time_s": 120, "retries": 0},
 "experiments": [
   {"kind": "train", "name": "dense", "seed": [0, 1, 2]},
   {"kind": "prune", "name": "prune", "from": "dense", "method": "magnitude", "sparsity": [0.5, 0.9],
    "finetune": {"iterations": 20}},
   {"kind": "quantize", "name": "int8", "from": "prune"},
   {"kind": "train", "name": "best", "from": "prune", "best": {"by": "val_accuracy", "per": ["sparsity"]},
    "train": {"iterations": 10}},
   {"kind": "quantize", "name": "int8-best", "from": "best", "calib": "percentile"}]}
JOB

"$RAFFLE" validate "$T/pipe.json" >"$T/v" || fail "validate: $(cat "$T/v")"
grep -q "2 pipeline stage(s) expand when the models they select among have finished" "$T/v" || { cat "$T/v"; fail "deferred stages not reported"; }

timeout 300 mpirun -np 3 --oversubscribe "$RAFFLE" sweep --store "$T/s" "$T/pipe.json" >"$T/out" 2>"$T/err" || { tail "$T/err"; fail "sweep failed"; }
grep -q "pipeline: 4 more task(s) selected from finished results" "$T/err" || { cat "$T/err"; fail "no second round"; }
R="$T/s/pipe/report.json"
[ "$(jq '[.tasks[] | select(.status == "done")] | length' "$R")" = 19 ] || fail "expected 19 done tasks: $(jq -c .summary "$R")"

# the best stage: its parent is the validation winner of its sparsity (first on ties)
for sp in 0.5 0.9; do
  want=$(jq -r --argjson sp "$sp" '[.tasks[] | select(.experiment == "prune" and .target_sparsity == $sp)]
           | (map(.val_accuracy) | max) as $m | map(select(.val_accuracy == $m)) | .[0].id' "$R")
  got=$(jq -r --argjson sp "$sp" --arg w "$want" '[.tasks[] | select(.experiment == "best")
           | select(.parents[0] as $p | $p == $w)] | length' "$R")
  [ "$got" = 1 ] || fail "sparsity $sp: the best stage did not start from the validation winner $want"
done
[ "$(jq '[.tasks[] | select(.experiment == "best")] | length' "$R")" = 2 ] || fail "one best per sparsity"

# ratios: raw fp32 bytes of the dense model over the file, every int8 row above its float parent
raw=$(jq '[.tasks[] | select(.experiment == "dense")][0].parameters * 4' "$R")
for id in $(jq -r '.tasks[] | select(.kind == "quantize") | .id' "$R"); do
  m="$T/s/pipe/tasks/$id/metrics.json"
  jq -e --argjson raw "$raw" '.raw_fp32_bytes == $raw' "$m" >/dev/null || fail "$id: raw_fp32_bytes $(jq .raw_fp32_bytes "$m") != $raw"
  jq -e '(.compression_ratio - .raw_fp32_bytes / .bytes) | fabs < 1e-9' "$m" >/dev/null || fail "$id: ratio is not raw / bytes"
  par=$(jq -r --arg id "$id" '.tasks[] | select(.id == $id) | .parents[0]' "$R")
  jq -e --slurpfile p "$T/s/pipe/tasks/$par/metrics.json" '.compression_ratio > $p[0].compression_ratio' "$m" >/dev/null ||
    fail "$id: int8 ratio not above its float parent's"
done
jq -e '[.tasks[] | select(.experiment == "int8" and .sparsity > 0.85)] | all(.compression_ratio > 15)' "$R" >/dev/null ||
  fail "int8 of 90%-pruned: ratio not above 15: $(jq -c '[.tasks[] | select(.experiment == "int8") | .compression_ratio]' "$R")"

# resume across the chain: nothing runs again
timeout 300 mpirun -np 3 --oversubscribe "$RAFFLE" sweep --json --store "$T/s" "$T/pipe.json" >"$T/again" 2>/dev/null || fail "rerun failed"
jq -e '.done == 19 and .reused == 19' "$T/again" >/dev/null || fail "rerun ran tasks again: $(cat "$T/again")"

# the same job in-process: the same ids
"$RAFFLE" sweep --quiet --store "$T/i" "$T/pipe.json" 2>/dev/null || fail "in-process sweep failed"
diff <(jq -r '.tasks[].id' "$R" | sort) <(jq -r '.tasks[].id' "$T/i/pipe/report.json" | sort) >/dev/null ||
  fail "in-process and mpirun expanded different DAGs"

# an impossible chain, refused before any work, with its JSON path
jq '.experiments += [{"kind": "quantize", "from": "int8", "mode": "qat"}]' "$T/pipe.json" >"$T/bad.json"
if "$RAFFLE" validate "$T/bad.json" 2>"$T/berr"; then fail "QAT of an int8 stage accepted"; fi
grep -q "experiments\[5\]: from: its models are int8 (quantize tasks): QAT on an already int8 model is refused" "$T/berr" ||
  fail "refusal without the path: $(cat "$T/berr")"

# the committed pipeline jobs expand (a fresh machine has Fashion-MNIST: install-deps' build group)
here=$(cd "$(dirname "$0")/../.." && pwd)
for j in study-lenet5 pipelines-lenet300; do
  "$RAFFLE" validate "$here/jobs/$j.json" >"$T/vj" || fail "jobs/$j.json: $(cat "$T/vj")"
done

# the report as a person sees it
"$(dirname "$0")/../../scripts/screenshot-report.sh" "$T/s/pipe" "$T/png" >"$T/shot" 2>&1 || { cat "$T/shot"; fail "screenshot check"; }
echo "ok: pipelines (mpirun rounds, best, ratios, resume, refusal, screenshot)"
