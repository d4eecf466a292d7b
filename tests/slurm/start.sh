#!/usr/bin/env bash
# Starts a single-node Slurm cluster for the Slurm executor tests, without systemd:
# munged, slurmctld and slurmd in the background, two fake GPUs declared through gres.conf, and
# 16 CPUs declared (config_overrides) so tests that need no GPU do not queue behind each other.
# Needs the Debian packages slurmctld slurmd slurm-client munge (.ci/run installs them) and root.
# usage: tests/slurm/start.sh [DIR]   (default /tmp/quantune-slurm); prints the SLURM_CONF path.
# Stop with tests/slurm/stop.sh [DIR].
set -euo pipefail
dir=${1:-/tmp/quantune-slurm}
mkdir -p "$dir"/{state,spool,log,dev}
conf=$dir/slurm.conf

if [ -f "$dir/pids" ] && sinfo -h -o %T >/dev/null 2>&1 && SLURM_CONF=$conf sinfo -h -o %T 2>/dev/null | grep -q idle; then
  echo "$conf"
  exit 0
fi

for n in 0 1; do
  [ -e "$dir/dev/nvidia$n" ] || mknod "$dir/dev/nvidia$n" c 195 "$n"
done
cat > "$conf" <<CONF
ClusterName=quantune-test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=300
MailProg=/bin/true
GresTypes=gpu
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=16 RealMemory=2000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$dir/gres.conf" <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=$dir/dev/nvidia[0-1]
CONF
export SLURM_CONF=$conf

install -d -o munge -g munge /run/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged -F > "$dir/log/munged.out" 2>&1 &
  echo $! >> "$dir/pids"
fi
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
slurmctld -D -f "$conf" > "$dir/log/slurmctld.out" 2>&1 &
echo $! >> "$dir/pids"
sleep 0.5
slurmd -D -f "$conf" -N localhost > "$dir/log/slurmd.out" 2>&1 &
echo $! >> "$dir/pids"
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "$conf"
    exit 0
  fi
  sleep 0.2
done
echo "Slurm did not come up; logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
