# shellcheck shell=bash
# Shared pieces of the test Slurm clusters (sourced, not run):
# cluster/netns-cluster.sh (one slurmd per namespace host) uses them;
# cluster/slurm-local.sh (single node on 127.0.0.1) holds the same settings.
#
#   slurm_munge_key DIR          DIR/munge/munge.key, a fresh random key
#   slurm_munged_args DIR [ADDR] munged's arguments: socket, key, pid, log, seed in
#                                DIR; ADDR: the origin address credentials carry
#                                (default: what the hostname resolves to; where
#                                it resolves to nothing, as in a debootstrap root
#                                without /etc/hosts, munged warns "Continuing with
#                                origin set to null address")
#   slurm_munge_socket DIR       the socket: DIR/munge.sock, not in the key's 0700
#                                directory (munged warns clients cannot reach it)
#   slurm_conf_common DIR        the slurm.conf lines both clusters share
#                                (auth through DIR's munge socket, plugins that
#                                need no cgroups or accounting, requeue, timeouts)

slurm_munge_key() {
  mkdir -p "$1/munge"
  chmod 700 "$1/munge"
  rm -f "$1/munge/munge.key"
  dd if=/dev/urandom of="$1/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$1/munge/munge.key"
}

slurm_munge_socket() { echo "$1/munge.sock"; }

slurm_munged_args() {
  printf '%s ' --force --socket="$(slurm_munge_socket "$1")" --key-file="$1/munge/munge.key" \
    --pid-file="$1/munged.pid" --log-file="$1/munged.log" --seed-file="$1/munge/seed" ${2:+--origin="$2"}
}

# No cgroups (proctrack/linuxproc, task/none): works in containers, VMs and
# chroots; no accounting daemon. ReturnToService=2 brings a node that was
# down back when its slurmd registers; JobRequeue=1 lets the templates requeue.
# cred_expire=20: Slurm holds a requeued job back for cred_expire + 1 s (its
# begin time) so the old run's batch script is gone and its completion message
# has arrived before the new run starts; the default (120 s) would make each
# requeue test wait two minutes. Never shorten the hold by forcing
# `scontrol update StartTime=now`: without slurmdbd, slurmctld (22.05) does not
# drop a late batch-completion message of the old run (proc_req.c,
# _slurm_rpc_complete_batch_script), so it ends the *new* run as FAILED
# (seen in CI as "FAILED, Restarts=1" after a requeue under load). 20 s, not
# the minimum 5, because the same value is every step credential's lifetime
# and a loaded test machine can take seconds to launch a step.
slurm_conf_common() {
  cat <<CONF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$(slurm_munge_socket "$1"),cred_expire=20
StateSaveLocation=$1/state
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
CONF
}
