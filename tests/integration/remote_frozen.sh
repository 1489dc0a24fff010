#!/usr/bin/env bash
# Issue 19, defect 15: a frozen WebDAV server (nginx SIGSTOPped: the kernel
# still accepts connections, nobody answers) never holds up a sweep. Under
# mpirun -np 2 the sweep runs at its own pace, waits only --mirror-wait at
# the end and leaves the files spooled, as when the server is down (before:
# each upload blocked dispatch for up to 60 s). Once the server is thawed the
# next run uploads the spool and the remote copy equals the local store.
set -u
. "$(dirname "$0")/lib.sh"
need_cmd nginx curl mpirun pgrep
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
: "${RAFFLE:?set RAFFLE to the raffle binary}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
work=$(mktemp -d /tmp/raffle-frozen.XXXXXX)
port=$(( 21000 + RANDOM % 20000 ))
nginx_pids() { local m; m=$(cat "$work/dav/nginx.pid" 2>/dev/null) && echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
cleanup() {
  # shellcheck disable=SC2046
  kill -CONT $(nginx_pids) 2>/dev/null
  scripts/webdav-local.sh stop "$work/dav" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
cp "$RAFFLE" "$work/raffle" && RAFFLE="$work/raffle"
t_start=$(date +%s)
fail() { echo "FAIL: $*"; exit 1; }
scripts/webdav-local.sh start "$work/dav" "$port" || fail "nginx did not start"
cat > "$work/fz.json" <<'JOB'
{"name": "fz", "dataset": "synthetic", "model": "lenet-300-100",
 "experiments": [{"kind": "noop", "count": 6, "sleep_ms": 300}]}
JOB
# shellcheck disable=SC2046
kill -STOP $(nginx_pids) || fail "cannot stop nginx"
s0=$(date +%s)
timeout 120 mpirun -np 2 "$RAFFLE" sweep --store "http://127.0.0.1:$port/store/" --store-local "$work/loc" \
  --mirror-wait 3 "$work/fz.json" >"$work/a.log" 2>&1; rc=$?
dur=$(( $(date +%s) - s0 ))
[ $rc -eq 124 ] && fail "the sweep was still running after 120 s against a frozen server"
[ $rc -eq 0 ] || fail "the sweep exited $rc: $(tail -n 5 "$work/a.log")"
[ $dur -le 40 ] || fail "the sweep took $dur s against a frozen server (3 s of tasks, --mirror-wait 3)"
grep -q "still unreachable after 3 s: [0-9]* file(s) left" "$work/a.log" || fail "no spool message: $(tail -n 3 "$work/a.log")"
[ -s "$work/loc/fz/.spool/queue" ] || fail "nothing spooled"
n=$(wc -l < "$work/loc/fz/.spool/queue")
echo "frozen server: sweep done in $dur s, $n file(s) spooled"
# shellcheck disable=SC2046
kill -CONT $(nginx_pids)
mpirun -np 2 "$RAFFLE" sweep --store "http://127.0.0.1:$port/store/" --store-local "$work/loc" \
  "$work/fz.json" >"$work/b.log" 2>&1 || fail "rerun: $(tail -n 5 "$work/b.log")"
[ -s "$work/loc/fz/.spool/queue" ] && fail "spool not drained: $(head -n 3 "$work/loc/fz/.spool/queue")"
if ! diff -r -x .spool -x .lock "$work/loc/fz" "$work/dav/www/store/fz" >"$work/diff" 2>&1; then
  head -n 20 "$work/diff"; tail -n 5 "$work/b.log"; fail "remote store differs from the local one"
fi
echo "remote_frozen: ok: thawed, the spool uploaded, remote = local ($(( $(date +%s) - t_start )) s)"
