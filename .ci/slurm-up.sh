#!/usr/bin/env bash
# Bring up a one-node SLURM on this host for the SLURM end-to-end test (tests/test_slurm.py):
# Debian's slurm-wlm and munge, no systemd, no cgroups, no accounting database. Needs root.
# Stop it with .ci/slurm-down.sh. Prints the seconds it took.
#   SLURM_PARTITION  the one partition's name (default: ci; the test passes it to the profile)
set -euo pipefail
start_ms=$(($(date +%s%N) / 1000000))
partition=${SLURM_PARTITION:-ci}
conf_dir=/etc/slurm
marker="# written by infpop .ci/slurm-up.sh"

if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # no service starts from the package scripts: this script starts the daemons with its config
    policy=/usr/sbin/policy-rc.d
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
# daemons left from an earlier run (or started by the packages) are restarted with this config
"$(dirname "$0")/slurm-down.sh" >/dev/null
if [ -f "$conf_dir/slurm.conf" ] && ! grep -qF "$marker" "$conf_dir/slurm.conf"; then
    echo "slurm-up: $conf_dir/slurm.conf exists and is not ours; not touching a real cluster" >&2
    exit 1
fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
real_mb=$((mem_mb * 95 / 100))  # a little under the machine's, or slurmd marks the node invalid
per_cpu_mb=$((real_mb / cpus))

rm -rf /var/lib/slurm/slurmctld  # no saved state: the node must register afresh
mkdir -p "$conf_dir" /run/munge /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown munge:munge /run/munge
chmod 0755 /run/munge
chown -R slurm:slurm /var/lib/slurm /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi

cat > "$conf_dir/slurm.conf" <<CONF
$marker
ClusterName=infpop-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
MpiDefault=none
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$per_cpu_mb
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue (the status command without accounting) must still see a finished job at the next check
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
# A GPU GRES of type "testgpu" backed by /dev/null: lets a job asking for --gpus=testgpu:1 (a sweep
# of a config's gpu_model testgpu) be scheduled, to test the submission path only: nothing runs on
# a GPU
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:testgpu:1 State=UNKNOWN
PartitionName=$partition Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$conf_dir/gres.conf" <<CONF
$marker
NodeName=$host Name=gpu Type=testgpu File=/dev/null
CONF
rm -f "$conf_dir/cgroup.conf"  # 22.05 has no "disabled" cgroup plugin: with none configured it uses none

runuser -u munge -- /usr/sbin/munged
/usr/sbin/slurmctld
/usr/sbin/slurmd

for _ in $(seq 1 120); do
    state=$(sinfo -h -o %t 2>/dev/null || true)
    # idle, and a job step really runs on it
    if [ "$state" = idle ] && timeout 30 srun --quiet --time=1 true 2>/dev/null; then
        elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
        echo "slurm-up: node $host idle (partition $partition, $cpus CPUs, $real_mb MB)" \
            "after $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s"
        exit 0
    fi
    sleep 0.5
done
echo "slurm-up: the node did not become idle; sinfo says '${state:-nothing}'" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
