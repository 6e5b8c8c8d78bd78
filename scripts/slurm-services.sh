#!/usr/bin/env bash
# Installs and starts what the Slurm tests (crates/agent/tests/slurm*.rs) use for real: Debian's
# slurm-wlm (22.05 on Debian 12) with munge, one slurmctld and one slurmd on 127.0.0.1, on
# ports of their own, with a node "gpunode1" that has 4 `gres/gpu` of type h200 backed by
# device files this script creates (there is no GPU here), each job confined to its own by
# Slurm's device cgroup where the host allows it.
#
# Job records come from the controller's memory (`squeue --json --states=all`), kept for an
# hour after a job ends (MinJobAge=3600): no slurmdbd/MariaDB is needed.
#
# Source it to get SLURM_CONF (the tests' cluster) and GPUBOOK_SLURM=1; the Slurm tests then
# fail, not skip, when a part is missing:
#     . scripts/slurm-services.sh
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurm-client munge >/dev/null
fi

dir="${GPUBOOK_SLURM_DIR:-/var/lib/gpubook-test-slurm}"
conf="$dir/slurm.conf"
$sudo mkdir -p "$dir/dev" "$dir/state" "$dir/spool/gpunode1" "$dir/spool/gpunode2" "$dir/log"
# Character devices, as Slurm requires, one per "GPU", with a major number reserved for local
# use (240) that no driver claims: opening one fails with "No such device" where the job may
# use it, and with "Operation not permitted" where Slurm's device cgroup denies it.
for i in 0 1 2 3 4 5; do
  f="$dir/dev/gpu$i"
  if [ ! -c "$f" ] || [ "$(stat -c '%t:%T' "$f")" != "f0:$i" ]; then
    $sudo rm -f "$f"
    $sudo mknod -m 666 "$f" c 240 "$i"
  fi
done
# Jobs are confined to their GPUs by Slurm's device cgroup where this host lets Slurm make
# cgroups (cgroup v1's devices controller, as in this project's containers); elsewhere the
# cluster runs without confinement, and the confinement test says so.
cgroup_conf="$dir/cgroup.conf"
before="$( (cat "$conf" "$cgroup_conf" 2>/dev/null || true) | md5sum)"
if [ -w /sys/fs/cgroup/devices ] && [ -d /sys/fs/cgroup/freezer ]; then
  proctrack=proctrack/cgroup
  task=task/cgroup
  printf '%s\n' CgroupPlugin=cgroup/v1 CgroupMountpoint=/sys/fs/cgroup ConstrainDevices=yes \
    ConstrainCores=no ConstrainRAMSpace=no | $sudo tee "$cgroup_conf" >/dev/null
else
  proctrack=proctrack/linuxproc
  task=task/none
  $sudo rm -f "$cgroup_conf"
fi
host="$(hostname)"
# A second node, gpunode2 with 2 GPUs, runs its slurmd in a network namespace of its own (a
# host runs one slurmd per port), reached over a veth pair; the controller listens on the
# host's end of it, which the host reaches as well. Where namespaces cannot be made, the
# cluster has gpunode1 only (and the two-node test says so).
ns=gpubook-slurm2
ctld_addr=127.0.0.1
nodes=gpunode1
if ip netns list 2>/dev/null | grep -qw "$ns" || $sudo ip netns add "$ns" 2>/dev/null; then
  if ! ip link show gpbslurm-h >/dev/null 2>&1; then
    $sudo ip link add gpbslurm-h type veth peer name gpbslurm-n netns "$ns"
    $sudo ip addr add 10.213.0.1/30 dev gpbslurm-h
    $sudo ip link set gpbslurm-h up
    $sudo ip netns exec "$ns" ip addr add 10.213.0.2/30 dev gpbslurm-n
    $sudo ip netns exec "$ns" ip link set gpbslurm-n up
    $sudo ip netns exec "$ns" ip link set lo up
  fi
  ctld_addr=10.213.0.1
  nodes=gpunode1,gpunode2
fi
$sudo tee "$conf" >/dev/null <<EOF
# Written by gpubook's scripts/slurm-services.sh for its tests.
ClusterName=gpubook
SlurmctldHost=$host($ctld_addr)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=$proctrack
TaskPlugin=$task
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
KillWait=5
NodeName=gpunode1 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=8 Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=2000 Gres=gpu:h200:4 State=UNKNOWN
$( [ "$nodes" = gpunode1 ] || echo "NodeName=gpunode2 NodeAddr=10.213.0.2 CPUs=8 Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=2000 Gres=gpu:h200:2 State=UNKNOWN")
PartitionName=gpu Nodes=$nodes Default=YES MaxTime=INFINITE State=UP
EOF
$sudo tee "$dir/gres.conf" >/dev/null <<EOF
NodeName=gpunode1 Name=gpu Type=h200 File=$dir/dev/gpu[0-1] Cores=0-3
NodeName=gpunode1 Name=gpu Type=h200 File=$dir/dev/gpu[2-3] Cores=4-7
NodeName=gpunode2 Name=gpu Type=h200 File=$dir/dev/gpu[4-5] Cores=0-7
EOF
export SLURM_CONF="$conf"

# munge: one key, one daemon.
if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || $sudo /usr/sbin/mungekey --create >/dev/null 2>&1 || true
  $sudo mkdir -p /run/munge && $sudo chown munge: /run/munge
  $sudo runuser -u munge -- /usr/sbin/munged || $sudo /usr/sbin/munged --force
fi
munge -n | unmunge >/dev/null

# The daemons, started once; a running pair from an earlier run of this script is kept, unless
# the configuration changed.
if [ "$before" != "$( (cat "$conf" "$cgroup_conf" 2>/dev/null || true) | md5sum)" ]; then
  $sudo pkill -x slurmd 2>/dev/null || true
  $sudo pkill -x slurmctld 2>/dev/null || true
  for _ in $(seq 1 40); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 0.25
  done
fi
if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
  $sudo pkill -x slurmctld 2>/dev/null || true
  $sudo slurmctld -f "$conf"
fi
if ! pgrep -f -- "slurmd -f $conf -N gpunode1" >/dev/null; then
  $sudo slurmd -f "$conf" -N gpunode1
fi
if [ "$nodes" != gpunode1 ] && ! pgrep -f -- "slurmd -f $conf -N gpunode2" >/dev/null; then
  # nsenter, not `ip netns exec`: the node keeps the host's /sys, cgroups included.
  $sudo nsenter --net="/run/netns/$ns" slurmd -f "$conf" -N gpunode2
fi
up() {
  for n in ${nodes//,/ }; do
    sinfo -h -N -n "$n" -o '%N %t' 2>/dev/null | grep -Eq "$n (idle|mix|alloc|resv)" || return 1
  done
}
for _ in $(seq 1 60); do
  up && break
  sleep 0.5
done
up || {
  echo "slurm services: $nodes not up:" >&2
  sinfo -N >&2 || true
  tail -n 20 "$dir/log/slurmctld.log" >&2 || true
  exit 1
}
echo "slurm services: $(slurmctld -V), nodes gpunode1 (4 gres/gpu)$([ "$nodes" = gpunode1 ] || echo " and gpunode2 (2, in network namespace $ns)"), SLURM_CONF=$conf"
export GPUBOOK_SLURM=1
