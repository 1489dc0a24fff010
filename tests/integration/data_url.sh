#!/usr/bin/env bash
# Issue 19, "also in scope": datasets by URL with a pinned sha256. A local
# HTTP server (python3's, on the loopback) serves a .tar.gz of the four .npy
# arrays and a CIFAR archive; a job names them as {"url", "sha256"}: the
# sweep (under mpirun, 2 ranks sharing one download cache) fetches each once
# into $RAFFLE_CACHE/downloads, verifies it and every task reads it from
# there. A wrong digest is one line naming the URL, exit 1, before any store
# exists, and leaves nothing in the cache. The command line takes the same
# pinned form ("URL#sha256=HEX").
set -u
: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$(dirname "$0")/lib.sh"
need_cmd python3 jq mpirun
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d)
srv=""
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export RAFFLE_CACHE="$T/cache"
mkdir -p "$T/www"
python3 - "$T/www" <<'PY'
import hashlib, io, random, struct, sys, tarfile
root = sys.argv[1]
rng = random.Random(3)
def npy(dtype, shape, data):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (dtype, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + data
def split(n):
    y = [rng.randrange(10) for _ in range(n)]
    x = b"".join(struct.pack("<%df" % 64, *[(yi / 10.0) + rng.random() * 0.1 for _ in range(64)]) for yi in y)
    return npy("<f4", (n, 1, 8, 8), x), npy("<i4", (n,), struct.pack("<%di" % n, *y))
trx, tr_y = split(200)
tex, te_y = split(50)
with tarfile.open(root + "/d.tar.gz", "w:gz") as t:
    for name, data in (("train_x.npy", trx), ("train_y.npy", tr_y), ("test_x.npy", tex), ("test_y.npy", te_y)):
        info = tarfile.TarInfo("d/" + name); info.size = len(data); t.addfile(info, io.BytesIO(data))
for f in ("d.tar.gz",):
    open(root + "/" + f + ".sha256", "w").write(hashlib.sha256(open(root + "/" + f, "rb").read()).hexdigest())
PY
[ -f "$T/www/d.tar.gz" ] || fail "could not write the archive"
sha=$(cat "$T/www/d.tar.gz.sha256")
python3 - "$T/www" "$T/port" <<'PY' >/dev/null 2>"$T/srv.log" &
import functools, http.server, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(sys.argv[2] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[2] + ".tmp", sys.argv[2])
s.serve_forever()
PY
srv=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.05; done
port=$(cat "$T/port") || fail "the HTTP server did not start"
url="http://127.0.0.1:$port/d.tar.gz"
job() {   # job NAME SHA
  cat > "$T/$1.json" <<JOB
{"name": "$1", "dataset": {"url": "$url", "sha256": "$2"}, "model": "$T/m.json",
 "train": {"iterations": 4, "batch": 16, "eval_limit": 50},
 "experiments": [{"kind": "train", "seed": [0, 1]}, {"kind": "prune", "method": "magnitude", "sparsity": 0.5, "finetune": {"iterations": 2}}]}
JOB
}
printf '{"input":[1,8,8],"classes":10,"layers":[{"type":"flatten"},{"type":"linear","name":"fc1","out":16},{"type":"relu"},{"type":"linear","name":"fc2","out":10}]}' > "$T/m.json"
job ok "$sha"
"$RAFFLE" validate "$T/ok.json" >/dev/null 2>&1 || fail "validate: $("$RAFFLE" validate "$T/ok.json" 2>&1)"
out=$(timeout 300 mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/st" "$T/ok.json" 2>&1) || fail "sweep by URL: $out"
[ "$(jq '[.tasks[] | select(.status == "done")] | length' "$T/st/ok/report.json")" = 3 ] || fail "not every task done: $(cat "$T/st/ok/report.json" | head -c 600)"
ls "$T/cache/downloads" | grep -q -- "-d.tar.gz$" || fail "the archive is not in the download cache: $(ls -la "$T/cache/downloads")"
[ "$(ls "$T/cache/downloads" | wc -l)" = 1 ] || fail "the cache holds more than the archive: $(ls "$T/cache/downloads")"
# once per node: two ranks, three tasks, one download
gets=$(grep -c 'GET /d.tar.gz' "$T/srv.log")
[ "$gets" = 1 ] || fail "the archive was downloaded $gets times, expected once: $(cat "$T/srv.log")"
# a wrong digest: one line naming the URL, exit 1, no store, nothing cached
bad=$(printf '%064d' 0)
job bad "$bad"
rm -rf "$T/cache"
out=$(timeout 120 "$RAFFLE" sweep --quiet --store "$T/st" "$T/bad.json" 2>&1); rc=$?
[ $rc = 1 ] || fail "a wrong digest: exit $rc: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "a wrong digest: expected one line: $out"
echo "$out" | grep -q "$url: sha256 is $sha, expected $bad" || fail "the message does not name the URL and both digests: $out"
[ ! -e "$T/st/bad" ] || fail "a store was created for a job whose dataset did not verify"
[ -z "$(ls -A "$T/cache/downloads" 2>/dev/null)" ] || fail "a file that did not verify was left in the cache: $(ls -la "$T/cache/downloads")"
out=$(timeout 120 mpirun -np 2 "$RAFFLE" sweep --quiet --store "$T/st" "$T/bad.json" 2>&1); rc=$?
[ $rc != 0 ] || fail "a wrong digest under mpirun exited 0"
echo "$out" | grep -q "sha256 is $sha, expected $bad" || fail "mpirun: the message does not name the digests: $out"
[ ! -e "$T/st/bad" ] && [ -z "$(ls -A "$T/cache/downloads" 2>/dev/null)" ] || fail "mpirun: something was left behind"
# the command line: the pinned form, fetched before the task runs
out=$(timeout 120 "$RAFFLE" train -d "$url#sha256=$sha" -m "$T/m.json" --iterations 2 --batch 16 --out "$T/o" --json 2>/dev/null) || fail "train by URL failed"
echo "$out" | jq -e '.accuracy >= 0' >/dev/null || fail "train by URL: no accuracy: $out"
# a teacher by URL: the checkpoint just trained, served and pinned
cp "$T/o/model.rckpt" "$T/www/teacher.rckpt"
tsha=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$T/www/teacher.rckpt")
cat > "$T/kd.json" <<JOB
{"name": "kd", "dataset": {"url": "$url", "sha256": "$sha"}, "model": "$T/m.json",
 "train": {"iterations": 3, "batch": 16, "eval_limit": 50},
 "experiments": [{"kind": "distill", "baseline": false,
                  "teacher": {"url": "http://127.0.0.1:$port/teacher.rckpt", "sha256": "$tsha"}}]}
JOB
out=$(timeout 300 "$RAFFLE" sweep --quiet --store "$T/st" "$T/kd.json" 2>&1) || fail "distill from a teacher by URL: $out"
jq -e '[.tasks[] | select(.kind == "distill" and .status == "done")] | length == 1' "$T/st/kd/report.json" >/dev/null ||
  fail "the distill task did not finish: $(head -c 800 "$T/st/kd/report.json")"
[ "$(jq '.tasks | length' "$T/st/kd/report.json")" = 1 ] || fail "a teacher by URL was trained as a task"
ls "$T/cache/downloads" | grep -q -- "-teacher.rckpt$" || fail "the teacher is not in the download cache"
# an unpinned URL is refused at validate time
out=$("$RAFFLE" train -d "$url" -m "$T/m.json" --iterations 2 --out "$T/o2" 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'needs its digest pinned' || fail "an unpinned URL: exit $rc: $out"
echo "ok: a dataset by URL is fetched once into the cache, verified and shared; a wrong digest is refused and leaves nothing"
