#!/usr/bin/env bash
# A private Slurm cluster on this host for the Slurm tests: munged, slurmctld and one slurmd per
# virtual node, every file (config, keys, sockets, state, spools, logs) under DIR, on free ports.
#
#   tests/slurm/cluster.sh up DIR [NODES=2] [CPUS=2]   # returns once every node is idle
#   tests/slurm/cluster.sh down DIR                    # cancels its jobs, stops its own daemons
#   SLURM_CONF=DIR/slurm.conf sbatch ...               # clients find the cluster by its config
#
# Needs root (slurmd starts job steps as the submitting user) and Debian's slurmctld, slurmd,
# slurm-client and munge (scripts/setup.sh). Without them `up` exits 77 (CTest's skip), or 1 under
# CI=true. Facts this relies on (ports, TmpFS per node, timings): /work/shared/slurm/README.md.
set -euo pipefail

usage() { echo "usage: $0 up DIR [NODES] [CPUS] | down DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
conf=$dir/slurm.conf
export SLURM_CONF=$conf

# Prints a line and exits: 77 (skip) when this machine cannot run Slurm, 1 under CI=true.
unavailable() {
  echo "cluster.sh: $1" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 77
}

# Free TCP ports on 127.0.0.1 (the kernel's picks; released again just before the daemons bind).
free_ports() {
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

write_conf() {
  local nodes=$1 cpus=$2 host ctld_port node_ports
  host=$(hostname -s)
  read -r ctld_port node_ports <<<"$(free_ports $((nodes + 1)))"
  cat >"$conf" <<EOF
# Written by tests/slurm/cluster.sh: a private cluster, everything under $dir.
ClusterName=adaspantest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after ~11 s instead of 120 s.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmctldLogFile=$dir/log/slurmctld.log
# debug2 logs each time-limit check ("Testing job time limits", every 30 s): the time-limit test
# reads their phase, since --signal=USR1@N fires only at one of them.
SlurmctldDebug=debug2
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdSpoolDir=$dir/spool/%n
# Each virtual node its own TmpFS, or the second node's PMIx server fails with "File exists".
TmpFS=$dir/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=bf_interval=1,sched_interval=1
# The nodes claim CPUs=$cpus whatever the host has.
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=pmix
KillWait=5
# sbatch --wait polls every 2 s only when MinJobAge <= 5 (else 8 s, then 32 s); a finished job's
# record is kept at least 5 s, and the tests read it as soon as sbatch returns.
MinJobAge=5
NodeName=n[1-$nodes] NodeHostname=$host NodeAddr=127.0.0.1 Port=${node_ports// /,} CPUs=$cpus RealMemory=1000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# Waits up to $1 seconds for `sinfo` to show $2 idle nodes.
wait_idle() {
  local deadline=$((SECONDS + $1)) state
  while [ $SECONDS -lt "$deadline" ]; do
    state=$(sinfo -h -o '%D %T' 2>/dev/null || true)
    [ "$state" = "$2 idle" ] && return 0
    sleep 0.2
  done
  echo "cluster.sh: the nodes are not idle after $1 s (sinfo: '${state:-no answer}'); logs in $dir/log" >&2
  return 1
}

up() {
  local nodes=${1:-2} cpus=${2:-2} i
  [ "$(id -u)" -eq 0 ] || unavailable "needs root (slurmd runs the jobs)"
  for tool in munged mungekey slurmctld slurmd sbatch srun scontrol sinfo; do
    command -v "$tool" >/dev/null || unavailable "$tool not found: no Slurm or munge (scripts/setup.sh installs them)"
  done
  if [ -f "$dir/pids" ]; then
    echo "cluster.sh: $dir holds a cluster already; stopping it first" >&2
    down
  fi
  rm -rf "$dir"
  mkdir -p "$dir"/{munge,state,run,log}
  for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/n$i" "$dir/tmp/n$i"; done
  chmod 755 "$dir"
  chmod 711 "$dir/munge"  # munged refuses a socket directory others can write to or list
  mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null
  munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
  echo "munged $(cat "$dir/munge/munged.pid")" >"$dir/pids"
  write_conf "$nodes" "$cpus"

  # In the foreground (-D) in sessions of their own: their PIDs are known and stay theirs.
  setsid slurmctld -D -f "$conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$dir/pids"
  for i in $(seq 1 "$nodes"); do
    setsid slurmd -D -N "n$i" -f "$conf" </dev/null >>"$dir/log/slurmd-n$i.out" 2>&1 &
    echo "slurmd $!" >>"$dir/pids"
  done
  if ! wait_idle 30 "$nodes"; then
    down
    exit 1
  fi
  echo "cluster.sh: $nodes nodes x $cpus CPUs idle in $SECONDS s; SLURM_CONF=$conf"
}

# True while any of the PIDs is alive.
any_alive() {
  local pid
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

down() {
  [ -f "$dir/pids" ] || { echo "cluster.sh: no cluster in $dir"; return 0; }
  local daemons munged_pid pid proc deadline environ
  mapfile -t daemons < <(awk '$1 != "munged" {print $2}' "$dir/pids")
  munged_pid=$(awk '$1 == "munged" {print $2}' "$dir/pids")
  # The jobs first, so that no step outlives its slurmd (KillWait=5 s, then SIGKILL).
  if any_alive "${daemons[@]}" && squeue -h -o %i >/dev/null 2>&1; then
    squeue -h -o %i | xargs -r scancel --full 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while [ -n "$(squeue -h -o %i 2>/dev/null | head -1)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.3; done
    scontrol shutdown 2>/dev/null || true
  fi
  deadline=$((SECONDS + 15))
  while any_alive "${daemons[@]}" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  for pid in "${daemons[@]}"; do
    kill -0 "$pid" 2>/dev/null && { echo "cluster.sh: pid $pid did not stop: killing it" >&2; kill -9 "$pid"; }
  done
  # Left behind (a step that ignored KillWait): this cluster's slurmstepds and job processes, known
  # by their environment (SLURM_CONF is this cluster's; a job's processes also have SLURM_JOB_ID).
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    environ=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ") || continue
    grep -qx "SLURM_CONF=$conf" <<<"$environ" || continue
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ] || grep -q '^SLURM_JOB_ID=' <<<"$environ"; then
      echo "cluster.sh: killing leftover $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") (pid $pid)" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "$munged_pid" ]; then
    munged --stop --socket="$dir/munge/munge.socket" >/dev/null 2>&1 || true
    deadline=$((SECONDS + 5))
    while any_alive "$munged_pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -0 "$munged_pid" 2>/dev/null && kill -9 "$munged_pid"
  fi
  rm -f "$dir/pids"
  echo "cluster.sh: stopped the cluster in $dir"
}

case $action in
  up) up "${3:-2}" "${4:-2}" ;;
  down) down ;;
  *) usage ;;
esac
