#!/usr/bin/env bash
# Tests of `fedsim run` (the federated simulation) on Fashion-MNIST, one case
# per meson test:
#   ranks      the same config and seed give the same 2 rounds, bit for bit, on
#              1 rank (the server trains the clients), 2 and 3 ranks (1 and 2
#              workers), with the dynamic and the naive scheduler, clients at
#              a half and a whole worker running together
#   budgets    the budgets are applied as configured (no timing asserted): a
#              client's OpenMP threads are ceil(share x worker cores), one
#              under a whole core is paced (its CPU time within its share of
#              its wall time), a client past its memory cap fails and is
#              counted while the round goes on, the others stay under theirs
#   fates      an availability trace: clients offline at the round's start
#              drop out unrun (uniform sampling) or are not sampled
#              (available), clients whose window closes mid-round drop out
#              after running; a deadline no client meets leaves the global
#              model as it was
#   fedbuff    asynchronous FedBuff: every server step takes buffer_size
#              updates, clients that started before a step arrive stale (and
#              say so), the simulated clock only moves forward, the model
#              learns; stopped after step 2 and resumed it runs to step 4
#   text       a tiny BLOOM learns next tokens federated by book: the KJV's
#              first 400 kB (the pretrain tests' data set) split by
#              tools/get-kjv's book list into Genesis, Exodus and Leviticus, a client
#              each, 3 rounds: the loss falls, every round both books train;
#              a groups count that is not num_clients, and a Dirichlet
#              partition of text, are refused
#   resume     FedAdam (server moments) stopped after round 2 and resumed
#              equals the straight 4 rounds, test accuracy included; round 2's
#              checkpoint, a byte flipped, is named and moved aside, and the
#              resume starts from round 1's
#   accuracy   FedAvg over 100 IID clients, 10 a round, 4 rounds: at least
#              60% test accuracy (74.0% measured)
#   privacy    client-level DP: the same bits on 1 and 3 ranks, epsilon reported
#              and growing every round; a clipping norm of 0 is refused
#   cuda       device cuda (a GPU, or the CUDA emulator; SKIP without one): the
#              clients' shares are SM partitions (green contexts) of
#              round(share x groups) groups, never paced, with the same bits as
#              time slices and on 2 ranks; a driver without green contexts
#              (the emulator's TURBINE_EMU_GREEN_CONTEXTS=0) falls back to time
#              slices under auto and refuses sm_partition
#   bad_input  more clients a round than exist, Dirichlet alpha 0, a client
#              left without samples, an unknown
#              strategy, an output folder with checkpoints (one damaged, left
#              in place) and no --resume, a
#              compute share above 100%, a memory cap no worker holds, a device
#              trace without its compute column (line named)
# Usage: test-fedsim.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi, metric
work=$build/tests/fedsim-work
export OMP_NUM_THREADS=1
fedsim=$build/apps/fedsim
export PYTHONPATH=$source/tests/fedsim${PYTHONPATH:+:$PYTHONPATH}  # runs.py, the checks' helpers
fail() { echo "FAIL: $*" >&2; exit 1; }
data=$("$source/tests/fedsim/fixture.sh" "$work") || exit $?
# A small federation: 20 clients (Dirichlet 0.5), 4 a round, 6 local steps.
small=(--config "$source/configs/fedsim/fashion-fedavg.yaml" --set data.path="$data"
       --set federation.num_clients=20 --set federation.fraction_fit=0.2
       --set local.max_steps=6 --set eval.interval=2 --set eval.batch=500
       --set checkpoint.interval=2 --set budget.worker_cores=1)

# run NP OUT [--set ...]: fedsim run into $work/OUT.
run() {
  local np=$1 out=$2
  shift 2
  run_mpi "$np" "$fedsim" run --set output.dir="$work/$out" "$@" >> "$work/$out.log" 2>&1 ||
    return $?
}
fresh() { for d in "$@"; do rm -rf "${work:?}/$d" "$work/$d.log"; done; }
same() { python3 "$source/tests/parallel/equivalence.py" losses "$work/$1" "$work/$2" 0 "$3"; }
keys=train_loss,val_loss,accuracy

case $case_name in
  ranks)
    fresh one two three naive
    mixed=("${small[@]}" --set federation.rounds=2 --set 'devices.compute=[0.5,1.0]')
    run 1 one "${mixed[@]}" || fail "1 rank (see $work/one.log)"
    run 2 two "${mixed[@]}" || fail "2 ranks (see $work/two.log)"
    run 3 three "${mixed[@]}" || fail "3 ranks (see $work/three.log)"
    run 3 naive "${mixed[@]}" --set federation.scheduler=naive ||
      fail "3 ranks, naive (see $work/naive.log)"
    same two one "$keys"
    same three one "$keys"
    same naive one "$keys"
    ;;
  resume)
    adam=("${small[@]}" --set strategy.name=fedadam --set federation.rounds=4
          --set checkpoint.interval=1)
    fresh straight halves
    run 3 straight "${adam[@]}" || fail "straight run (see $work/straight.log)"
    run 3 halves "${adam[@]}" --set federation.rounds=2 || fail "first half (see $work/halves.log)"
    # Round 2's checkpoint damaged on disk: the resume falls back to round 1.
    python3 - "$work/halves/checkpoints/round_000002/state.h5" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0x40]))
PY
    run 3 halves "${adam[@]}" --resume || fail "resumed (see $work/halves.log)"
    grep -q "round_000002 is damaged: state.h5 has CRC-32" "$work/halves.log" ||
      fail "the damaged round 2 is not named: $(grep -i damaged "$work/halves.log")"
    [[ -d $work/halves/checkpoints/damaged-round_000002 ]] || fail "round 2 not moved aside"
    same halves straight "$keys"
    ;;
  accuracy)
    fresh accuracy
    run 3 accuracy --config "$source/configs/fedsim/fashion-fedavg.yaml" --set data.path="$data" \
      --set partition.kind=iid --set federation.rounds=4 --set local.max_steps=10 \
      --set eval.interval=4 --set checkpoint.interval=0 || fail "training (see $work/accuracy.log)"
    accuracy=$(metric "$work/accuracy/metrics.jsonl" accuracy)
    echo "test accuracy after 4 rounds: $accuracy"
    python3 -c "import sys; sys.exit(0 if float('$accuracy') >= 0.6 else 1)" ||
      fail "test accuracy $accuracy below 0.6 after 4 rounds"
    ;;
  privacy)
    # Small noise: with 4 clients a round, sigma C / 4 lands on every weight.
    dp=("${small[@]}" --set federation.rounds=2 --set dp.enabled=true --set dp.clipping_norm=1
        --set dp.noise_multiplier=0.01)
    fresh dp1 dp3
    run 1 dp1 "${dp[@]}" || fail "DP on 1 rank (see $work/dp1.log)"
    run 3 dp3 "${dp[@]}" || fail "DP on 3 ranks (see $work/dp3.log)"
    same dp3 dp1 "$keys,epsilon"
    python3 - "$work/dp1/metrics.jsonl" <<'PY' || fail "epsilon not reported as expected"
import sys
from runs import rows
records = rows(sys.argv[1])
eps = [r["epsilon"] for r in records]
print("epsilon by round:", eps, "training loss:", [r["train_loss"] for r in records])
finite = all(r["train_loss"] is not None for r in records)
sys.exit(0 if finite and len(eps) == 2 and 0 < eps[0] < eps[1] else 1)
PY
    fresh bad
    if run 1 bad "${dp[@]}" --set dp.clipping_norm=0; then fail "clipping norm 0 accepted"; fi
    grep -q "positive clipping norm" "$work/bad.log" || fail "clipping norm 0: $(tail -3 "$work/bad.log")"
    ;;
  budgets)
    fresh quarter cores
    # 8 clients a round on one worker of one core: a quarter or a whole core,
    # a 4 MiB cap (less than the model's weights and gradients) or 512 MiB.
    run 2 quarter "${small[@]}" --set federation.rounds=1 --set federation.fraction_fit=0.4 \
      --set 'devices.compute=[0.25,1.0]' --set 'devices.memory_mb=[4,512]' ||
      fail "budgets (see $work/quarter.log)"
    # Two cores a worker: a half share is one thread, a whole one two.
    run 2 cores "${small[@]}" --set federation.rounds=1 --set budget.worker_cores=2 \
      --set 'devices.compute=[0.5,1.0]' || fail "two cores (see $work/cores.log)"
    python3 - "$work/quarter" "$work/cores" <<'PY' || fail "budgets not applied as configured"
import math, sys
from runs import check, done, rows
for run, cores in ((sys.argv[1], 1), (sys.argv[2], 2)):
    clients = rows(run + "/clients.jsonl")
    metrics = rows(run + "/metrics.jsonl")
    for c in clients:
        name = f"{run} client {c['client']}"
        check(c["threads"] == math.ceil(c["compute"] * cores - 1e-9), f"{name}: {c['threads']} threads")
        if c["memory_mb"] == 4:
            check(c["fate"] == "failed", f"{name}: ran past a 4 MiB cap ({c['fate']})")
            continue
        check(c["fate"] == "ok", f"{name}: {c['fate']}")
        if c["memory_mb"] > 0:
            check(0 < c["peak_mb"] <= c["memory_mb"], f"{name}: peak {c['peak_mb']} MiB")
        duty = c["compute"] * cores / c["threads"]
        if duty < 1:  # paced: CPU time within the share of the wall time
            check(c["throttled_s"] > 0, f"{name}: never paced")
            check(c["cpu_s"] <= c["compute"] * cores * c["compute_s"] * 1.1 + 0.02,
                  f"{name}: {c['cpu_s']:.3f} s CPU in {c['compute_s']:.3f} s at {c['compute']}")
        else:
            check(c["throttled_s"] == 0, f"{name}: paced at a whole share")
    failed = sum(c["fate"] == "failed" for c in clients)
    check(metrics[-1]["clients_failed"] == failed, f"{run}: clients_failed {metrics[-1]['clients_failed']} != {failed}")
    check(metrics[-1]["clients_ok"] == len(clients) - failed, f"{run}: clients_ok")
    print(run, {k: metrics[-1][k] for k in ("clients", "clients_ok", "clients_failed", "accuracy")})
quarter = rows(sys.argv[1] + "/clients.jsonl")
check(any(c["memory_mb"] == 4 for c in quarter) and any(c["memory_mb"] == 512 for c in quarter),
      "the draw gave both caps")
check(any(c["compute"] == 0.25 and c["memory_mb"] == 512 for c in quarter), "a paced client ran")
done()
PY
    ;;
  fates)
    fresh uniform available deadline
    {
      echo "client,start_s,end_s"
      for c in $(seq 0 9); do echo "$c,0,1000000"; done      # online throughout
      for c in $(seq 10 14); do echo "$c,0,0.0001"; done     # gone before they finish
      for c in $(seq 15 19); do echo "$c,500000,1000000"; done  # offline at the start
    } > "$work/windows.csv"
    every=("${small[@]}" --set federation.rounds=1 --set federation.fraction_fit=1.0
           --set availability.trace="$work/windows.csv")
    run 2 uniform "${every[@]}" || fail "uniform sampling (see $work/uniform.log)"
    run 2 available "${every[@]}" --set federation.sampling=available ||
      fail "available sampling (see $work/available.log)"
    run 2 deadline "${small[@]}" --set federation.rounds=2 --set federation.round_deadline_s=0.000001 --set eval.interval=1 ||
      fail "deadline (see $work/deadline.log)"
    grep -q "the global model stays as it was" "$work/deadline.log" || fail "no warning of a round without updates"
    python3 - "$work" <<'PY' || fail "client fates not as the trace and deadline say"
import sys
from runs import check, done, rows
work = sys.argv[1]
def first(run):
    return rows(f"{work}/{run}/metrics.jsonl")[0]
for run, expected in (("uniform", {"clients": 20, "clients_ok": 10, "clients_dropped": 10}),
                      ("available", {"clients": 15, "clients_ok": 10, "clients_dropped": 5})):
    got = {key: first(run)[key] for key in expected}
    print(run, got)
    check(got == expected, f"{run}: {got}, expected {expected}")
ran = {c["client"]: c["fate"] for c in rows(f"{work}/uniform/clients.jsonl")}
check(sorted(ran) == list(range(15)) and all(ran[c] == ("ok" if c < 10 else "dropped") for c in ran),
      f"uniform: clients run and their fates: {ran}")
d = rows(f"{work}/deadline/metrics.jsonl")
check([r["clients_straggled"] for r in d] == [4, 4] and d[0]["accuracy"] == d[1]["accuracy"],
      f"deadline: {[(r['clients_straggled'], r['accuracy']) for r in d]}")
done()
PY
    ;;
  fedbuff)
    fresh fedbuff halves
    buff=("${small[@]}" --set strategy.name=fedbuff --set strategy.buffer_size=3
          --set federation.concurrency=4 --set federation.rounds=4 --set eval.interval=4
          --set 'devices.compute=[0.25,1.0]')
    run 3 fedbuff "${buff[@]}" || fail "fedbuff (see $work/fedbuff.log)"
    run 3 halves "${buff[@]}" --set federation.rounds=2 || fail "first half (see $work/halves.log)"
    run 3 halves "${buff[@]}" --resume || fail "resumed (see $work/halves.log)"
    python3 - "$work/fedbuff" "$work/halves" <<'PY' || fail "fedbuff's steps not as expected"
import sys
from runs import check, done, rows
m = rows(sys.argv[1] + "/metrics.jsonl")
clients = rows(sys.argv[1] + "/clients.jsonl")
check([r["step"] for r in m] == [1, 2, 3, 4], f"server steps {[r['step'] for r in m]}")
check(all(r["clients_ok"] == 3 for r in m), f"updates a step {[r['clients_ok'] for r in m]}")
check(max(r["staleness_max"] for r in m) >= 1, "no stale update with 4 clients at once and K = 3")
check(all("staleness" in c for c in clients if c["fate"] == "ok"), "clients.jsonl lacks staleness")
sim = [r["simulated_s"] for r in m]
check(sim == sorted(sim) and sim[0] > 0, f"simulated clock {sim}")
check(m[-1]["accuracy"] > 0.2, f"accuracy {m[-1]['accuracy']} after 4 server steps")
h = rows(sys.argv[2] + "/metrics.jsonl")
check([r["step"] for r in h] == [1, 2, 3, 4], f"resumed run's steps {[r['step'] for r in h]}")
print("accuracy", m[-1]["accuracy"], "staleness_max", [r["staleness_max"] for r in m], "simulated", sim)
done()
PY
    ;;
  text)
    kjv=$work/kjv
    "$source/tests/pretrain/fixture.sh" "$kjv"
    # The 400 kB cut's chapters (paragraphs) and their books.
    chapters=$(awk 'BEGIN { RS = "" } END { print NR }' "$kjv/kjv-400k.txt")
    head -n "$chapters" "$kjv/kjv.books" > "$kjv/books-400k.txt"
    fresh text bad
    books=(--config "$source/configs/fedsim/kjv-books.yaml" --set data.path="$kjv/data.h5"
           --set data.groups="$kjv/books-400k.txt" --set federation.num_clients=3
           --set federation.rounds=3 --set federation.fraction_fit=1.0 --set local.max_steps=8
           --set model.hidden_size=32 --set eval.interval=1 --set data.seq_len=32)
    run 2 text "${books[@]}" || fail "text by book (see $work/text.log)"
    python3 - "$work/text" <<'PY' || fail "the federated language model did not learn"
import sys
from runs import rows
m = rows(sys.argv[1] + "/metrics.jsonl")
c = rows(sys.argv[1] + "/clients.jsonl")
loss = [r["val_loss"] for r in m]
print("validation loss by round:", loss, "next-token accuracy:", [r["accuracy"] for r in m])
ok = len(m) == 3 and loss[2] < loss[0] and all(r["clients_ok"] == 3 for r in m)
ok = ok and sorted({r["client"] for r in c}) == [0, 1, 2]
sys.exit(0 if ok else 1)
PY
    if run 2 bad "${books[@]}" --set federation.num_clients=5; then fail "5 clients for 3 books"; fi
    grep -q "names 3 groups" "$work/bad.log" || fail "no group count: $(tail -3 "$work/bad.log")"
    fresh bad
    if run 2 bad "${books[@]}" --set partition.kind=dirichlet; then fail "Dirichlet text"; fi
    grep -q "class labels" "$work/bad.log" || fail "no word of labels: $(tail -3 "$work/bad.log")"
    ;;
  cuda)
    fresh gpu-probe gpu-part gpu-slice gpu-two gpu-nogreen gpu-refused
    gpu=("${small[@]}" --set model.arch=mlp --set federation.rounds=2 --set device=cuda
         --set 'devices.compute=[0.25,0.5,1.0]')
    if ! run 1 gpu-probe "${gpu[@]}" --set federation.rounds=1 --set eval.interval=0; then
      grep -q "device cuda\|CUDA backend\|CUDA device" "$work/gpu-probe.log" ||
        fail "probe: $(tail -3 "$work/gpu-probe.log")"
      echo "SKIP (a GPU needed): $(grep -m1 -o 'error: .*' "$work/gpu-probe.log" | cut -c1-150)"
      exit 77
    fi
    run 1 gpu-part "${gpu[@]}" --set budget.gpu_share=sm_partition ||
      fail "SM partitions (see $work/gpu-part.log)"
    grep -q "GPU shares as SM partitions (green contexts)" "$work/gpu-part.log" ||
      fail "the log does not say the shares are SM partitions"
    run 1 gpu-slice "${gpu[@]}" --set budget.gpu_share=time_slice ||
      fail "time slices (see $work/gpu-slice.log)"
    same gpu-slice gpu-part "$keys"
    runs=("$work/gpu-part")
    # 2 ranks need 2 GPUs (the emulator has 4).
    if [[ -n ${TURBINE_EMULATED_CUDA:-} ]] || (($(nvidia-smi -L 2>/dev/null | wc -l) >= 2)); then
      run 2 gpu-two "${gpu[@]}" --set budget.gpu_share=sm_partition ||
        fail "2 ranks (see $work/gpu-two.log)"
      same gpu-two gpu-part "$keys"
      runs+=("$work/gpu-two")
    fi
    python3 - "$work/gpu-slice" "${runs[@]}" <<'PY' || fail "SM partitions not as configured"
import os, sys
from runs import check, done, rows
emulated = os.environ.get("TURBINE_EMULATED_CUDA") == "1"
for c in rows(sys.argv[1] + "/clients.jsonl"):
    check(c["sms"] == 0, f"time slice client {c['client']}: {c['sms']} SMs")
for run in sys.argv[2:]:
    clients = rows(run + "/clients.jsonl")
    full = 128 if emulated else max(c["sms"] for c in clients)  # a whole share (drawn, mostly)
    for c in clients:
        name = f"{run} client {c['client']} at {c['compute']}"
        check(c["fate"] == "ok", f"{name}: {c['fate']}")
        check(c["throttled_s"] == 0, f"{name}: paced on its own SMs")
        # round(share x groups) groups: within half a group of its share.
        check(c["sms"] > 0 and abs(c["sms"] / full - c["compute"]) <= 0.125, f"{name}: {c['sms']} of {full} SMs")
        if emulated:  # an H100: 16 groups of 8 SMs
            check(c["sms"] == round(c["compute"] * 16) * 8, f"{name}: {c['sms']} SMs, not 1/16ths of 128")
    print(run, "share -> SMs:", sorted({(c["compute"], c["sms"]) for c in clients}))
done()
PY
    # A driver without green contexts (the emulator's switch; a real GPU's
    # driver has them or not, so this part runs on the emulator only).
    if [[ -n ${TURBINE_EMULATED_CUDA:-} ]]; then
      TURBINE_EMU_GREEN_CONTEXTS=0 run 1 gpu-nogreen "${gpu[@]}" ||
        fail "auto without green contexts (see $work/gpu-nogreen.log)"
      grep -q "GPU shares as time slices (the NVIDIA driver lacks" "$work/gpu-nogreen.log" ||
        fail "the fallback to time slices is not said: $(grep -m1 'GPU shares' "$work/gpu-nogreen.log")"
      same gpu-nogreen gpu-part "$keys"
      if TURBINE_EMU_GREEN_CONTEXTS=0 run 1 gpu-refused "${gpu[@]}" --set budget.gpu_share=sm_partition; then
        fail "sm_partition without green contexts was accepted"
      fi
      grep -q "budget.gpu_share is sm_partition, but the NVIDIA driver lacks" "$work/gpu-refused.log" ||
        fail "sm_partition refused unclearly: $(grep -m1 -o 'error: .*' "$work/gpu-refused.log")"
    fi
    ;;
  bad_input)
    fresh bad
    expect_error() {  # expect_error WORDS -- ARGS: the run fails and its log holds WORDS
      local words=$1
      shift
      if run 1 bad "${small[@]}" "$@"; then fail "accepted: $*"; fi
      grep -q -- "$words" "$work/bad.log" || fail "no '$words' for $*: $(tail -3 "$work/bad.log")"
      fresh bad
    }
    expect_error "population has 20" --set federation.min_fit_clients=30
    expect_error "alpha must be positive" --set partition.alpha=0
    expect_error "has no sample to train on" --set partition.alpha=0.01 --set partition.min_partition_size=0
    expect_error "strategy.name" --set strategy.name=fedsgd
    expect_error "not fedbuff" --set strategy.name=fedbuff --set dp.enabled=true
    expect_error "must be in (0, 1]" --set 'devices.compute=[0.5,1.5]'
    expect_error "fits on no worker" --set budget.worker_memory_mb=100 --set 'devices.memory_mb=[64,200]'
    printf 'memory_mb,bandwidth_mbps\n64,10\n' > "$work/no-compute.csv"
    expect_error "no-compute.csv:1: the header lacks the column 'compute'" --set devices.trace="$work/no-compute.csv"
    printf 'compute,memory_mb\n0.5,64\n0.5\n' > "$work/short.csv"
    expect_error "short.csv:3: 1 values for 2 columns" --set devices.trace="$work/short.csv"
    run 1 bad "${small[@]}" --set federation.rounds=1 || fail "one round (see $work/bad.log)"
    # Its checkpoint damaged: refused as it is, nothing verified or moved aside
    # (that is --resume's work).
    printf 'x' >> "$work/bad/checkpoints/round_000001/state.h5"
    if run 1 bad "${small[@]}" --set federation.rounds=1; then fail "reused an output folder"; fi
    grep -q -- "holds checkpoints (round 1).*--resume" "$work/bad.log" ||
      fail "no hint at --resume: $(tail -3 "$work/bad.log")"
    [[ -f $work/bad/checkpoints/round_000001/state.h5 ]] ||
      fail "a run without --resume moved a damaged checkpoint aside"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "fedsim $case_name: OK"
