#!/usr/bin/env bash
# Faults injected into real pretrain jobs, run by meson (one case per test):
#   dead_rank   a rank stopped (SIGSTOP) or killed (SIGKILL) mid-run, rank 0 or not, ends the
#               whole job within the heartbeat timeout (3 s here), naming the rank and its
#               host, with exit status 69 (stopped) or mpirun's 137 (killed); the checkpoints
#               are complete and --resume ends with the losses of an uninterrupted run
# Every case prints what it injected and how long the job took to notice.
# Usage: test-reliability.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi, mpi_launcher
work=$build/tests/reliability-work/$case_name
data=$build/tests/pretrain-work
export OMP_NUM_THREADS=1
export TURBINE_HEARTBEAT_TIMEOUT=3
pretrain=$build/apps/pretrain
config=$source/configs/pretrain/tiny.yaml

fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
"$source/tests/pretrain/fixture.sh" "$data"

steps=(--set train_steps=600 --set checkpoint.interval=100 --set eval.interval=100
       --set steps_per_print=100)
# args OUT: the arguments of a run into $work/OUT.
args() {
  echo --config "$config" --set data.path="$data/data.h5" --set output.dir="$work/$1" "${steps[@]}"
}
# losses_equal A B: every step's losses of two runs are the same bits.
losses_equal() { python3 "$source/tests/parallel/equivalence.py" losses "$work/$1" "$work/$2" 0; }
# rank_pid OUT RANK: the pid of that rank of the job writing into $work/OUT.
rank_pid() {
  local p
  for p in $(pgrep -f -- "output.dir=$work/$1 "); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
# wait_for PATH SECONDS: until PATH exists (1 if it does not in time).
wait_for() {
  local deadline=$((SECONDS + $2))
  while [[ ! -e $1 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}
# complete_checkpoints OUT: every step_* folder of the run has its trainer.h5 (nothing
# half-written looks whole); prints their names.
complete_checkpoints() {
  local dir
  for dir in "$work/$1"/checkpoints/step_*; do
    [[ -f $dir/trainer.h5 ]] || fail "$dir looks whole but has no trainer.h5"
    basename "$dir"
  done
}
stray=()
cleanup() {
  local p
  for p in "${stray[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

case $case_name in
  dead_rank)
    # shellcheck disable=SC2046
    run_mpi 2 "$pretrain" $(args whole) > "$work/whole.log" 2>&1 || fail "uninterrupted run"
    for fault in STOP:1 STOP:0 KILL:1; do
      sig=${fault%:*} rank=${fault#*:} out=${fault/:/-rank}
      mpi_launcher 2
      # shellcheck disable=SC2046
      "${MPI_LAUNCHER[@]}" -x TURBINE_HEARTBEAT_TIMEOUT "$pretrain" $(args "$out") \
        > "$work/$out.log" 2>&1 &
      job=$!
      wait_for "$work/$out/checkpoints/step_00000100" 120 || fail "$out: no checkpoint at step 100"
      victim=$(rank_pid "$out" "$rank") || fail "$out: rank $rank not found"
      stray+=("$victim")
      start=$(date +%s.%N)
      kill -"$sig" "$victim"
      rc=0
      # Bounded: the job must end by itself well within this.
      timeout 60 tail --pid="$job" -f /dev/null || fail "$out: the job still runs 60 s after SIG$sig"
      wait "$job" || rc=$?
      took=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
      [[ -e $work/$out/metrics.jsonl ]] || fail "$out: no metrics"
      if grep -q '"step": 600' "$work/$out/metrics.jsonl"; then
        fail "$out: the run finished before the fault; make it longer"
      fi
      host=$(hostname)
      if [[ $sig == STOP ]]; then
        [[ $rc -eq 69 ]] || fail "$out: exit status $rc, not 69 (rank lost): $(tail -3 "$work/$out.log")"
        grep -q "rank $rank (host $host, pid $victim) has not answered" "$work/$out.log" ||
          fail "$out: the message does not name rank $rank on $host: $(grep -i error "$work/$out.log")"
      else
        [[ $rc -ne 0 && $rc -ne 69 && $rc -ne 75 ]] || fail "$out: exit status $rc"
        grep -q "process rank $rank .* on node $host exited on signal 9" "$work/$out.log" ||
          fail "$out: mpirun does not name rank $rank on $host"
      fi
      kept=$(complete_checkpoints "$out" | tr '\n' ' ')
      [[ -n $kept ]] || fail "$out: no complete checkpoint"
      # shellcheck disable=SC2046
      run_mpi 2 "$pretrain" $(args "$out") --resume > "$work/$out-resume.log" 2>&1 ||
        fail "$out: resume: $(tail -3 "$work/$out-resume.log")"
      resumed=$(sed -n 's|.*resumed from .*/\(step_[0-9]*\) .*|\1|p' "$work/$out-resume.log" | head -1)
      losses_equal whole "$out" || fail "$out: losses after resume differ from the uninterrupted run"
      echo "  SIG$sig to rank $rank: job ended in $took s, exit status $rc; complete checkpoints:" \
        "$kept; resumed from $resumed, all 600 steps' losses equal the uninterrupted run"
    done
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
echo "OK: $case_name"
