#!/usr/bin/env bash
# Readable labels, raffle find, raffle status, the terminal progress line,
# --json errors and raffle report --compare, on a sweep of no-op and
# failing tasks (seconds, no data):
#  - in a pipe, the periodic progress lines as before, a failure named by
#    its label; on a terminal (script(1)), one line redrawn in place;
#  - raffle status names a running task by its label;
#  - raffle find: the matching task directories, --json, numbers as numbers,
#    a misspelt key refused with a did-you-mean (exit 2), no match exit 1;
#  - --json: a command that fails prints one {"ok": false, ...} object;
#  - --compare: one report over two stores, the sweep in every label.
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd jq script
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat > "$T/mix.json" <<'JOB'
{"name": "mix", "dataset": "synthetic", "model": "lenet-300-100",
 "limits": {"memory_mb": 512, "time_s": 2, "retries": 0},
 "experiments": [
   {"kind": "fail", "name": "bad", "mode": ["error", "hang"], "children": 1},
   {"kind": "noop", "name": "idle", "count": 3, "sleep_ms": [0, 5]}]}
JOB

# ---- a pipe: periodic lines; the failure by its label ------------------------
"$RAFFLE" sweep --store "$T/s" --status-every 0.2 "$T/mix.json" >"$T/out" 2>"$T/err" &
pid=$!
# raffle status while the hang task runs (it is killed at the 2 s limit)
seen=""
for _ in $(seq 1 40); do
  sleep 0.1
  st=$("$RAFFLE" status "$T/s/mix" 2>/dev/null) || continue
  case "$st" in *"running bad/fail-hang ["*) seen=1; break ;; esac
done
wait $pid; rc=$?
[ $rc -eq 1 ] || fail "sweep with failures exited $rc"
[ -n "$seen" ] || fail "raffle status never named the running task by its label: $st"
grep -q 'sweep mix: task bad/fail-error \[[0-9a-f]\{8\}\] error on rank 0' "$T/err" || { cat "$T/err"; fail "failure line without the label"; }
grep -q 'done (0 reused), .* running, .* failed' "$T/err" || fail "no periodic progress line in a pipe"
grep -q $'\r' "$T/err" && fail "carriage returns in a pipe"

# ---- a terminal: one line redrawn in place -------------------------------------
rm -rf "$T/s2"
TERM=xterm script -qfec "'$RAFFLE' sweep --store '$T/s2' --status-every 0.2 '$T/mix.json'" "$T/tty" >/dev/null 2>&1
grep -q $'\r\033\[Kmix \[[#-]*\] [0-9]*/10 done, [0-9]* running, [0-9]* failed' "$T/tty" || { cat -v "$T/tty"; fail "no in-place progress line on a terminal"; }
grep -q 'sweep mix: [0-9]*/10 done (0 reused)' "$T/tty" && fail "periodic lines on a terminal"
grep -q 'task bad/fail-error \[' "$T/tty" || fail "the failure line is missing on a terminal"

# ---- raffle find ----------------------------------------------------------------
out=$("$RAFFLE" find "$T/s/mix" experiment=idle sleep_ms=5.0) || fail "find exited $?"
[ "$(echo "$out" | wc -l)" -eq 3 ] || fail "find sleep_ms=5.0: expected 3 tasks, got: $out"
for d in $out; do [ -f "$d/metrics.json" ] || fail "find printed $d, which has no metrics.json"; done
j=$("$RAFFLE" find "$T/s/mix" method=fail-error --json) || fail "find --json exited $?"
echo "$j" | jq -e '.matched == 1 and .tasks[0].label == "bad/fail-error" and .tasks[0].status == "failed"' >/dev/null ||
  fail "find --json: $j"
"$RAFFLE" find "$T/s/mix" after=fail status=skipped | grep -q . || fail "find status=skipped found nothing"
"$RAFFLE" find "$T/s/mix" sleep_sm=5 2>"$T/e"; rc=$?
[ $rc -eq 2 ] && grep -q "did you mean 'sleep_ms'" "$T/e" || fail "a misspelt key: exit $rc, $(cat "$T/e")"
"$RAFFLE" find "$T/s/mix" sleep_ms=7 >/dev/null 2>&1; [ $? -eq 1 ] || fail "no match should exit 1"

# ---- --json errors -----------------------------------------------------------------
j=$("$RAFFLE" sweep --json "$T/none.json" 2>/dev/null); rc=$?
[ $rc -ne 0 ] || fail "sweep of a missing job exited 0"
[ "$(echo "$j" | wc -l)" -eq 1 ] && echo "$j" | jq -e '.ok == false and .command == "sweep" and (.error | test("none.json"))' >/dev/null ||
  fail "sweep --json error: $j"
j=$("$RAFFLE" status --json "$T/nowhere" 2>/dev/null)
echo "$j" | jq -e '.ok == false and .exit == 1' >/dev/null || fail "status --json error: $j"
j=$("$RAFFLE" sweep --json --store "$T/s3" "$T/mix.json" 2>/dev/null)
[ "$(echo "$j" | wc -l)" -eq 1 ] && echo "$j" | jq -e '.ok == false and .failed == 2 and .done == 6' >/dev/null ||
  fail "sweep --json with failed tasks: one result object expected: $j"

# ---- a comparison of two sweeps --------------------------------------------------------
"$RAFFLE" report --compare "$T/s/mix" "$T/s2/mix" --out "$T/cmp" >/dev/null || fail "report --compare exited $?"
jq -e '(.sweeps == ["s/mix", "s2/mix"]) and ([.tasks[] | select(.label | startswith("s2/mix: idle/noop/"))] | length == 6)' \
  "$T/cmp/report.json" >/dev/null || fail "comparison report: $(jq -c '.sweeps' "$T/cmp/report.json")"
grep -q "href='../s2/mix/tasks/" "$T/cmp/report.html" || fail "the comparison's links do not reach the second store"
head -1 "$T/cmp/report.csv" | grep -q '^id,sweep,' || fail "comparison CSV header"
"$RAFFLE" report --compare "$T/s/mix" >/dev/null 2>&1; [ $? -eq 2 ] || fail "--compare without --out should be a usage error"
echo "ok"
