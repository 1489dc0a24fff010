#!/usr/bin/env bash
# Install raffle's Debian dependencies if any are missing.
# Idempotent: prints nothing and exits 0 when everything is already present.
# Usage: scripts/install-deps.sh [--with-test] [--with-bench] [--with-fuzz]
#        [--with-slurm] [--with-nginx] [--with-chromium] [--with-netns]
set -eu

pkgs="build-essential pkg-config libopenblas-dev libzstd-dev libcjson-dev \
libcurl4-openssl-dev libopenmpi-dev openmpi-bin zlib1g-dev dataset-fashion-mnist"
for a in "$@"; do
  case "$a" in
    --with-test)  pkgs="$pkgs libcriterion-dev" ;;
    --with-bench) pkgs="$pkgs python3-torch" ;;
    --with-fuzz)  pkgs="$pkgs clang libclang-rt-14-dev" ;;
    --with-slurm) pkgs="$pkgs slurmctld slurmd munge slurm-client" ;;
    --with-nginx) pkgs="$pkgs nginx-light curl" ;;
    --with-chromium) pkgs="$pkgs chromium" ;;
    --with-netns) pkgs="$pkgs iproute2 util-linux hostname jq" ;;
    *) echo "install-deps: unknown option '$a'" >&2; exit 2 ;;
  esac
done

missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$st" in ii*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages:$missing" >&2
  echo "install-deps: run as root (or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
  echo "install-deps: apt-get install$missing failed" >&2; exit 1; }
