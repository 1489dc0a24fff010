#!/usr/bin/env bash
# Renders a report.html in headless Chromium and checks it as a person would
# see it: two PNGs (the top of the page at 1400x1600, and the whole page at
# 1400xHEIGHT) to look at, and checks on the page as the browser built it:
# the inline script ran (the task table's counter reads "N of N tasks"),
# every plot drew an <svg>, and nothing on the page reaches the network.
#
# Usage: scripts/screenshot-report.sh DIR [OUT_DIR]
#   DIR holds report.html (a store STORE/NAME, or a --compare --out DIR);
#   PNGs go to OUT_DIR (default DIR): report-top.png, report-full.png.
#   HEIGHT (default 6000) is the full page's height in pixels.
# Chromium is Debian's `chromium` (scripts/install-deps.sh --with-chromium),
# run with a fresh profile and no background networking.
set -eu
dir=${1:?usage: scripts/screenshot-report.sh DIR [OUT_DIR]}
out=${2:-$dir}
html=$(realpath "$dir/report.html" 2>/dev/null || true)
[ -n "$html" ] && [ -f "$html" ] || { echo "screenshot-report: $dir/report.html not found (raffle report $dir)" >&2; exit 1; }
if ! command -v chromium >/dev/null 2>&1; then
  echo "screenshot-report: chromium missing: installing it (scripts/install-deps.sh --with-chromium)" >&2
  "$(dirname "$0")/install-deps.sh" --with-chromium
fi
mkdir -p "$out"
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
chrome() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" "$@" 2>/dev/null
}
fail() { echo "screenshot-report: $*" >&2; exit 1; }

# nothing on the page may load from the network (the SVG namespace is a name, not a fetch)
if grep -o -E "(src|href)=['\"]?https?://[^'\" >]*" "$html" | head -1 | grep -q .; then
  fail "report.html loads from the network: $(grep -o -E "(src|href)=['\"]?https?://[^'\" >]*" "$html" | head -1)"
fi

# the page after its script ran
dom=$(chrome --dump-dom "file://$html") || fail "chromium could not load $html"
tasks=$(grep -c "<tr id=['\"]t-" "$html" || true)
echo "$dom" | grep -q "<span id=\"count\">$tasks of $tasks tasks</span>" ||
  fail "the task table's script did not run (expected \"$tasks of $tasks tasks\" in the counter)"
figs=$(echo "$dom" | grep -o "<figure>" | wc -l)
svgs=$(echo "$dom" | grep -o "<svg " | wc -l)
[ "$figs" -gt 0 ] && [ "$svgs" -ge "$figs" ] || fail "$figs figures but $svgs drawings"

chrome --screenshot="$(realpath -m "$out/report-top.png")" --window-size=1400,1600 "file://$html" >/dev/null
chrome --screenshot="$(realpath -m "$out/report-full.png")" --window-size=1400,"${HEIGHT:-6000}" "file://$html" >/dev/null
for f in report-top.png report-full.png; do
  [ -s "$out/$f" ] || fail "no screenshot written: $out/$f"
  # a blank page compresses to a few kB
  [ "$(stat -c %s "$out/$f")" -gt 20000 ] || fail "$out/$f looks blank ($(stat -c %s "$out/$f") bytes)"
done
echo "$out/report-top.png"
echo "$out/report-full.png ($figs plots, $tasks tasks; the table's script ran)"
