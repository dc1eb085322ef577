# The body of the training jobs' Slurm scripts (pretrain.sbatch, rlhf.sbatch, fedsim.sbatch,
# ulysses.sbatch), sourced from the submit directory: train_job APP CONFIG
# [--set key=value ...] launches build/apps/APP on every task with --resume,
# and requeues the job when the app stopped before the time limit with a
# checkpoint (exit status 75), so a long run spans as many allocations as it
# needs. One MPI rank per task; threads per rank from --cpus-per-task.
# Launcher: srun by default; LAUNCHER=mpirun uses Open MPI's (it forwards
# SIGUSR1 to the ranks too). TURBINE_BUILD: the build folder (default build).
train_job() {
  local app=${1:?train_job APP CONFIG [ARGS...]} config=${2:?usage: sbatch jobscripts/$1.sbatch CONFIG [--set key=value ...]}
  shift 2
  local build=${TURBINE_BUILD:-build}
  export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
  local status=0
  if [[ ${LAUNCHER:-srun} == mpirun ]]; then
    mpirun --bind-to none "$build/apps/$app" --config "$config" --resume "$@" || status=$?
  else
    srun --cpu-bind=cores "$build/apps/$app" --config "$config" --resume "$@" || status=$?
  fi
  if [[ $status -eq 75 ]]; then  # stopped before the time limit with a checkpoint
    echo "turbine: requeueing job $SLURM_JOB_ID; it resumes from its last checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
    return 0
  fi
  return $status
}
