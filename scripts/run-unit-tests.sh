#!/usr/bin/env bash
# Runs each Criterion test binary given; prints a line per binary, every
# skipped test with its reason, and the totals as
#   unit: P passed, F failed, S skipped        (tests, not binaries)
# A binary that fails or crashes counts as one failure even when it reports
# no test. With RAFFLE_SUMMARY=FILE, appends the totals and skips there for
# scripts/run-all-tests.sh. Exit status: scripts/test-counts.sh.
#
# The WebDAV client's live-server case (test_net's net/dav*) needs a server:
# when test_net is among the binaries and nginx is installed, a local nginx
# WebDAV server (scripts/webdav-local.sh) runs for the duration, so that
# case runs here instead of skipping.
set -u
. "$(dirname "$0")/test-counts.sh"
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
dav=""
cleanup() { [ -n "$dav" ] && "$here/scripts/webdav-local.sh" stop "$tmp/dav" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
for t in "$@"; do
  case "$t" in */test_net) ;; *) continue ;; esac
  [ -z "${RAFFLE_TEST_DAV_URL:-}" ] && command -v nginx >/dev/null 2>&1 || break
  port=$(( 21000 + RANDOM % 20000 ))
  if "$here/scripts/webdav-local.sh" start "$tmp/dav" "$port" >/dev/null 2>&1; then
    dav=1; export RAFFLE_TEST_DAV_URL="http://127.0.0.1:$port/unit-dav/"
  fi
done

pass=0; fail=0; skip=0; skips=()
for t in "$@"; do
  name=$(basename "$t")
  if [ ! -x "$t" ]; then
    fail=$((fail + 1)); echo "FAILED: $t: not built"; continue
  fi
  tap="$tmp/$name.tap"
  rm -f "$tap"
  out=$("$t" --jobs 2 --tap="$tap" 2>&1); rc=$?
  p=$(grep -c '^ok ' "$tap" 2>/dev/null); s=$(grep -c '^ok .* # SKIP' "$tap" 2>/dev/null)
  f=$(grep -c '^not ok ' "$tap" 2>/dev/null)
  p=$((${p:-0} - ${s:-0})); s=${s:-0}; f=${f:-0}
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1   # crashed, or failed outside a test
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
  while IFS= read -r l; do
    skips+=("unit $name ${l#ok - }")
  done < <(grep '^ok .* # SKIP' "$tap" 2>/dev/null | sed 's/  *# SKIP /: /')
  if [ "$rc" -eq 0 ]; then
    echo "$name: $p passed, $s skipped"
  else
    echo "$out" | tail -n 40
    echo "FAILED: $t (exit $rc)"
  fi
done
finish unit "$pass" "$fail" "$skip" "${skips[@]}"
