# The body of the training jobs' Slurm scripts (pretrain.sbatch, rlhf.sbatch, fedsim.sbatch,
# ulysses.sbatch), sourced from the submit directory: train_job APP CONFIG
# [--set key=value ...] launches build/apps/APP on every task with --resume,
# and requeues the job when the app stopped before the time limit with a
# checkpoint (exit status 75), so a long run spans as many allocations as it
# needs. One MPI rank per task; threads per rank from --cpus-per-task.
# Launcher: srun by default; LAUNCHER=mpirun uses Open MPI's (it forwards
# SIGUSR1 to the ranks too). TURBINE_BUILD: the build folder (default build).
# A rank lost mid-run (its node died or froze: the job's heartbeat ends it with
# exit status 69) requeues the job too, at most TURBINE_MAX_REQUEUES times
# (default 3) for lost ranks, so a run resumes from its newest complete
# checkpoint without a person; srun ends the step at once when a task dies
# (--kill-on-bad-exit).
train_job() {
  local app=${1:?train_job APP CONFIG [ARGS...]} config=${2:?usage: sbatch jobscripts/$1.sbatch CONFIG [--set key=value ...]}
  shift 2
  local build=${TURBINE_BUILD:-build}
  export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
  local status=0
  if [[ ${LAUNCHER:-srun} == mpirun ]]; then
    mpirun --bind-to none "$build/apps/$app" --config "$config" --resume "$@" || status=$?
  else
    srun --cpu-bind=cores --kill-on-bad-exit=1 "$build/apps/$app" --config "$config" --resume "$@" ||
      status=$?
  fi
  if [[ $status -eq 75 ]]; then  # stopped before the time limit with a checkpoint
    echo "turbine: requeueing job $SLURM_JOB_ID; it resumes from its last checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
    return 0
  fi
  if [[ $status -eq 69 ]]; then  # a rank stopped answering: its node is suspect
    local count_file=.turbine-lost-ranks-$SLURM_JOB_ID count=0
    [[ -f $count_file ]] && count=$(cat "$count_file")
    if ((count < ${TURBINE_MAX_REQUEUES:-3})); then
      echo $((count + 1)) > "$count_file"
      echo "turbine: a rank was lost (exit status 69); requeueing job $SLURM_JOB_ID" \
        "($((count + 1)) of at most ${TURBINE_MAX_REQUEUES:-3} times); it resumes from its last" \
        "complete checkpoint"
      scontrol requeue "$SLURM_JOB_ID"
      return 0
    fi
    echo "turbine: a rank was lost again; $count requeues already: not requeueing" >&2
  fi
  return $status
}
