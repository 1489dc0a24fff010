# Prerequisite checks shared by the integration scripts: source it first,
#   . "$(dirname "$0")/lib.sh"
# (scripts/run-integration-tests.sh runs every other tests/integration/*.sh).
#
# Exit 77 is a skip: the runner counts it and prints its reason (the last
# line of the script's output). A skip is only for what a machine cannot
# provide (not root, no network namespaces). A tool or package that set-up
# should have installed is a *missing prerequisite*: a skip on a developer's
# machine (with the command that installs it), a failure under CI=true,
# where a skipped test would be a test that silently did not run.
#
#   need_cmd CMD...     each CMD on PATH; CMD must be in scripts/install-deps.sh's table
#   need_python_module MOD...  Debian's /usr/bin/python3 imports MOD (package
#                       python3-MOD, which must be in install-deps.sh's table)
#   need_root WHY       root, or skip
#   missing WHAT        a missing prerequisite: skip, or fail under CI=true
#   skip WHY            what this machine cannot provide: skip
#   live_pids PID...    those PIDs still running (gone and zombies are not)
#   wait_gone SECS PID...  waits up to SECS for every PID to end; else prints
#                       the ones left (pid, state, command) and returns 1

_lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

skip() { echo "SKIP: $*"; exit 77; }

missing() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: missing prerequisite under CI=true (scripts/install-deps.sh should install it): $*"
    exit 1
  fi
  skip "missing prerequisite: $*"
}

need_cmd() {
  local c pkg
  for c in "$@"; do
    # a tool the tests use is installed by set-up: declared in the one table
    if ! pkg=$("$_lib_root/scripts/install-deps.sh" --package-of "$c"); then
      echo "FAIL: $(basename "$0") uses '$c', which scripts/install-deps.sh does not list: add a line for it there"
      exit 1
    fi
    command -v "$c" >/dev/null 2>&1 ||
      missing "$c not found (Debian package $pkg: scripts/install-deps.sh --with-test installs it)"
  done
}

need_python_module() {
  local m
  for m in "$@"; do
    "$_lib_root/scripts/install-deps.sh" --list | awk -v p="python3-$m" '$2 == p { f = 1 } END { exit !f }' || {
      echo "FAIL: $(basename "$0") imports $m, but scripts/install-deps.sh does not list python3-$m: add a line for it there"
      exit 1; }
    timeout 300 /usr/bin/python3 -c "import $m" >/dev/null 2>&1 ||
      missing "/usr/bin/python3 cannot import $m (Debian package python3-$m: scripts/install-deps.sh --with-test installs it)"
  done
}

need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root: $*"; }

# /proc/PID/stat is read once: a test that looked twice (the directory, then
# the state) took a process reaped between the two looks for one still
# running (CI, session 7: "stopped process 22815 left behind").
live_pids() {
  local p st
  for p in "$@"; do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    [ -n "$st" ] || continue
    st=${st##*) }           # the fields after the command name: state first
    [ "${st%% *}" = Z ] || echo "$p"
  done
}

wait_gone() {
  local secs=$1 left p _
  shift
  for _ in $(seq 1 $((secs * 20))); do
    left=$(live_pids "$@")
    [ -z "$left" ] && return 0
    sleep 0.05
  done
  for p in $left; do
    echo "$p ($(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null): $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null))"
  done
  return 1
}
