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
