#!/bin/sh
# The "ssh" of the namespace cluster (cluster/netns-cluster.sh): runs a
# command on one of its hosts.
#
#   netns-agent.sh HOST COMMAND...          like `ssh HOST COMMAND...`
#   netns-agent.sh --run HOST ARGV...       like `ssh -t HOST` with your environment
#
# The first form is what Open MPI's rsh launcher calls (plm_rsh_agent): the
# words of COMMAND are joined with spaces and given to /bin/sh, as sshd
# would, in a login-like environment: `env -i`, then the cluster's login
# environment ($RAFFLE_CLUSTER/login: PATH, HOME, LANG and the variables
# named in RAFFLE_CLUSTER_PASSENV when the cluster came up), then the host's
# profile ($RAFFLE_CLUSTER/HOST/profile: TMPDIR = the host's scratch, the
# cluster's Open MPI and Slurm settings). The second form
# (`netns-cluster.sh run`) keeps the caller's environment and argv and adds
# the profile on top.
#
# Entering a host = its network namespace (nsenter --net: no mount
# namespace, no /sys remount, so it works in a chroot whose / is not a mount
# point, unlike `ip netns exec`) + a fresh UTS namespace whose hostname is
# set to HOST (unshare --uts; a UTS namespace holds nothing but the host and
# domain names, so a fresh one per entry is the same as a persistent one).
# Every process started below, and its children, see HOST in gethostname().
set -eu
run=0
[ "${1:-}" = --run ] && { run=1; shift; }
host=${1:?usage: netns-agent.sh [--run] HOST COMMAND...}
shift
[ $# -gt 0 ] || { echo "netns-agent.sh: no command for $host" >&2; exit 2; }
dir=${RAFFLE_CLUSTER:-/tmp/raffle-cluster}
[ -f "$dir/hosts" ] || { echo "netns-agent.sh: no cluster in $dir (netns-cluster.sh up N; RAFFLE_CLUSTER names its directory)" >&2; exit 255; }
# hosts: NAME ADDRESS NETNS, one line per host; only these are targets
ns=$(awk -v h="$host" '$1 == h || $2 == h { print $3; exit }' "$dir/hosts")
[ -n "$ns" ] || { echo "netns-agent.sh: $host is not a host of the cluster in $dir" >&2; exit 255; }
name=$(awk -v n="$ns" '$3 == n { print $1; exit }' "$dir/hosts")
profile=$dir/$name/profile
if [ "$run" = 1 ]; then
  exec nsenter --net="/run/netns/$ns" -- unshare --uts -- /bin/sh -c \
    '. "$1" && hostname "$2" && shift 2 && exec "$@"' sh "$profile" "$name" "$@"
fi
exec nsenter --net="/run/netns/$ns" -- unshare --uts -- env -i /bin/sh -c \
  '. "$1" && . "$2" && hostname "$3" && cd "$4" 2>/dev/null; exec /bin/sh -c "$5"' \
  sh "$dir/login" "$profile" "$name" "$PWD" "$*"
