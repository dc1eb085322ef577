#!/usr/bin/env bash
# pretrain on this machine with mpirun: NP ranks (default 2), the cores split
# evenly among them as OpenMP threads.
#   jobscripts/pretrain-local.sh CONFIG [--set key=value ...]      NP=4 jobscripts/pretrain-local.sh ...
set -euo pipefail
config=${1:?usage: jobscripts/pretrain-local.sh CONFIG [--set key=value ...]}
shift
cd "$(dirname "$0")/.."
build=${TURBINE_BUILD:-build}
np=${NP:-2}
cores=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec mpirun -np "$np" --oversubscribe --bind-to none "$build/apps/pretrain" --config "$config" "$@"
