#!/usr/bin/env bash
# Renders a sweep's report.html in headless Chromium (Debian's `chromium`,
# installed if missing) and saves a PNG, so the page is checked as a person
# sees it. Usage: scripts/screenshot-report.sh STORE/NAME [OUT.png]
set -eu
dir=${1:?usage: scripts/screenshot-report.sh STORE/NAME [OUT.png]}
out=${2:-$dir/report.png}
html=$(realpath "$dir/report.html")
[ -f "$html" ] || { echo "screenshot-report: $html not found (raffle report $dir)" >&2; exit 1; }
if ! command -v chromium >/dev/null 2>&1; then
  echo "screenshot-report: installing chromium (apt-get)" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" \
  --screenshot="$(realpath -m "$out")" --window-size=1400,2400 "file://$html" >/dev/null 2>&1
[ -s "$out" ] || { echo "screenshot-report: no screenshot written" >&2; exit 1; }
echo "$out"
