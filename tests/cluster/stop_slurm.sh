#!/usr/bin/env bash
# stop_slurm.sh DIR - cancel the jobs of the cluster start_slurm.sh DIR started and stop its
# daemons by their pid files only (each pid is checked to still be that program), plus munged
# if start_slurm.sh started it.
set -uo pipefail
DIR=$(realpath "${1:?usage: stop_slurm.sh DIR}")
export SLURM_CONF="$DIR/slurm.conf"
log() { echo "[stop_slurm] $*" >&2; }

stop_pid() {  # stop_pid PIDFILE COMM
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 0
  pid=$(cat "$pf")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "$comm ignored TERM"; kill -KILL "$pid"; }
  fi
  rm -f "$pf"
}

if [ -f "$SLURM_CONF" ]; then
  jobs=$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED -o %i 2>/dev/null || true)
  [ -n "$jobs" ] && { log "cancelling $jobs"; timeout 10 scancel $jobs 2>/dev/null; sleep 1; }
fi
stop_pid "$DIR/slurmd.pid" slurmd
stop_pid "$DIR/slurmctld.pid" slurmctld
stop_pid "$DIR/munged.pid" munged
for f in slurm.conf gres.conf; do   # the links start_slurm.sh made to this cluster only
  [ "$(readlink "/etc/slurm/$f" 2>/dev/null)" = "$DIR/start_slurm_link/$f" ] && rm -f "/etc/slurm/$f"
done
log "stopped"
