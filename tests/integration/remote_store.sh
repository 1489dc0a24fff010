#!/usr/bin/env bash
# Remote results store against a real nginx WebDAV server on 127.0.0.1:
# the client's PUT/MKCOL/GET/MOVE and the spooling mirror (unit test run
# against the live server), then `raffle fetch` of a published report.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
if ! scripts/install-deps.sh --with-nginx >/dev/null 2>&1; then
  echo "SKIP: nginx-light could not be installed"; exit 77
fi
work=$(mktemp -d)
port=$(( 21000 + RANDOM % 20000 ))
cleanup() { scripts/webdav-local.sh stop "$work/dav" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
scripts/webdav-local.sh start "$work/dav" "$port" || { echo "FAIL: nginx did not start"; exit 1; }
base="http://127.0.0.1:$port"

# 1. WebDAV client and mirror, through the unit test's live-server case.
test_bin=${BUILD:-build}/tests/test_net
if [ -x "$test_bin" ]; then
  RAFFLE_TEST_DAV_URL="$base/unit-dav/" "$test_bin" --filter 'net/dav*' || { echo "FAIL: dav unit test"; exit 1; }
fi

# 2. raffle fetch retrieves exactly what was published.
mkdir -p "$work/rep"
printf '{"tasks":[{"id":"abc","status":"done"}]}\n' > "$work/rep/report.json"
printf 'id,status\nabc,done\n' > "$work/rep/report.csv"
printf '<!doctype html><title>r</title>\n' > "$work/rep/report.html"
head -c 5000 /dev/urandom > "$work/ckpt.bin"
for f in report.json report.csv report.html; do
  curl -sf -T "$work/rep/$f" "$base/store/demo/$f" || { echo "FAIL: upload $f"; exit 1; }
done
curl -sf -T "$work/ckpt.bin" "$base/store/demo/tasks/abc/model.rckpt" || exit 1
"$RAFFLE" fetch "$base/store/demo/" -o "$work/got" --checkpoints || { echo "FAIL: fetch"; exit 1; }
for f in report.json report.csv report.html; do
  cmp "$work/rep/$f" "$work/got/$f" || { echo "FAIL: $f differs"; exit 1; }
done
cmp "$work/ckpt.bin" "$work/got/tasks/abc/model.rckpt" || { echo "FAIL: checkpoint differs"; exit 1; }
# a missing report is a clear error, not a partial success
if "$RAFFLE" fetch "$base/store/none/" -o "$work/none" 2>"$work/err"; then echo "FAIL: fetch of a missing store succeeded"; exit 1; fi
grep -q "404" "$work/err" || { echo "FAIL: no 404 in: $(cat "$work/err")"; exit 1; }
# disallowed schemes are refused
if "$RAFFLE" fetch "ftp://127.0.0.1/x/" -o "$work/none" 2>/dev/null; then echo "FAIL: ftp accepted"; exit 1; fi
echo "remote store: ok"
