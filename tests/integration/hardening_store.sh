#!/usr/bin/env bash
# Store safety on resume (issue 9): a checkpoint corrupted in the store (one
# flipped byte) or truncated is detected when the sweep is run again and its
# task is redone; the ledger stays parseable line by line; nothing else is
# redone.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cat > "$T/job.json" <<'JOB'
{"name": "harden", "dataset": "synthetic:200", "model": "lenet-300-100",
 "train": {"iterations": 3, "batch": 32, "eval_limit": 50},
 "limits": {"memory_mb": 4096, "time_s": 120, "retries": 0},
 "experiments": [{"kind": "prune", "name": "p", "method": "magnitude", "sparsity": [0.5, 0.8]}]}
JOB
"$RAFFLE" sweep --quiet --no-report --store "$T/s" "$T/job.json" >"$T/run1.log" 2>&1 || { cat "$T/run1.log"; fail "first sweep failed"; }
S="$T/s/harden"
jq -c . "$S/ledger.jsonl" >/dev/null || fail "ledger not parseable after run 1"
mapfile -t ckpts < <(find "$S/tasks" -name model.rckpt | sort)
[ "${#ckpts[@]}" -ge 3 ] || fail "expected 3 checkpoints, found ${#ckpts[@]}"
done1=$(grep -c '"event":"done"' "$S/ledger.jsonl")
# corrupt one checkpoint (a flipped byte in the middle) and truncate another
victim=${ckpts[1]}; victim2=${ckpts[2]}
id=$(basename "$(dirname "$victim")"); id2=$(basename "$(dirname "$victim2")")
size=$(stat -c %s "$victim")
printf '\xff' | dd of="$victim" bs=1 seek=$((size / 2)) conv=notrunc status=none
truncate -s $((size / 3)) "$victim2"
"$RAFFLE" inspect "$victim" >/dev/null 2>&1 && fail "inspect accepted the corrupted checkpoint"
"$RAFFLE" sweep --quiet --no-report --store "$T/s" "$T/job.json" >"$T/run2.log" 2>&1 || { cat "$T/run2.log"; fail "resumed sweep failed"; }
jq -c . "$S/ledger.jsonl" >/dev/null || fail "ledger not parseable after run 2"
errs=""
"$RAFFLE" inspect "$victim" >/dev/null 2>&1 || errs="$errs; the corrupted (one flipped byte) checkpoint of $id was reused, not redone"
"$RAFFLE" inspect "$victim2" >/dev/null 2>&1 || errs="$errs; the truncated checkpoint of $id2 was reused, not redone"
done2=$(grep -c '"event":"done"' "$S/ledger.jsonl")
new=$((done2 - done1))
redone=$(grep '"event":"done"' "$S/ledger.jsonl" | tail -n +$((done1 + 1)) | jq -r .task | sort -u | tr '\n' ' ')
# only the two damaged tasks run again: their parent and sibling are intact
[ "$new" -le 2 ] || errs="$errs; $new tasks redone after damaging 2: $redone"
[ -z "$errs" ] || fail "${errs#; } (redone: ${redone:-none})"
echo "hardening_store: corrupted and truncated checkpoints detected and redone ($redone)"
