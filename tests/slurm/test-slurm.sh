#!/usr/bin/env bash
# The jobscripts under a real Slurm: a one-node cluster of the test's own
# (tests/slurm/cluster.sh: munged, slurmctld, slurmd), run by meson, one case per test.
#   jobs        every app's jobscripts/*.sbatch submitted as a user would, with tiny
#               configs: pretrain, ulysses-train, rlhf (all three steps), fedsim, cl-edge,
#               and infer-serve on pretrain's checkpoint (a completion over HTTP on
#               127.0.0.1, then SIGUSR1 from scancel drains it and the job completes);
#               each job COMPLETED with exit code 0 and its outputs in place
#   time_limit  pretrain given a 1-minute limit with --signal=USR1@50 and more work than
#               fits: Slurm signals it, it checkpoints and exits 75, the script requeues it,
#               and after as many allocations as needed the losses equal an uninterrupted
#               mpirun run bit for bit
# Each waits with a bounded timeout and stops every daemon it started. SKIP (77) where
# this machine cannot run Slurm (not root, or slurm-wlm and munge not installed).
# Usage: test-slurm.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi
source "$source/tests/slurm/cluster.sh"  # slurm_up, slurm_down
work=$build/tests/slurm-work/$case_name
export OMP_NUM_THREADS=1
export TURBINE_BUILD=$build  # the jobscripts' build folder
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/jobs"
trap 'slurm_down "$work/cluster"' EXIT
export SLURM_CONF=$work/cluster/slurm.conf  # slurm_up writes it (in a subshell here)
if ! why=$(slurm_up "$work/cluster"); then
  status=$?
  [[ $status -eq 2 ]] && { echo "SKIP: no Slurm here: $why"; exit 77; }
  fail "the test cluster did not start: $why"
fi
"$source/tests/pretrain/fixture.sh" "$build/tests/pretrain-work"
tokens=$build/tests/pretrain-work/data.h5

# submit NAME SBATCH_OPTIONS... -- SCRIPT ARGS...: sbatch from the source tree (the
# scripts run in the submit folder), output in $work/jobs/NAME.out; prints the job id.
submit() {
  local name=$1
  shift
  (cd "$source" && sbatch --parsable --output="$work/jobs/$name.out" --job-name="$name" "$@")
}
# state ID: the job's state and exit code, "COMPLETED 0:0".
state() {
  local s try
  for try in 1 2 3 4 5; do  # scontrol may time out on a loaded machine
    s=$(scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | awk -F= '$1 == "JobState" {s = $2}
      $1 == "ExitCode" {e = $2} END {if (s != "") print s, e}')
    [[ -n $s ]] && break
    sleep 1
  done
  echo "$s"
}
# alive ID: the job has not ended. Only a final state counts as ended: a state that
# cannot be read (scontrol timing out on a loaded machine) or a passing one (a requeue
# going through) is still alive.
alive() {
  case $(state "$1") in
    COMPLETED* | FAILED* | CANCELLED* | TIMEOUT* | NODE_FAIL* | OUT_OF_MEMORY* | BOOT_FAIL* | \
      DEADLINE*) return 1 ;;
  esac
  return 0
}
# wait_jobs SECONDS ID...: until every job has ended (requeued jobs are released at once
# instead of waiting out Slurm's begin-time delay); 1 if time runs out.
wait_jobs() {
  local deadline=$((SECONDS + $1)) id
  shift
  local ended_polls=0
  local -A pending_since=()
  while true; do
    local running=0
    for id in "$@"; do
      if alive "$id"; then running=1; fi
    done
    # Ended on three polls in a row: a job being requeued may pass through a final state.
    if ((running)); then ended_polls=0; else ended_polls=$((ended_polls + 1)); fi
    ((ended_polls < 3)) || return 0
    ((SECONDS < deadline)) || return 1
    # A requeued job waits out Slurm's begin-time delay; released after 5 s instead (sooner,
    # and slurmd refuses the new start as "credential revoked": it must be a later second
    # than the old instance's end).
    for id in $(squeue -h -t PENDING -o '%i %r' | awk '$2 == "BeginTime" {print $1}'); do
      : "${pending_since[$id]:=$SECONDS}"
      if ((SECONDS - pending_since[$id] >= 5)); then
        scontrol update JobId="$id" StartTime=now 2> /dev/null || true
        unset "pending_since[$id]"
      fi
    done
    sleep 1
  done
}
# completed NAME ID: the job ended COMPLETED with exit code 0, else FAIL with its output.
completed() {
  local s
  s=$(state "$2")
  [[ $s == "COMPLETED 0:0" ]] || fail "$1 (job $2): $s: $(grep -v '^step [0-9]*/' "$work/jobs/$1.out" | tail -5)"
}

case $case_name in
  jobs)
    data_fashion=$("$source/tests/fedsim/fixture.sh" "$build/tests/fedsim-work")
    "$source/tests/rlhf/fixture.sh" "$build/tests/rlhf-work"
    rlhf_work=$build/tests/rlhf-work
    start=$SECONDS
    pretrain=$(submit pretrain --ntasks-per-node=2 --time=10 jobscripts/pretrain.sbatch \
      configs/pretrain/tiny.yaml --set data.path="$tokens" --set output.dir="$work/pretrain")
    ulysses=$(submit ulysses --ntasks-per-node=2 --time=10 jobscripts/ulysses.sbatch \
      configs/ulysses/tiny.yaml --set data.path="$tokens" --set output.dir="$work/ulysses" \
      --set sequence_parallel_size=2)
    rlhf=$(submit rlhf --ntasks-per-node=2 --time=10 jobscripts/rlhf.sbatch all \
      configs/rlhf/tiny.yaml --set data_path="$rlhf_work/pairs" \
      --set model_name_or_path="$rlhf_work/pretrained" --set scheduler.params.total_num_steps=8 \
      --set output.dir="$work/rlhf")
    fedsim=$(submit fedsim --ntasks-per-node=3 --time=10 jobscripts/fedsim.sbatch run \
      configs/fedsim/fashion-fedavg.yaml --set data.path="$data_fashion" \
      --set federation.num_clients=10 --set federation.fraction_fit=0.3 --set federation.rounds=2 \
      --set local.max_steps=3 --set eval.interval=2 --set eval.batch=200 \
      --set budget.worker_cores=1 --set output.dir="$work/fedsim")
    cl_edge=$(submit cl-edge --cpus-per-task=1 --time=10 jobscripts/cl-edge.sbatch \
      configs/cl-edge/split-fashion.yaml --set data.path="$data_fashion" \
      --set stream.train_per_task=100 --set stream.test_per_task=100 \
      --set memory.rb_size=50 --set memory.st_size=200 --set miro.rb_sizes=[50] \
      --set miro.st_sizes=[200] --set miro.swap_ratios=[0.1] --set miro.profile_iterations=2 \
      --set miro.cutline=2 --set miro.step_seconds=0.001 \
      --set energy.devices_dir="$source/configs/devices" --set output.dir="$work/cl-edge")
    wait_jobs 600 "$pretrain" "$ulysses" "$rlhf" "$fedsim" "$cl_edge" ||
      fail "jobs still running after 600 s: $(squeue)"
    completed pretrain "$pretrain"
    [[ -f $work/pretrain/checkpoints/step_00000020/checksums.json ]] || fail "pretrain: no final checkpoint"
    grep -q "2 data-parallel ranks" "$work/jobs/pretrain.out" || fail "pretrain did not run on 2 ranks"
    completed ulysses "$ulysses"
    grep -q '"step":' "$work/ulysses/metrics.jsonl" || fail "ulysses: no metrics"
    completed rlhf "$rlhf"
    ls "$work"/rlhf/ppo/checkpoints/step_* > /dev/null 2>&1 || fail "rlhf: no PPO checkpoint"
    completed fedsim "$fedsim"
    [[ -s $work/fedsim/metrics.jsonl ]] || fail "fedsim: no metrics"
    completed cl-edge "$cl_edge"
    [[ -f $work/cl-edge/summary.json ]] || fail "cl-edge: no summary.json"
    echo "  pretrain, ulysses-train, rlhf all, fedsim run, cl-edge: COMPLETED 0:0 in $((SECONDS - start)) s"

    # The server on pretrain's checkpoint, on loopback only; SIGUSR1 drains it.
    port=$((20000 + RANDOM % 20000))
    serve=$(submit infer-serve --ntasks=2 --time=10 jobscripts/infer-serve.sbatch \
      "$work/pretrain/checkpoints/step_00000020" --host 127.0.0.1 --port "$port")
    deadline=$((SECONDS + 120))
    until curl -sf --max-time 5 "http://127.0.0.1:$port/health" > /dev/null 2>&1; do
      ((SECONDS < deadline)) || fail "infer-serve was not ready in 120 s: $(tail -5 "$work/jobs/infer-serve.out")"
      alive "$serve" || fail "infer-serve ended: $(state "$serve"): $(tail -5 "$work/jobs/infer-serve.out")"
      sleep 0.5
    done
    reply=$(curl -sS --max-time 60 "http://127.0.0.1:$port/v1/completions" \
      -H 'Content-Type: application/json' \
      -d '{"prompt": "In the beginning", "max_tokens": 8, "temperature": 0}') ||
      fail "no reply from infer-serve"
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["choices"][0]["text"], r' \
      "$reply" || fail "bad completion: $reply"
    scancel --signal=USR1 "$serve"
    wait_jobs 120 "$serve" || fail "infer-serve did not drain and exit after SIGUSR1"
    completed infer-serve "$serve"
    echo "  infer-serve on 2 tasks: a completion over HTTP, then SIGUSR1 drained it: COMPLETED 0:0"
    ;;
  time_limit)
    # About a minute of work on an idle 2-core machine: Slurm's pre-limit signal (it checks
    # limits every 30 s) comes 10 to 40 s into each allocation, so a run needs several.
    steps=(--set train_steps=6000 --set model.hidden_size=64 --set steps_per_print=500
           --set eval.interval=1000 --set checkpoint.interval=2000)
    run_mpi 2 "$build/apps/pretrain" --config "$source/configs/pretrain/tiny.yaml" \
      --set data.path="$tokens" --set output.dir="$work/whole" "${steps[@]}" \
      > "$work/whole.log" 2>&1 || fail "uninterrupted run"
    start=$SECONDS
    job=$(submit limited --ntasks-per-node=2 --time=1 --signal=USR1@50 jobscripts/pretrain.sbatch \
      configs/pretrain/tiny.yaml --set data.path="$tokens" --set output.dir="$work/limited" \
      "${steps[@]}")
    wait_jobs 480 "$job" || fail "the job did not finish in 480 s: $(state "$job")"
    completed limited "$job"
    out=$work/jobs/limited.out
    stops=$(grep -c "stopped at step .* on request (SIGUSR1)" "$out" || true)
    requeues=$(grep -c "turbine: requeueing job" "$out" || true)
    ((stops >= 1 && requeues == stops)) || fail "expected SIGUSR1 stops and as many requeues: $stops, $requeues"
    grep -q "done: 6000 steps" "$out" || fail "the run did not finish"
    python3 "$source/tests/parallel/equivalence.py" losses "$work/whole" "$work/limited" 0 ||
      fail "losses across the requeues differ from the uninterrupted run"
    echo "  1-minute limit: $stops SIGUSR1 stop(s) at steps" \
      "$(grep -o 'stopped at step [0-9]*' "$out" | awk '{print $4}' | tr '\n' ' ')," \
      "$requeues requeue(s), $(grep -c 'resumed from' "$out") resume(s), done in" \
      "$((SECONDS - start)) s; all 6000 losses equal the uninterrupted run"
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
echo "OK: $case_name"
