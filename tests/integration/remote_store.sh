#!/usr/bin/env bash
# Remote results store against a real nginx WebDAV server on 127.0.0.1:
# the client's PUT/MKCOL/GET/MOVE and the spooling mirror (unit test run
# against the live server), `raffle fetch` of a published report, then a
# sweep with --store http://... whose server is stopped mid-sweep and
# restarted: the remote copy ends identical to the local store (less the
# local-only .spool and .lock), and
# `raffle fetch` retrieves the same report and checkpoints.
set -u
. "$(dirname "$0")/lib.sh"
need_cmd nginx curl
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
work=$(mktemp -d)
port=$(( 21000 + RANDOM % 20000 ))
cleanup() { scripts/webdav-local.sh stop "$work/dav" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
# a private copy: the tree may be rebuilt while the test runs
cp "$RAFFLE" "$work/raffle" && RAFFLE="$work/raffle"
scripts/webdav-local.sh start "$work/dav" "$port" || { echo "FAIL: nginx did not start"; exit 1; }
base="http://127.0.0.1:$port"

# 1. WebDAV client and mirror, through the unit test's live-server case.
test_bin=${BUILD:-build}/tests/test_net
if [ -x "$test_bin" ]; then
  RAFFLE_TEST_DAV_URL="$base/unit-dav/" "$test_bin" --filter 'net/dav*' || { echo "FAIL: dav unit test"; exit 1; }
fi

# 2. raffle fetch retrieves exactly what was published.
mkdir -p "$work/rep"
# task ids are 16 hex digits (fetch refuses anything else: it becomes a path)
tid=0123456789abcdef
printf '{"tasks":[{"id":"%s","status":"done"}]}\n' "$tid" > "$work/rep/report.json"
printf 'id,status\n%s,done\n' "$tid" > "$work/rep/report.csv"
printf '<!doctype html><title>r</title>\n' > "$work/rep/report.html"
head -c 5000 /dev/urandom > "$work/ckpt.bin"
for f in report.json report.csv report.html; do
  curl -sf -T "$work/rep/$f" "$base/store/demo/$f" || { echo "FAIL: upload $f"; exit 1; }
done
curl -sf -T "$work/ckpt.bin" "$base/store/demo/tasks/$tid/model.rckpt" || exit 1
"$RAFFLE" fetch "$base/store/demo/" -o "$work/got" --checkpoints || { echo "FAIL: fetch"; exit 1; }
for f in report.json report.csv report.html; do
  cmp "$work/rep/$f" "$work/got/$f" || { echo "FAIL: $f differs"; exit 1; }
done
cmp "$work/ckpt.bin" "$work/got/tasks/$tid/model.rckpt" || { echo "FAIL: checkpoint differs"; exit 1; }
# a missing report is a clear error, not a partial success
if "$RAFFLE" fetch "$base/store/none/" -o "$work/none" 2>"$work/err"; then echo "FAIL: fetch of a missing store succeeded"; exit 1; fi
grep -q "404" "$work/err" || { echo "FAIL: no 404 in: $(cat "$work/err")"; exit 1; }
# disallowed schemes are refused
if "$RAFFLE" fetch "ftp://127.0.0.1/x/" -o "$work/none" 2>/dev/null; then echo "FAIL: ftp accepted"; exit 1; fi

# 3. a sweep mirrored to the server, which is stopped mid-sweep and restarted
cat > "$work/mid.json" <<'JOB'
{"name": "mid", "dataset": "synthetic:600", "model": "lenet-300-100",
 "train": {"iterations": 300, "batch": 32, "eval_limit": 100},
 "limits": {"memory_mb": 1024, "time_s": 60, "retries": 1},
 "experiments": [
   {"kind": "train", "seed": [0, 1]},
   {"kind": "prune", "method": "magnitude", "sparsity": [0.5, 0.9], "seed": [0, 1], "finetune": {"iterations": 30}}]}
JOB
remote="$base/store/"
"$RAFFLE" sweep --store "$remote" --store-local "$work/loc" --status-every 0.5 "$work/mid.json" 2>"$work/sweep.log" &
sp=$!
for _ in $(seq 1 100); do grep -qs '"event":"done"' "$work/loc/mid/ledger.jsonl" && break; sleep 0.1; done
scripts/webdav-local.sh stop "$work/dav"
sleep 2
scripts/webdav-local.sh start "$work/dav" "$port" || { echo "FAIL: nginx did not restart"; exit 1; }
wait $sp || { cat "$work/sweep.log"; echo "FAIL: sweep with a remote store"; exit 1; }
grep -q "unreachable" "$work/sweep.log" || { cat "$work/sweep.log"; echo "FAIL: the outage was not noticed"; exit 1; }
grep -q "up to date" "$work/sweep.log" || { cat "$work/sweep.log"; echo "FAIL: the remote store was not brought up to date"; exit 1; }
# everything the sweep wrote is on the server, byte for byte
diff -r -x .spool -x .lock "$work/loc/mid" "$work/dav/www/store/mid" || { echo "FAIL: remote store differs from the local one"; exit 1; }
"$RAFFLE" fetch "$remote/mid/" -o "$work/got2" --checkpoints 2>/dev/null || { echo "FAIL: fetch of the swept store"; exit 1; }
for f in report.json report.csv report.html; do
  cmp "$work/loc/mid/$f" "$work/got2/$f" || { echo "FAIL: fetched $f differs"; exit 1; }
done
n=0
for d in "$work"/loc/mid/tasks/*/; do
  id=$(basename "$d")
  cmp "$d/model.rckpt" "$work/got2/tasks/$id/model.rckpt" || { echo "FAIL: fetched checkpoint $id differs"; exit 1; }
  n=$((n + 1))
done
echo "sweep mirrored through an outage: report and $n checkpoints fetched identical"
# a server that stays down: the final flush gives up after --mirror-wait and
# says so; the next run uploads the spool
scripts/webdav-local.sh stop "$work/dav"
rm "$work/loc/mid/report.html"
"$RAFFLE" sweep --store "$remote" --store-local "$work/loc" --mirror-wait 1 "$work/mid.json" 2>"$work/down.log" \
  || { cat "$work/down.log"; echo "FAIL: sweep with the server down"; exit 1; }
grep -q "left in .*spool/queue" "$work/down.log" || { cat "$work/down.log"; echo "FAIL: no spool message"; exit 1; }
[ -s "$work/loc/mid/.spool/queue" ] || { echo "FAIL: nothing spooled"; exit 1; }
scripts/webdav-local.sh start "$work/dav" "$port" || { echo "FAIL: nginx did not restart"; exit 1; }
"$RAFFLE" sweep --quiet --store "$remote" --store-local "$work/loc" "$work/mid.json" || { echo "FAIL: rerun"; exit 1; }
[ -s "$work/loc/mid/.spool/queue" ] && { echo "FAIL: spool not drained: $(cat "$work/loc/mid/.spool/queue")"; exit 1; }
diff -r -x .spool -x .lock "$work/loc/mid" "$work/dav/www/store/mid" || { echo "FAIL: remote store differs after the spool was drained"; exit 1; }
echo "remote store: ok"
