#!/usr/bin/env bash
# A cluster of N hosts on one machine, for tests and for trying raffle's
# multi-node runs: each host is a network namespace with its own address,
# hostname and node-local scratch directory; Open MPI launches across them
# over TCP, and optionally a Slurm (slurmctld + one slurmd per host) runs
# them. cluster/README.md walks through it.
#
#   netns-cluster.sh [-d DIR] up N [--slurm] [--slots S]
#   netns-cluster.sh [-d DIR] run CMD...         CMD on h1 (the "login node")
#   netns-cluster.sh [-d DIR] on HOST CMD...     CMD on HOST
#   netns-cluster.sh [-d DIR] status
#   netns-cluster.sh [-d DIR] down               removes everything; idempotent
# Faults (for tests of node loss, hangs and partitions):
#   netns-cluster.sh [-d DIR] cut HOST           pull HOST's cable (its switch port down)
#   netns-cluster.sh [-d DIR] mend HOST          plug it back
#   netns-cluster.sh [-d DIR] pids HOST [NAME]   processes on HOST (only those named NAME)
#   netns-cluster.sh [-d DIR] signal HOST SIG [NAME]   SIG to them (KILL: the node dies;
#                                                STOP/CONT: it hangs and resumes)
#
# DIR (default $RAFFLE_CLUSTER, else /tmp/raffle-cluster) holds the cluster's
# state: hosts (NAME ADDRESS NETNS), hostfile (Open MPI), login and
# HOST/profile (the environment of processes on a host), HOST/scratch (the
# node-local scratch directory: TMPDIR there), slurm/ (configuration, logs).
#
# Network: hosts h1..hN are 10.77.0.11..10.77.0.(10+N)/24 (RAFFLE_CLUSTER_NET
# sets the /24 prefix) on eth0, a veth whose other end is a port of bridge
# br0. The bridge lives in a namespace of its own (NETNS-sw), not in the
# root namespace: the machine's own namespace gets no address, route or
# firewall rule in the test subnet (nothing outside the cluster can reach
# its hosts, and they can reach nothing but each other), several clusters
# (parallel test runs) can use the same subnet and ports at once, host
# firewalls (br_netfilter, a FORWARD DROP policy) do not see the bridged
# traffic, and deleting the namespaces deletes every link.
#
# Needs root, iproute2 (ip), util-linux (nsenter, unshare) and, for --slurm,
# slurmctld, slurmd, munge and slurm-client. Processes enter a host with
# cluster/netns-agent.sh (nsenter --net + unshare --uts), never with `ip
# netns exec`, so the cluster also works inside a chroot whose / is not a
# mount point. Only `ip netns add` mounts anything: it bind-mounts /run/netns
# on itself and each namespace onto /run/netns/NAME (a chroot needs /proc
# and a writable /run; `down` unmounts /run/netns again in a chroot once no
# namespace is left in it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
agent=$here/netns-agent.sh
dir=${RAFFLE_CLUSTER:-/tmp/raffle-cluster}
if [ "${1:-}" = -d ]; then dir=${2:?-d needs a directory}; shift 2; fi
cmd=${1:-}
[ $# -gt 0 ] && shift
dir=$(realpath -m "$dir")
export RAFFLE_CLUSTER=$dir
net=${RAFFLE_CLUSTER_NET:-10.77.0}
# Namespace names: "rfc-" + a hash of DIR, so two clusters (two DIRs) never
# share a namespace and `down` finds its namespaces even when DIR is gone.
id=$(printf %s "$dir" | cksum | awk '{ printf "%08x", $1 }')
pre=rfc-$id
sw=$pre-sw

die() { echo "netns-cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '7,18p' "$0" | sed 's/^# *//' >&2; exit 2; }
# sq STRING: STRING quoted for /bin/sh
sq() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }
our_ns() { ip netns list 2>/dev/null | awk -v p="$pre-" 'index($1, p) == 1 { print $1 }'; }
# a chroot without a mount namespace of its own: / is not a mount point
in_chroot() { ! mountpoint -q / 2>/dev/null; }

need_tools() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
  local t
  for t in ip nsenter unshare hostname awk "$@"; do
    command -v "$t" >/dev/null || die "$t not found (Debian: iproute2, util-linux, hostname)"
  done
}

# Kills every process in our namespaces (they are all ours: nothing else
# ever enters them), TERM then KILL, and deletes the namespaces.
down() {
  local ns pids i sig
  for i in 1 2 3 4 5 6 7 8 9 10 11; do
    pids=""
    for ns in $(our_ns); do pids="$pids $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
    pids=$(echo "$pids" | xargs)
    [ -z "$pids" ] && break
    if [ "$i" -lt 11 ]; then
      sig=TERM
      [ "$i" -gt 5 ] && sig=KILL
      # shellcheck disable=SC2086
      kill -s "$sig" $pids 2>/dev/null || true
      sleep 0.5
    else
      echo "netns-cluster.sh: processes still alive in the cluster's namespaces: $pids" >&2
    fi
  done
  for ns in $(our_ns); do ip netns del "$ns" 2>/dev/null || echo "netns-cluster.sh: could not delete namespace $ns" >&2; done
  if [ -f "$dir/.raffle-cluster" ]; then rm -rf "$dir"; fi
  # ip netns add bind-mounts /run/netns on itself; in a chroot, leave the
  # mount table as it was once the last namespace is gone (non-lazy umount:
  # fails harmlessly if another cluster has just added one)
  if in_chroot && mountpoint -q /run/netns 2>/dev/null && [ -z "$(ip netns list 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
  fi
}

write_profiles() {  # N SLOTS
  local n=$1 i h hosts="" mpihosts=""
  for i in $(seq 1 "$n"); do hosts="$hosts${hosts:+,}h$i"; mpihosts="$mpihosts${mpihosts:+,}h$i:$2"; done
  {
    # what a login on a host of the cluster starts with (the agent's env -i)
    echo "export PATH=$(sq "$PATH") HOME=$(sq "${HOME:-/root}") LANG=$(sq "${LANG:-C.UTF-8}")"
    echo "export USER=$(sq "$(id -un)") LOGNAME=$(sq "$(id -un)") SHELL=/bin/sh"
    local v
    for v in OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OPENBLAS_CORETYPE ${RAFFLE_CLUSTER_PASSENV:-}; do
      if [ -n "${!v+x}" ]; then echo "export $v=$(sq "${!v}")"; fi
    done
  } > "$dir/login"
  for i in $(seq 1 "$n"); do
    h=h$i
    {
      echo "export RAFFLE_CLUSTER=$(sq "$dir") RAFFLE_CLUSTER_HOST=$h"
      echo "export RAFFLE_CLUSTER_HOSTS=$hosts RAFFLE_CLUSTER_MPIHOSTS=$mpihosts"
      echo "export TMPDIR=$(sq "$dir/$h/scratch")"
      # Open MPI: start remote daemons with the agent, read the host list,
      # TCP only (no shared memory: every pair of ranks crosses a network
      # stack), and only on the cluster's subnet, for MPI traffic and for
      # the runtime's own (OOB) connections. No binding: the hosts share the
      # machine's cores, and binding per host would stack ranks on core 0.
      echo "export OMPI_MCA_plm_rsh_agent=$(sq "$agent")"
      echo "export OMPI_MCA_orte_default_hostfile=$(sq "$dir/hostfile")"
      echo "export OMPI_MCA_btl=tcp,self OMPI_MCA_btl_tcp_if_include=$net.0/24 OMPI_MCA_oob_tcp_if_include=$net.0/24"
      echo "export OMPI_MCA_hwloc_base_binding_policy=none"
      if [ -f "$dir/slurm/slurm.conf" ]; then echo "export SLURM_CONF=$(sq "$dir/slurm/slurm.conf")"; fi
    } > "$dir/$h/profile"
  done
}

# Slurm: munged and slurmctld on h1, slurmd on every host. All daemons run
# inside the namespaces (so `down` ends them) and talk over the bridge.
slurm_up() {  # N SLOTS
  local n=$1 s=$dir/slurm i
  need_tools munged slurmctld slurmd sinfo
  # slurmd 22.05 will not start without one, whatever the plugins
  grep -qs ' /sys/fs/cgroup' /proc/self/mountinfo ||
    die "no cgroup filesystem on /sys/fs/cgroup: slurmd cannot start (in a chroot: mount --rbind /sys)"
  # shellcheck source=cluster/slurm-lib.sh
  . "$here/slurm-lib.sh"
  mkdir -p "$s/state"
  for i in $(seq 1 "$n"); do mkdir -p "$s/spool/h$i"; done
  slurm_munge_key "$s"
  local mem=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 / 2 / n ))
  # Each task's TMPDIR is its node's scratch directory, whatever the
  # submitting shell had (sbatch exports the submitter's environment); real
  # sites do the same with a TaskProlog or job_container/tmpfs.
  cat > "$s/task-prolog.sh" <<EOF
#!/bin/sh
echo "export TMPDIR=$dir/\$SLURMD_NODENAME/scratch"
EOF
  chmod 755 "$s/task-prolog.sh"
  {
    echo "ClusterName=raffle-netns"
    echo "SlurmctldHost=h1($net.11)"
    echo "SlurmctldPort=6817"
    echo "SlurmdPort=6818"
    echo "SlurmdSpoolDir=$s/spool/%n"
    echo "SlurmctldPidFile=$s/slurmctld.pid"
    echo "SlurmdPidFile=$s/slurmd-%n.pid"
    echo "SlurmctldLogFile=$s/slurmctld.log"
    echo "SlurmdLogFile=$s/slurmd-%n.log"
    echo "TaskProlog=$s/task-prolog.sh"
    # node-local temporary space (PMIx puts its per-step client directory
    # there: one shared /tmp would make the nodes' steps collide)
    echo "TmpFS=$dir/%n/scratch"
    slurm_conf_common "$s"
    for i in $(seq 1 "$n"); do
      echo "NodeName=h$i NodeAddr=$net.$((10 + i)) CPUs=$2 RealMemory=$mem State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=h[1-$n] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
  } > "$s/slurm.conf"
  write_profiles "$n" "$2"
  # shellcheck disable=SC2046
  # --origin: the hosts' names are not in any resolver (a test network)
  "$agent" h1 munged $(slurm_munged_args "$s" "$net.11")
  "$agent" h1 slurmctld -i -f "$s/slurm.conf"
  for i in $(seq 1 "$n"); do "$agent" "h$i" slurmd -N "h$i" -f "$s/slurm.conf"; done
  local t idle
  for t in $(seq 1 60); do
    idle=$("$agent" h1 sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed)' || true)
    [ "$idle" -ge "$n" ] && return 0
    sleep 0.5
  done
  echo "netns-cluster.sh: Slurm nodes did not become idle ($idle of $n); logs in $s" >&2
  tail -n 5 "$s"/*.log >&2 || true
  return 1
}

up() {
  local n=${1:-} slurm=0 slots
  slots=$(nproc)
  [ $# -gt 0 ] && shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --slurm) slurm=1 ;;
      --slots) slots=${2:?--slots needs a number}; shift ;;
      *) usage ;;
    esac
    shift
  done
  case "$n" in ''|*[!0-9]*) usage ;; esac
  [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "N must be 1..200"
  need_tools
  if [ -n "$(our_ns)" ]; then die "a cluster is already up in $dir (netns-cluster.sh down first)"; fi
  if [ -e "$dir" ] && [ ! -f "$dir/.raffle-cluster" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    die "$dir exists and is not a cluster directory: choose another (-d DIR)"
  fi
  mkdir -p "$dir"
  touch "$dir/.raffle-cluster"
  trap 'echo "netns-cluster.sh: up failed: removing what was built" >&2; down' ERR
  : > "$dir/hosts"
  : > "$dir/hostfile"
  ip netns add "$sw"
  in_ns "$sw" ip link set lo up
  in_ns "$sw" ip link add br0 type bridge
  in_ns "$sw" ip link set br0 up
  local i h ns addr
  for i in $(seq 1 "$n"); do
    h=h$i ns=$pre-$h addr=$net.$((10 + i))
    ip netns add "$ns"
    # the veth pair is born in the two namespaces: no name in the root one
    in_ns "$sw" ip link add "$h" type veth peer name eth0 netns "$ns"
    in_ns "$sw" ip link set "$h" master br0 up
    # IPv4 only: no IPv6 neighbour discovery chatter on the counters
    in_ns "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6' 2>/dev/null || true
    # TCP gives up on an unanswered peer after ~3 s instead of ~15 min
    # (tcp_retries2 is per namespace): Open MPI 4.1's runtime has no
    # heartbeat of its own, so with the default an mpirun (or orted) that
    # sends to a host whose cable is cut waits that long before it ends the
    # job. RAFFLE_CLUSTER_TCP_RETRIES overrides (15: the kernel's default).
    in_ns "$ns" sh -c "echo ${RAFFLE_CLUSTER_TCP_RETRIES:-3} > /proc/sys/net/ipv4/tcp_retries2" 2>/dev/null || true
    in_ns "$ns" ip addr add "$addr/24" dev eth0
    in_ns "$ns" ip link set eth0 up
    in_ns "$ns" ip link set lo up
    mkdir -p "$dir/$h/scratch"
    echo "$h $addr $ns" >> "$dir/hosts"
    echo "$h slots=$slots" >> "$dir/hostfile"
  done
  write_profiles "$n" "$slots"
  if [ "$slurm" = 1 ]; then slurm_up "$n" "$slots"; fi
  trap - ERR
  echo "netns-cluster.sh: $n host(s) up in $dir: $(awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $1, $2 }' "$dir/hosts")$([ "$slurm" = 1 ] && echo ", Slurm on h1")"
}

status() {
  [ -f "$dir/hosts" ] || { echo "no cluster in $dir"; [ -n "$(our_ns)" ] && echo "stale namespaces: $(our_ns | tr '\n' ' ')(netns-cluster.sh down)"; return 0; }
  local h addr ns up
  printf '%-4s %-12s %-20s %-5s %6s %12s %12s\n' host address namespace link procs rx_bytes tx_bytes
  while read -r h addr ns; do
    # counters through netlink (nsenter does not remount /sys)
    # shellcheck disable=SC2046
    set -- $(in_ns "$ns" ip -s link show eth0 2>/dev/null | awk '/RX:/ { getline; rx = $1 } /TX:/ { getline; tx = $1 } END { print rx + 0, tx + 0 }')
    up=$(in_ns "$ns" ip -br link show eth0 2>/dev/null | awk '{ print $2 }')
    printf '%-4s %-12s %-20s %-5s %6s %12s %12s\n' "$h" "$addr" "$ns" "${up:-gone}" \
      "$(ip netns pids "$ns" 2>/dev/null | wc -l)" "${1:-?}" "${2:-?}"
  done < "$dir/hosts"
  if [ -f "$dir/slurm/slurm.conf" ]; then "$agent" h1 sinfo -N 2>&1 || true; fi
}

ns_of() {  # HOST -> its namespace, or die
  local ns
  ns=$(awk -v h="$1" '$1 == h { print $3 }' "$dir/hosts" 2>/dev/null)
  [ -n "$ns" ] || die "$1 is not a host of the cluster in $dir"
  echo "$ns"
}

# pids HOST [NAME]: every process in HOST's namespace (they are all the
# cluster's), or those whose command name is NAME
pids() {
  local ns p
  ns=$(ns_of "$1")
  for p in $(ip netns pids "$ns"); do
    if [ -z "${2:-}" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then echo "$p"; fi
  done
}

case "$cmd" in
  up) up "$@" ;;
  cut|mend) [ $# -eq 1 ] || usage; ns_of "$1" >/dev/null
    # the switch end of the host's veth: the host sees its carrier go
    # (NO-CARRIER), as when a cable is pulled; its processes keep running
    in_ns "$sw" ip link set "$1" "$([ "$cmd" = cut ] && echo down || echo up)"
    if [ "$cmd" = mend ]; then
      # back when the host sees its carrier again, with the neighbour
      # entries the cut left failed forgotten on every host
      ns=$(ns_of "$1")
      for _ in $(seq 1 50); do in_ns "$ns" ip link show eth0 | grep -q LOWER_UP && break; sleep 0.1; done
      for ns in $(our_ns); do [ "$ns" = "$sw" ] || in_ns "$ns" ip neigh flush dev eth0 2>/dev/null || true; done
    fi ;;
  pids) [ $# -ge 1 ] || usage; pids "$@" ;;
  signal) [ $# -ge 2 ] || usage
    p=$(pids "$1" "${3:-}")
    [ -n "$p" ] || die "no process${3:+ named $3} on $1"
    # shellcheck disable=SC2086
    kill -s "$2" $p ;;
  down) need_tools; down ;;
  run) [ $# -gt 0 ] || usage; exec "$agent" --run h1 "$@" ;;
  on) [ $# -gt 1 ] || usage; h=$1; shift; exec "$agent" --run "$h" "$@" ;;
  status) status ;;
  *) usage ;;
esac
