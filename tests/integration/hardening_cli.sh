#!/usr/bin/env bash
# Hostile inputs through the real binary (issue 9): nothing crashes, every
# refusal exits 1 with a message, nothing is written outside where asked.
#  - a checkpoint, an IDX and a .npy that declare more than RAFFLE_MEM_CAP;
#  - job names and task ids that try to leave the store or the fetch dir;
#  - URL schemes other than http/https/file, and file URLs outside the roots;
#  - truncated and garbage inputs to inspect / validate.
# Runs with RAFFLE=build-asan/raffle too (make asan-integration).
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# expect_fail CODE PATTERN CMD...: exit CODE and PATTERN in the output, no sanitizer report
expect_fail() {
  local code=$1 pat=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  [ "$rc" = "$code" ] || fail "$* exited $rc, expected $code: $out"
  echo "$out" | grep -qiE "$pat" || fail "$*: message lacks /$pat/: $out"
  echo "$out" | grep -qE 'Sanitizer|runtime error' && fail "$*: sanitizer report: $out"
  return 0
}

# ---- memory cap ---------------------------------------------------------------
cat > "$T/tiny.json" <<'SPEC'
{"input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},{"type":"linear","name":"fc","out":10}]}
SPEC
"$RAFFLE" train --model "$T/tiny.json" --data synthetic:64 --iterations 1 --batch 16 --out "$T/m" >/dev/null 2>&1 \
  || fail "could not train the tiny model"
mv "$T/m/model.rckpt" "$T/m.rckpt"
"$RAFFLE" inspect "$T/m.rckpt" >/dev/null || fail "inspect of a good checkpoint failed"
RAFFLE_MEM_CAP=16K expect_fail 1 'memory cap' "$RAFFLE" inspect "$T/m.rckpt"
RAFFLE_MEM_CAP=garbage "$RAFFLE" inspect "$T/m.rckpt" >/dev/null || fail "an unparseable RAFFLE_MEM_CAP must keep the default"
# a .npy declaring 10^12 floats in 128 bytes, and one of 4 MiB under a 1 MiB cap
python3 - "$T" <<'PY'
import struct, sys
d = sys.argv[1]
def npy(shape, nbytes):
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + bytes(nbytes)
open(d + '/huge_x.npy', 'wb').write(npy('(1000000, 1000, 1000)', 64))
open(d + '/big_x.npy', 'wb').write(npy('(1024, 1, 32, 32)', 4 << 20))
open(d + '/y.npy', 'wb').write(npy('(1024,)', 4096).replace(b'<f4', b'<i4'))
# IDX: 60000 x 28 x 28 u8 declared, 16 bytes present
open(d + '/huge.idx', 'wb').write(b'\x00\x00\x08\x03' + struct.pack('>III', 60000, 28, 28) + bytes(16))
PY
expect_fail 1 'truncat|size|limit' "$RAFFLE" data info "$T/huge_x.npy,$T/y.npy,$T/huge_x.npy,$T/y.npy"
RAFFLE_MEM_CAP=1M expect_fail 1 'memory cap' "$RAFFLE" data info "$T/big_x.npy,$T/y.npy,$T/big_x.npy,$T/y.npy"

# ---- garbage and truncation ---------------------------------------------------
head -c 100 "$T/m.rckpt" > "$T/trunc.rckpt"
expect_fail 1 'truncat' "$RAFFLE" inspect "$T/trunc.rckpt"
head -c 4096 /dev/urandom > "$T/noise.rckpt"
expect_fail 1 'magic' "$RAFFLE" inspect "$T/noise.rckpt"
printf '{"name": "x", "dataset": "synthetic", "model": "lenet-300-100", "experiments": [' > "$T/cut.json"
expect_fail 1 'json|pars' "$RAFFLE" validate "$T/cut.json"
printf '\xff\xfe\x00garbage' > "$T/bin.json"
expect_fail 1 '.' "$RAFFLE" validate "$T/bin.json"

# ---- names that try to leave the store ----------------------------------------
for name in '../escape' '/tmp/abs' '.hidden' 'a/b' '..'; do
  printf '{"name": "%s", "dataset": "synthetic", "model": "lenet-300-100", "experiments": [{"kind": "noop"}]}' "$name" > "$T/n.json"
  expect_fail 1 'name' "$RAFFLE" sweep --store "$T/store" "$T/n.json"
done
[ ! -e "$T/escape" ] && [ ! -e /tmp/abs ] || fail "a job name escaped the store"

# ---- URL policy ------------------------------------------------------------------
mkdir -p "$T/remote" "$T/dl"
expect_fail 1 'scheme|url|allowed' "$RAFFLE" fetch "ftp://example.com/store/x/" -o "$T/dl"
expect_fail 1 'scheme|url|allowed' "$RAFFLE" fetch "gopher://example.com/x/" -o "$T/dl"
RAFFLE_FILE_ROOTS="$T/remote" expect_fail 1 'root|allowed|outside' "$RAFFLE" fetch "file:///etc/" -o "$T/dl"

# ---- a hostile report index: task ids that are paths --------------------------
printf '{"tasks":[{"id":"../../../../../%s/pwned","status":"done"}]}' "${T#/}" > "$T/remote/report.json"
echo x > "$T/remote/report.csv"; echo x > "$T/remote/report.html"
RAFFLE_FILE_ROOTS="$T/remote" expect_fail 1 'task id' "$RAFFLE" fetch "file://$T/remote/" -o "$T/dl" --checkpoints
[ ! -e "$T/pwned" ] || fail "fetch wrote outside its directory"
echo "hardening_cli: all refusals clean"
