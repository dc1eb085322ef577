#!/usr/bin/env bash
# A one-node Slurm cluster of its own in a folder, for the tests: a private
# munged (its own key and socket), slurmctld and slurmd with a generated
# slurm.conf naming this host, all state, logs and pid files in the folder.
# Nothing of the machine's own Slurm or munge is used or changed.
#   source tests/slurm/cluster.sh
#   slurm_up DIR || skip      starts it (returns 2 with a reason when this machine cannot:
#                             not root, Slurm or munge not installed); exports
#                             SLURM_CONF=DIR/slurm.conf (export it yourself when calling
#                             slurm_up in a subshell) for sbatch, squeue, scontrol
#   slurm_down DIR            stops every daemon it started (also safe when up failed)
# Needs Debian's slurm-wlm and munge (tools/setup installs them).

# slurm_up DIR: start the cluster; prints why not and returns 2 when it cannot run here.
slurm_up() {
  local dir=${1:?slurm_up DIR}
  local cmd
  for cmd in munged slurmctld slurmd sbatch squeue scontrol; do
    if ! command -v "$cmd" > /dev/null && [[ ! -x /usr/sbin/$cmd ]]; then
      echo "no $cmd: install Debian's slurm-wlm and munge (tools/setup)"
      return 2
    fi
  done
  if [[ $(id -u) -ne 0 ]]; then
    echo "slurmd must run as root to start jobs as their user"
    return 2
  fi
  mkdir -p "$dir"/{state,spool,munge}
  chmod 700 "$dir/munge"
  local host
  host=$(hostname -s)
  # Ports of our own, away from a system Slurm's 6817/6818.
  local base=$((17000 + RANDOM % 2000))
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  /usr/sbin/munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" || { echo "munged did not start"; return 1; }
  local cpus memory
  # At least 4 CPUs, so jobs of up to 4 tasks run on a small machine (as mpirun
  # --oversubscribe would; nproc --all: plain nproc follows OMP_NUM_THREADS).
  cpus=$(nproc --all)
  ((cpus >= 4)) || cpus=4
  memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
  cat > "$dir/slurm.conf" <<EOF
ClusterName=turbine-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$base
SlurmdPort=$((base + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=10
MinJobAge=600
# A job given back with scontrol requeue may start again at once.
SchedulerParameters=nohold_on_prolog_fail
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  # PMIx's per-step folders in ours, not /tmp (job ids start at 1 in every cluster).
  mkdir -p "$dir/pmix"
  echo "PMIxCliTmpDirBase=$dir/pmix" > "$dir/mpi.conf"
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -f "$SLURM_CONF" || { echo "slurmctld did not start: $(tail -3 "$dir/slurmctld.log")"; return 1; }
  /usr/sbin/slurmd -f "$SLURM_CONF" || { echo "slurmd did not start: $(tail -3 "$dir/slurmd.log")"; return 1; }
  local deadline=$((SECONDS + 60))
  until sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; do
    if ((SECONDS > deadline)); then
      echo "the node did not come up: $(sinfo 2>&1 | tail -2); $(tail -3 "$dir/slurmd.log")"
      return 1
    fi
    sleep 0.5
  done
}

# slurm_down DIR: stop what slurm_up started, waiting for each to exit.
slurm_down() {
  local dir=${1:?slurm_down DIR} pidfile pid
  # Jobs first (a failed test may leave some running), so no task outlives the cluster.
  if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$dir/slurm.conf scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 30); do
      [[ -z $(SLURM_CONF=$dir/slurm.conf squeue -h 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
