#!/usr/bin/env bash
# start_slurm.sh DIR - a private single-node Slurm cluster on localhost for the test suite.
#
# Everything the cluster writes (slurm.conf, gres.conf, state, spool, logs, pid files) lives in
# DIR, so it never touches /etc/slurm and a second cluster cannot clash with it; clients find it
# through SLURM_CONF=DIR/slurm.conf (sbatch --export=ALL passes that on into jobs). No slurmdbd:
# Snakemake must run with `--slurm-status-command squeue`, which is why MinJobAge is 600 s, and
# the finished jobs' records stay readable with `scontrol show job` for the same time.
# The node has one fake GPU (a gres whose device file is a symlink to /dev/null), so `--gpus=1`
# is scheduled like on a real GPU node while CUDA stays unavailable inside the job.
#
# Env knobs: CTLD_PORT, SLURMD_PORT (free ports, default 6817/6818), WAIT_TIMEOUT (60 s),
# APT_INSTALL (1: apt-get install missing packages).  Stop it with stop_slurm.sh DIR.
set -euo pipefail

DIR=$(realpath "${1:?usage: start_slurm.sh DIR}")
CTLD_PORT=${CTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
APT_INSTALL=${APT_INSTALL:-1}

log() { echo "[start_slurm] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd runs jobs as their user)"

# ------------------------------------------------------------------ packages
missing=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$APT_INSTALL" = 1 ] || die "missing packages: ${missing[*]}"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$DIR/apt.log" 2>&1 || die "apt-get install failed, see $DIR/apt.log"
fi

mkdir -p "$DIR"/{state,spool,log,fakegpu}

# ------------------------------------------------------------------ munge (shared with the host)
# Slurm authenticates through the system munged socket. Start it only if it is not running, and
# remember that we did, so stop_slurm.sh leaves a munged it did not start alone.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -m 0755 -o munge -g munge /run/munge
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$DIR/munged.pid"
  for _ in $(seq 40); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
  munge -n | unmunge >/dev/null 2>&1 || die "munged does not answer"
fi

# ------------------------------------------------------------------ configs
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || die "hostname '$HOST' does not resolve"
HW=$(slurmd -C | head -1)   # NodeName=vm CPUs=2 ... RealMemory=24105
[[ "$HW" == NodeName=* ]] || die "slurmd -C failed: $HW"
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(( MEM > 2048 ? MEM - 1024 : MEM ))
NODE=$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$HW")
# Slurm drops a gpu gres without a device file (node INVALID); a symlink to /dev/null registers.
ln -sfn /dev/null "$DIR/fakegpu/gpu0"

cat >"$DIR/slurm.conf" <<CONF
# written by tests/cluster/start_slurm.sh
ClusterName=dnalmtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups or CPU binding: works inside containers and sandboxes
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
GresTypes=gpu
$NODE NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/fakegpu/gpu0\n' "$HOST" "$DIR" >"$DIR/gres.conf"

# Snakemake's slurm-jobstep plugin drops SLURM_* variables (SLURM_CONF included) before its
# inner `srun`, so inside jobs only the default location works: link /etc/slurm/slurm.conf (and
# gres.conf) to this cluster's files, refusing to replace a configuration that is not ours.
for f in slurm.conf gres.conf; do
  target=/etc/slurm/$f
  if [ -e "$target" ] || [ -L "$target" ]; then
    if [ -L "$target" ] && [[ "$(readlink "$target")" == */start_slurm_link/$f ]]; then
      : # left over from an earlier test cluster of ours: replace it
    else
      die "$target exists and was not written by this harness; refusing to replace it"
    fi
  fi
done
mkdir -p /etc/slurm "$DIR/start_slurm_link"
for f in slurm.conf gres.conf; do
  ln -sfn "$DIR/$f" "$DIR/start_slurm_link/$f"
  ln -sfn "$DIR/start_slurm_link/$f" "/etc/slurm/$f"
done

export SLURM_CONF="$DIR/slurm.conf"
/usr/sbin/slurmctld -i -f "$SLURM_CONF"
for _ in $(seq 80); do scontrol ping >/dev/null 2>&1 && break; sleep 0.25; done
scontrol ping >/dev/null 2>&1 || die "slurmctld not answering, see $DIR/log/slurmctld.log"
/usr/sbin/slurmd -f "$SLURM_CONF"

end=$(( $(date +%s) + WAIT_TIMEOUT ))
while :; do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|inval*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$end" ]; then
    scontrol show node "$HOST" >&2 || true
    die "node $HOST not idle after ${WAIT_TIMEOUT}s (state '$state'), see $DIR/log/slurmd.log"
  fi
  sleep 0.5
done
log "up: node $HOST $state, SLURM_CONF=$SLURM_CONF"
