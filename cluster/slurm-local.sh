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
# touched: DIR/munge holds munge's key and seed (0700), DIR/run its socket
# and every pid file (0755: clients must reach the socket), DIR/log the
# logs, DIR/state and DIR/spool Slurm's state. No host name is looked up:
# everything is on 127.0.0.1, and munged's credential origin is set to it
# (by default munged resolves the machine's host name, and where that fails,
# as in a fresh debootstrap root without /etc/hosts, it warns "Continuing
# with origin set to null address").
set -eu
cmd=${1:?usage: slurm-local.sh start|stop DIR}
dir=${2:?usage: slurm-local.sh start|stop DIR}

free_port() { python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])
PY
}

stop() {
  for p in slurmd slurmctld munged; do
    [ -f "$dir/run/$p.pid" ] && kill "$(cat "$dir/run/$p.pid")" 2>/dev/null || true
  done
  sleep 1
  for p in slurmd slurmctld munged; do
    [ -f "$dir/run/$p.pid" ] && kill -9 "$(cat "$dir/run/$p.pid")" 2>/dev/null || true
    rm -f "$dir/run/$p.pid"
  done
}
# fail MESSAGE: say why, show the daemons' last log lines, stop what started
fail() {
  echo "slurm-local.sh: $*" >&2
  for f in "$dir"/log/*.log; do [ -s "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
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
mkdir -p "$dir"/{state,spool,munge,run,log}
dir=$(cd "$dir" && pwd)
chmod 700 "$dir/munge"
chmod 755 "$dir" "$dir/run"
rm -f "$dir"/log/*.log
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
sock="$dir/run/munge.sock"
munged --force --origin=127.0.0.1 --socket="$sock" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" \
  || fail "munged did not start"
# munge works: a credential made on the socket decodes on it
munge -n -S "$sock" | unmunge -S "$sock" >/dev/null 2>&1 || fail "munge cannot encode and decode a credential on $sock"

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=raffletest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
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
