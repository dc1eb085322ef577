#!/usr/bin/env bash
# Faults injected into real pretrain jobs, run by meson (one case per test):
#   dead_rank   a rank stopped (SIGSTOP) or killed (SIGKILL) mid-run, rank 0 or not, ends the
#               whole job within the heartbeat timeout (3 s here), naming the rank and its
#               host, with exit status 69 (stopped) or mpirun's 137 (killed); the checkpoints
#               are complete and --resume ends with the losses of an uninterrupted run
#   full_disk   output on a small tmpfs: the checkpoint that does not fit is refused before a
#               byte is written (the bytes needed and free named), the metrics write into a
#               disk filled meanwhile fails naming the file, the step and the cause; the
#               newest checkpoint passes its checksums and --resume (with room) ends with the
#               uninterrupted run's losses
#   read_only   the output folder turned read-only mid-run: the run stops naming the
#               cause; made writable again, --resume ends with the uninterrupted losses; a run
#               into a read-only folder is refused at the start
#   deleted     the checkpoints folder and the metrics file deleted mid-run: both are started
#               again with a warning and the run finishes with complete checkpoints
#   two_hosts   two network namespaces joined by a veth pair, each its own hostname: Open MPI
#               launches a rank in each over TCP only (no shared memory; netns-agent.sh, an
#               ssh stand-in, enters the other namespace), and the 2-host pretrain equals the
#               1-host run bit for bit; a rank stopped on the second host is named with it
#   apps_dead_rank  the heartbeat is every app's (train::Job): a rank stopped (SIGSTOP) in
#               ulysses-train, rlhf sft, fedsim (a worker) and the server (infer serve,
#               tensor parallel on 2 ranks) ends each job with 69 naming the rank; cl-edge
#               runs on one rank and has no peer to lose
#   corrupt     a byte flipped in the newest checkpoint (and one truncated file in the one
#               before): --resume says which file is damaged, falls back to the newest intact
#               checkpoint, and ends with the uninterrupted run's losses
# Every case prints what it injected and how long the job took to notice. The file-system
# cases mount tmpfs and need root (SKIP otherwise).
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
stray=() mounts=() namespaces=()
cleanup() {
  local p m n
  for p in "${stray[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
# small_disk DIR SIZE: a tmpfs of SIZE (mount's k/m units) at $work/DIR; SKIP without root.
small_disk() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: $case_name mounts a tmpfs, which needs root"
    exit 77
  fi
  mkdir -p "$work/$1"
  mount -t tmpfs -o "size=$2" tmpfs "$work/$1" || { echo "SKIP: cannot mount a tmpfs"; exit 77; }
  mounts+=("$work/$1")
}
# read_only DIR: DIR read-only through a bind mount over it; SKIP without root.
read_only() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: $case_name makes a read-only bind mount, which needs root"
    exit 77
  fi
  mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || { echo "SKIP: cannot bind-mount"; exit 77; }
  mounts+=("$1")
}
# run NP OUT [ARGS...]: a pretrain run into $work/OUT, its log in $work/OUT.log (OUT may be
# a path under $work); the exit status is the job's.
run() {
  local np=$1 out=$2
  shift 2
  # shellcheck disable=SC2046
  run_mpi "$np" "$pretrain" $(args "$out") "$@" > "$work/${out//\//-}.log" 2>&1
}
log_of() { echo "$work/${1//\//-}.log"; }
# launch OUT: a 2-rank pretrain into $work/OUT in the background; $job is mpirun's pid.
launch() {
  mpi_launcher 2
  # shellcheck disable=SC2046
  "${MPI_LAUNCHER[@]}" -x TURBINE_HEARTBEAT_TIMEOUT "$pretrain" $(args "$1") > "$(log_of "$1")" 2>&1 &
  job=$!
}
# ended_after FAULT: waits for $job to end by itself (at most 60 s, else FAIL naming the
# fault); sets rc (its exit status) and took (seconds since $start, the fault's time).
ended_after() {
  rc=0
  timeout 60 tail --pid="$job" -f /dev/null || fail "the job still runs 60 s after $1"
  wait "$job" || rc=$?
  took=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
}
# one_line LOG PATTERN: the first line of LOG matching PATTERN, for the case's report.
one_line() { grep -m1 -- "$2" "$1" | sed 's/^\[rank [0-9]*\] //' | cut -c1-400; }

# stop_a_rank NAME NP RANK READY COMMAND...: COMMAND on NP ranks in the background (its
# log $work/NAME.log) until READY (a command) succeeds, then SIGSTOP to rank RANK: the job
# must end by itself with 69 and name the rank, its host and pid.
stop_a_rank() {
  local name=$1 np=$2 rank=$3 ready=$4 deadline p victim=""
  shift 4
  mpi_launcher "$np"
  TURBINE_TEST_JOB=$name "${MPI_LAUNCHER[@]}" -x TURBINE_HEARTBEAT_TIMEOUT -x TURBINE_TEST_JOB \
    "$@" > "$work/$name.log" 2>&1 &
  job=$!
  deadline=$((SECONDS + 180))
  until eval "$ready"; do
    kill -0 "$job" 2>/dev/null || fail "$name ended before the fault: $(tail -3 "$work/$name.log")"
    ((SECONDS < deadline)) || fail "$name: not ready in 180 s: $(tail -3 "$work/$name.log")"
    sleep 0.2
  done
  # The rank's process: the one with the job's mark and that rank in its environment.
  for p in $(grep -zlx "TURBINE_TEST_JOB=$name" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank"; then
      victim=$p
    fi
  done
  [[ -n $victim ]] || fail "$name: rank $rank not found"
  stray+=("$victim")
  start=$(date +%s.%N)
  kill -STOP "$victim"
  ended_after "SIGSTOP to $name's rank $rank"
  [[ $rc -eq 69 ]] || fail "$name: exit status $rc, not 69 (rank lost): $(tail -3 "$work/$name.log")"
  grep -q "rank $rank (host $(hostname), pid $victim) has not answered" "$work/$name.log" ||
    fail "$name: the message does not name rank $rank: $(grep -i "answered\|error" "$work/$name.log")"
  echo "  $name: SIGSTOP to rank $rank of $np ended the job in $took s, exit status 69"
}

case $case_name in
  apps_dead_rank)
    tokens=$data/data.h5
    fashion=$("$source/tests/fedsim/fixture.sh" "$build/tests/fedsim-work")
    rlhf_work=$build/tests/rlhf-work
    "$source/tests/rlhf/fixture.sh" "$rlhf_work"
    metrics_of() { echo "[[ -s $work/$1/metrics.jsonl ]]"; }
    stop_a_rank ulysses-train 2 1 "$(metrics_of ulysses)" "$build/apps/ulysses-train" \
      --config "$source/configs/ulysses/tiny.yaml" --set data.path="$tokens" \
      --set sequence_parallel_size=2 --set train_steps=100000 --set steps_per_print=1 \
      --set output.dir="$work/ulysses"
    stop_a_rank rlhf-sft 2 0 "$(metrics_of rlhf/sft)" "$build/apps/rlhf" \
      --config "$source/configs/rlhf/tiny.yaml" sft --set data_path="$rlhf_work/pairs" \
      --set model_name_or_path="$rlhf_work/pretrained" --set train_steps=100000 \
      --set steps_per_print=1 --set output.dir="$work/rlhf"
    stop_a_rank fedsim 3 2 "$(metrics_of fedsim)" "$build/apps/fedsim" \
      --config "$source/configs/fedsim/fashion-fedavg.yaml" run --set data.path="$fashion" \
      --set federation.num_clients=10 --set federation.fraction_fit=0.3 \
      --set federation.rounds=100000 --set local.max_steps=3 --set eval.interval=1 \
      --set eval.batch=200 --set budget.worker_cores=1 --set output.dir="$work/fedsim"
    port=$((20000 + RANDOM % 20000))
    stop_a_rank infer-serve 2 1 "curl -sf --max-time 2 http://127.0.0.1:$port/health > /dev/null" \
      "$build/apps/infer" serve --checkpoint "$build/tests/rlhf-work/pretrained" \
      --host 127.0.0.1 --port "$port"
    ;;
  dead_rank)
    # shellcheck disable=SC2046
    run_mpi 2 "$pretrain" $(args whole) > "$work/whole.log" 2>&1 || fail "uninterrupted run"
    for fault in STOP:1 STOP:0 KILL:1; do
      sig=${fault%:*} rank=${fault#*:} out=${fault/:/-rank}
      launch "$out"
      wait_for "$work/$out/checkpoints/step_00000100" 120 || fail "$out: no checkpoint at step 100"
      victim=$(rank_pid "$out" "$rank") || fail "$out: rank $rank not found"
      stray+=("$victim")
      start=$(date +%s.%N)
      kill -"$sig" "$victim"
      ended_after "SIG$sig to rank $rank"
      [[ -e $work/$out/metrics.jsonl ]] || fail "$out: no metrics"
      if grep -q '"step":600' "$work/$out/metrics.jsonl"; then
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
  full_disk)
    run 2 whole || fail "uninterrupted run"
    # 1. Room for one checkpoint (about 0.8 MB) and the metrics, not for a second one.
    small_disk small 1500k
    rc=0
    run 2 small/out || rc=$?
    log=$(log_of small/out)
    [[ $rc -ne 0 ]] || fail "a run that cannot checkpoint succeeded"
    grep -q "checkpoint step_00000200 abandoned: .* has only .* free.*it needs about" "$log" ||
      fail "no clear message: $(grep -i error "$log" | head -3)"
    [[ -z $(ls -A "$work/small/out/checkpoints" | grep -v '^step_00000100$') ]] ||
      fail "partial files left: $(ls -A "$work/small/out/checkpoints")"
    echo "  checkpoint that does not fit: $(one_line "$log" "abandoned")"
    # The kept checkpoint is whole: resumed on a disk with room, the losses are the same.
    cp -r "$work/small/out" "$work/roomy"
    run 2 roomy --resume || fail "resume from the kept checkpoint: $(tail -3 "$(log_of roomy)")"
    grep -q "resumed from .*step_00000100" "$(log_of roomy)" || fail "did not resume at 100"
    losses_equal whole roomy || fail "losses after resume differ"
    echo "  resumed from step_00000100 on a disk with room: all losses equal the uninterrupted run"
    # 2. The disk filled by someone else after the first checkpoint: the metrics write fails.
    small_disk small2 4m
    launch small2/out
    wait_for "$work/small2/out/checkpoints/step_00000100/checksums.json" 120 || fail "no checkpoint 100"
    start=$(date +%s.%N)
    dd if=/dev/zero of="$work/small2/filler" bs=64k > /dev/null 2>&1 || true
    ended_after "its disk filled"
    log=$(log_of small2/out)
    [[ $rc -ne 0 ]] || fail "a run whose disk filled succeeded"
    grep -Eq "metrics.jsonl: writing step [0-9]+'s metrics \([0-9]+ bytes\) failed: No space left on device \(the file system holding .* is full" "$log" ||
      grep -q "abandoned: .* has only" "$log" ||
      fail "no clear message: $(grep -i error "$log" | head -3)"
    echo "  disk filled mid-run: stopped in $took s: $(one_line "$log" "error")"
    rm -f "$work/small2/filler"
    verify_out=$(ls -d "$work"/small2/out/checkpoints/step_* | tail -1)
    run 2 small2/out --resume || fail "resume after freeing space: $(tail -3 "$(log_of small2/out)")"
    losses_equal whole small2/out || fail "losses after the full disk and resume differ"
    echo "  space freed: resumed from $(basename "$verify_out"), all losses equal the uninterrupted run"
    ;;
  read_only)
    run 2 whole || fail "uninterrupted run"
    mkdir -p "$work/disk/out"
    launch disk/out
    wait_for "$work/disk/out/checkpoints/step_00000200/checksums.json" 120 || fail "no checkpoint 200"
    start=$(date +%s.%N)
    # The folder read-only from now on: a read-only bind mount over it (a remount of the
    # file system would wait for the files the run has open).
    read_only "$work/disk"
    ended_after "its folder went read-only"
    log=$(log_of disk/out)
    [[ $rc -ne 0 ]] || fail "a run whose disk went read-only succeeded"
    grep -q "Read-only file system\|is read-only" "$log" || fail "no clear message: $(grep -i error "$log" | head -3)"
    echo "  output went read-only mid-run: stopped in $took s: $(one_line "$log" "error")"
    # A new run into the read-only folder is refused at once.
    rc=0
    run 1 disk/new || rc=$?
    [[ $rc -ne 0 ]] || fail "a run into a read-only folder succeeded"
    grep -q "Read-only file system\|is read-only" "$(log_of disk/new)" ||
      fail "no clear refusal: $(grep -i error "$(log_of disk/new)" | head -3)"
    echo "  new run into the read-only folder: $(one_line "$(log_of disk/new)" "error")"
    umount "$work/disk"
    run 2 disk/out --resume || fail "resume: $(tail -3 "$(log_of disk/out)")"
    losses_equal whole disk/out || fail "losses after resume differ"
    echo "  writable again: resumed, all losses equal the uninterrupted run"
    ;;
  deleted)
    launch out
    wait_for "$work/out/checkpoints/step_00000200/checksums.json" 120 || fail "no checkpoint 200"
    rm -rf "$work/out/checkpoints" "$work/out/metrics.jsonl"
    wait "$job" || fail "the run failed after its checkpoints folder was deleted: $(tail -3 "$(log_of out)")"
    grep -q "checkpoints was deleted while the run was writing into it: recreating it" "$(log_of out)" ||
      fail "no warning about the deleted checkpoints folder"
    grep -q "metrics.jsonl was deleted while the run was writing it" "$(log_of out)" ||
      fail "no warning about the deleted metrics file"
    complete_checkpoints out > /dev/null
    [[ -f $work/out/checkpoints/step_00000600/checksums.json ]] || fail "no final checkpoint"
    grep -q '"step":600' "$work/out/metrics.jsonl" || fail "metrics not written after the deletion"
    echo "  checkpoints folder and metrics deleted mid-run: $(one_line "$(log_of out)" "checkpoints was deleted")"
    echo "  the run finished: $(complete_checkpoints out | tr '\n' ' ')complete, metrics from step $(head -1 "$work/out/metrics.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')"
    ;;
  two_hosts)
    if [[ $(id -u) -ne 0 ]] || ! command -v ip > /dev/null || ! command -v unshare > /dev/null; then
      echo "SKIP: two_hosts makes network namespaces (ip netns, unshare), which needs root"
      exit 77
    fi
    run 2 whole || fail "1-host run"
    # Two "hosts": namespaces a and b, 10.203.N.1 and .2 on a veth pair (addresses of our
    # own namespaces only; nothing leaves this machine).
    ns_a=turbine-a-$$ ns_b=turbine-b-$$ net=10.203.$(($$ % 250))
    namespaces+=("$ns_a" "$ns_b")
    { ip netns add "$ns_a" && ip netns add "$ns_b"; } || { echo "SKIP: cannot make namespaces"; exit 77; }
    ip link add "va$$" type veth peer name "vb$$"
    ip link set "va$$" netns "$ns_a"
    ip link set "vb$$" netns "$ns_b"
    ip -n "$ns_a" addr add "$net.1/24" dev "va$$"
    ip -n "$ns_b" addr add "$net.2/24" dev "vb$$"
    for n in "$ns_a" "$ns_b"; do ip -n "$n" link set lo up; done
    ip -n "$ns_a" link set "va$$" up
    ip -n "$ns_b" link set "vb$$" up
    export TURBINE_NETNS_HOSTS="$net.1=$ns_a=turbine-host-a $net.2=$ns_b=turbine-host-b"
    # hosts_run OUT: pretrain with a rank on each host, mpirun on host a, TCP only.
    hosts_run() {
      # shellcheck disable=SC2046
      ip netns exec "$ns_a" unshare --uts sh -c 'hostname turbine-host-a; exec "$@"' sh \
        env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun -np 2 --host "$net.1:1,$net.2:1" --bind-to none \
        --mca plm_rsh_agent "$source/tests/reliability/netns-agent.sh" --mca btl tcp,self \
        --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
        -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS=1 \
        -x TURBINE_HEARTBEAT_TIMEOUT "$pretrain" $(args "$1") > "$work/$1.log" 2>&1
    }
    start=$SECONDS
    hosts_run hosts || fail "2-host run: $(tail -5 "$work/hosts.log")"
    grep -q "2 data-parallel ranks" "$work/hosts.log" || fail "the 2-host run did not have 2 ranks"
    losses_equal whole hosts || fail "the 2-host run's losses differ from the 1-host run"
    echo "  2 hosts (namespaces, TCP only): all 600 losses equal the 1-host run ($((SECONDS - start)) s)"
    # A rank stopped on the second host is named with it.
    hosts_run stopped &
    job=$!
    wait_for "$work/stopped/checkpoints/step_00000100" 60 || fail "no checkpoint at step 100"
    victim=$(rank_pid stopped 1) || fail "rank 1 not found"
    stray+=("$victim")
    start=$(date +%s.%N)
    kill -STOP "$victim"
    ended_after "SIGSTOP on the second host"
    [[ $rc -eq 69 ]] || fail "exit status $rc, not 69: $(tail -3 "$work/stopped.log")"
    grep -q "rank 1 (host turbine-host-b, pid $victim) has not answered" "$work/stopped.log" ||
      fail "the message does not name the second host: $(grep -i error "$work/stopped.log")"
    echo "  SIGSTOP to rank 1 on the second host: ended in $took s, exit status 69:" \
      "$(one_line "$work/stopped.log" "has not answered" | cut -c1-80)"
    ;;
  corrupt)
    keep_all=(--set checkpoint.keep=0)
    run 2 whole "${keep_all[@]}" || fail "uninterrupted run"
    cp -r "$work/whole" "$work/damaged"
    rm -rf "$work/damaged/checkpoints/step_00000600"
    # A flipped byte in the middle of step 500's weights, and step 400's optimizer shard cut short.
    python3 - "$work/damaged/checkpoints" <<'PY'
import os, sys
d = sys.argv[1]
path = os.path.join(d, "step_00000500", "model.h5")
with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x10]))
path = os.path.join(d, "step_00000400", "optimizer_rank00000.h5")
os.truncate(path, os.path.getsize(path) - 1000)
PY
    run 2 damaged --resume "${keep_all[@]}" || fail "resume past damaged checkpoints: $(tail -3 "$(log_of damaged)")"
    log=$(log_of damaged)
    grep -q "step_00000500 is damaged: model.h5 has CRC-32 .*, checksums.json says" "$log" ||
      fail "the flipped byte is not named: $(grep -i warn "$log" | head -3)"
    grep -q "step_00000400 is damaged: optimizer_rank00000.h5 has .* bytes, checksums.json says" "$log" ||
      fail "the truncated file is not named"
    grep -q "resumed from .*step_00000300" "$log" || fail "did not fall back to step 300"
    losses_equal whole damaged || fail "losses after the fallback differ"
    echo "  $(one_line "$log" "step_00000500 is damaged")"
    echo "  $(one_line "$log" "step_00000400 is damaged")"
    echo "  resumed from step_00000300: all losses equal the uninterrupted run"
    # Every checkpoint damaged: a clear error, nothing trained.
    cp -r "$work/damaged" "$work/all-damaged"
    for f in "$work"/all-damaged/checkpoints/step_*/trainer.h5; do printf 'x' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null; done
    rc=0
    run 2 all-damaged --resume "${keep_all[@]}" || rc=$?
    [[ $rc -ne 0 ]] || fail "a resume with every checkpoint damaged succeeded"
    grep -q "every checkpoint in .* is damaged" "$(log_of all-damaged)" || fail "no clear error when all are damaged"
    echo "  every checkpoint damaged: $(one_line "$(log_of all-damaged)" "every checkpoint")"
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
echo "OK: $case_name"
