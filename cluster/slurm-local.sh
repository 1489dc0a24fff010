#!/usr/bin/env bash
# Starts or stops a single-node Slurm cluster on 127.0.0.1 for tests:
# munged, slurmctld and slurmd with a configuration written into DIR.
#
#   cluster/slurm-local.sh start DIR    # prints "export SLURM_CONF=DIR/slurm.conf"
#   cluster/slurm-local.sh stop DIR
#
# Needs root, Debian's slurmctld, slurmd, munge and slurm-client
# (scripts/install-deps.sh --with-slurm) and a cgroup filesystem on
# /sys/fs/cgroup (slurmd 22.05 will not start without one, whatever the
# plugins; in a chroot, bind /sys with --rbind). Nothing outside DIR is
# touched: munge's key and seed in DIR/munge (0700), its socket, the pid
# files and the logs in DIR (0755: clients must reach the socket), Slurm's
# state in DIR/state and DIR/spool (the settings shared with the namespace
# cluster are in cluster/slurm-lib.sh). No host name is looked up:
# everything is on 127.0.0.1, and munged's credential origin is set to it
# (by default munged resolves the machine's host name, and where that fails,
# as in a fresh debootstrap root without /etc/hosts, it warns "Continuing
# with origin set to null address").
set -eu
cmd=${1:?usage: slurm-local.sh start|stop DIR}
dir=${2:?usage: slurm-local.sh start|stop DIR}
# shellcheck source=cluster/slurm-lib.sh
. "$(dirname "$0")/slurm-lib.sh"

free_port() { python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])
PY
}

stop() {
  for p in slurmd slurmctld munged; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  sleep 1
  for p in slurmd slurmctld munged; do
    [ -f "$dir/$p.pid" ] && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
    rm -f "$dir/$p.pid"
  done
}
# fail MESSAGE: say why, show the daemons' last log lines, stop what started
fail() {
  echo "slurm-local.sh: $*" >&2
  for f in "$dir"/*.log; do [ -s "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
  stop
  echo "slurm-local.sh: $*" >&2   # last line: what a caller shows
  exit 1
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "slurm-local.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac

for b in munged munge unmunge slurmctld slurmd sbatch scontrol; do
  command -v "$b" >/dev/null || { echo "slurm-local.sh: $b not installed (scripts/install-deps.sh --with-slurm)" >&2; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { echo "slurm-local.sh: needs root (munged, slurmd)" >&2; exit 3; }
grep -qs ' /sys/fs/cgroup' /proc/self/mountinfo ||
  { echo "slurm-local.sh: no cgroup filesystem on /sys/fs/cgroup: slurmd cannot start (in a chroot: mount --rbind /sys)" >&2; exit 3; }
mkdir -p "$dir"/{state,spool,tmp}
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"
rm -f "$dir"/*.log
slurm_munge_key "$dir"
sock=$(slurm_munge_socket "$dir")
# shellcheck disable=SC2046
munged $(slurm_munged_args "$dir" 127.0.0.1) || fail "munged did not start"
# munge works: a credential made on the socket decodes on it
munge -n -S "$sock" | unmunge -S "$sock" >/dev/null 2>&1 || fail "munge cannot encode and decode a credential on $sock"

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=raffletest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# TmpFS: PMIx's per-step directories (spmix_appdir_UID_JOB.STEP) go here,
# not /tmp: every test cluster numbers its jobs from 1, so two clusters on one
# machine (or a step left over from an earlier run) would collide on the same
# /tmp directory and the step fails to launch ("Cannot create directory").
TmpFS=$dir/tmp
$(slurm_conf_common "$dir")
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -i -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -N localhost -f "$SLURM_CONF" || fail "slurmd did not start"
for _ in $(seq 1 30); do
  if scontrol show node localhost 2>/dev/null | grep -qE 'State=(IDLE|MIXED)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
fail "node localhost did not become idle in 30 s ($(scontrol show node localhost 2>&1 | grep -o 'State=[A-Z_+]*' || echo 'no answer from slurmctld'))"
