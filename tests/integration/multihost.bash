# Shared by tests/integration/multihost_*.sh (sourced; not a test itself:
# the runner runs *.sh). Brings a namespace cluster up for one test and
# always takes it down again.
#
#   mh_prereqs [--with-slurm]  root, the tools (need_cmd, tests/integration/
#                       lib.sh: a missing one fails under CI=true), and a
#                       probe that network namespaces can be created here:
#                       skip (77) if not, what a machine may not provide
#   mh_up N [--slurm]   T (temporary directory, RAFFLE copied into it), CD
#                       (the cluster's directory), CL (netns-cluster.sh);
#                       a trap takes the cluster down and removes T on exit
#   cl ARGS...          netns-cluster.sh -d $CD ARGS..., killed after MH_TIMEOUT
#                       seconds (120): a launcher that hangs fails the test
#                       (mpirun ignores SIGTERM while a host is unreachable)
#   mh_procs            pids of every process in the cluster's namespaces
#   mh_down_check       takes the cluster down and fails if a namespace or a
#                       process of it is left
#   fail MSG            prints MSG and the logs, exit 1

CL=$here/cluster/netns-cluster.sh
. "$here/tests/integration/lib.sh"

fail() {
  echo "FAIL: $*"
  local f
  for f in "${T:-/nonexistent}"/log-* "${T:-/nonexistent}"/out-*; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done
  exit 1
}

cl() { timeout -k 10 "${MH_TIMEOUT:-120}" "$CL" -d "$CD" "$@"; }

mh_prereqs() {
  need_root "network namespaces need root"
  need_cmd ip nsenter unshare hostname jq mpirun
  [ "${1:-}" = --with-slurm ] && need_cmd munged slurmctld slurmd sinfo sbatch srun scontrol
  # can this machine (container, chroot) create a network namespace and
  # enter it? The reason is the last line: the runner prints it with SKIPPED.
  local probe=rfc-probe-$$ err
  if ! err=$(ip netns add "$probe" 2>&1); then
    skip "cannot create a network namespace here (ip netns add: ${err:-failed}); a chroot needs /proc and a writable /run"
  fi
  err=$(nsenter --net="/run/netns/$probe" -- unshare --uts -- true 2>&1) || {
    ip netns del "$probe" 2>/dev/null; skip "cannot enter a network namespace here (nsenter/unshare: $err)"; }
  ip netns del "$probe"
}

mh_namespaces() { awk '{ print $3 }' "$CD/hosts"; }

mh_procs() {
  local ns
  for ns in $(mh_namespaces); do ip netns pids "$ns" 2>/dev/null; done
}

mh_down_check() {
  local ns pids left="" out
  local nss
  nss=$(mh_namespaces)
  nss="$nss $(echo "$nss" | sed -n 's/-h1$/-sw/p')"   # and the bridge's
  pids=$(mh_procs)
  out=$(cl down 2>&1) || fail "netns-cluster.sh down: $out"
  [ -z "$out" ] || fail "netns-cluster.sh down: $out"
  for ns in $nss; do [ -e "/run/netns/$ns" ] && fail "namespace $ns left after down"; done
  # gone, or a zombie waiting for its reaper
  # shellcheck disable=SC2086
  left=$(live_pids $pids | tr '\n' ' ')
  [ -z "$left" ] || fail "processes left after down:$left"
  echo "down: $(echo $pids | wc -w) processes ended, $(echo $nss | wc -w) namespaces removed"
}

mh_cleanup() {
  [ -n "${CD:-}" ] && "$CL" -d "$CD" down >/dev/null 2>&1
  [ -n "${T:-}" ] && rm -rf "$T"
}

mh_up() {
  T=$(mktemp -d /tmp/raffle-mh.XXXXXX)
  CD=$T/cluster
  trap mh_cleanup EXIT
  cp "$RAFFLE" "$T/raffle" && RAFFLE=$T/raffle
  # hosts start from a clean environment (like ssh): sanitizer settings of
  # `make asan-integration` travel to every host's ranks as well
  export RAFFLE_CLUSTER_PASSENV="ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS"
  cl up "$@" >"$T/log-up" 2>&1 || fail "netns-cluster.sh up $*: $(tail -n 3 "$T/log-up")"
}
