# Shared by the tools/ scripts and the shell tests; source it, don't run it:
#   source "$(dirname "$0")/lib/common.sh"
# It sets `turbine_root` (the source tree) and `build` (${TURBINE_BUILD:-build},
# made absolute against the source tree) unless the caller set `build` first,
# and defines:
#   build_if_stale [TARGET...]  run ninja on the targets (e.g. apps/pretrain; none:
#                               everything) only when `ninja -n` sees work; configure
#                               the build with tools/setup when there is none; on a
#                               failed build print ninja's output (the compiler
#                               errors) and exit 1
#   run_mpi NP ARGS...          mpirun -np NP with the project's flags (mpi_launcher)
#   mpi_launcher NP             set the array MPI_LAUNCHER to that command line, for
#                               callers that need mpirun's own pid ("${MPI_LAUNCHER[@]}" prog &)
#   metric FILE KEY [STEP|all]  a value from a run's metrics.jsonl (tools/lib/metrics.py)
turbine_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -z ${build:-} ]]; then
  build=${TURBINE_BUILD:-build}
  [[ $build == /* ]] || build=$turbine_root/$build
fi

build_if_stale() {
  if [[ ! -f $build/build.ninja ]]; then
    (cd "$turbine_root" && TURBINE_BUILD=$build tools/setup) >&2 || exit 1
  fi
  if ninja -C "$build" -n "$@" 2>/dev/null | grep -q 'no work to do'; then
    return 0
  fi
  echo "building ${*:-everything} in $build ..." >&2
  local log
  if ! log=$(ninja -C "$build" "$@" 2>&1); then
    # ninja prints each failed command's compiler output after its FAILED: line.
    echo "$log" | sed -n '/^FAILED: /,$p' | grep -v '^ninja: build stopped' >&2 ||
      echo "$log" >&2
    echo "$(basename "$0"): the build failed (errors above)" >&2
    exit 1
  fi
}

# Ranks may exceed the cores (--oversubscribe) and are not pinned (--bind-to none:
# pinned ranks fight over a core when oversubscribed); each rank gets an equal share
# of the cores as OpenMP threads unless OMP_NUM_THREADS is set. Open MPI refuses root
# without its two variables, so they are set for root only.
mpi_launcher() {
  local np=$1
  local threads=${OMP_NUM_THREADS:-$(($(nproc) / np > 0 ? $(nproc) / np : 1))}
  MPI_LAUNCHER=(env OMP_NUM_THREADS="$threads")
  if [[ $(id -u) -eq 0 ]]; then
    MPI_LAUNCHER+=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
  fi
  MPI_LAUNCHER+=(mpirun -np "$np" --oversubscribe --bind-to none)
}

run_mpi() {
  local np=${1:?run_mpi NP ARGS...}
  shift
  mpi_launcher "$np"
  "${MPI_LAUNCHER[@]}" "$@"
}

metric() {
  python3 "$turbine_root/tools/lib/metrics.py" "$@"
}
