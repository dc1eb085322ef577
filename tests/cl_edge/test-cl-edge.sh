#!/usr/bin/env bash
# Tests of cl-edge on Split Fashion-MNIST (small: 300 training and 200 test
# images a task), one case per meson test:
#   strategies  every strategy learns the 5 tasks and writes metrics.jsonl (a
#               line a task) and summary.json (the full accuracy matrix,
#               energy); replay beats fine-tuning (ER's ACC above naive's by
#               20 points; naive forgets almost all); ER's memory holds
#               exactly rb_size x (784 + 12) bytes; the hierarchical memory
#               filled its storage (st_size's reservoir over the stream), read
#               swaps back and counted the bytes; Miro reports a choice per
#               task within its cutline; task-incremental Split and
#               Permuted Fashion-MNIST learn (earlier tasks above chance)
#   sweep       a sweep on 2 ranks (naive, er, hierarchical, miro x 2 seeds) equals the same
#               runs one by one on 1 rank: the same accuracy matrices, bit for
#               bit; its table has a row per strategy
#   text        the KJV's first three books as a stream for a tiny BLOOM with
#               ER: the matrix filled, the loss falls from book to book, Genesis
#               above chance at the end; der++ refused on text
#   resume      stopped within a task and resumed equals the straight run
#               (hierarchical, miro, ewc, lwf, der++); a folder with a
#               checkpoint is refused without --resume
#   bad_input   rb_size over the memory budget, classes per task that do not
#               divide the labels, an unwritable storage_dir, a missing device
#               profile, an unknown strategy: clear errors before training; a
#               diverging run stops at the first non-finite loss, saying so
# Usage: test-cl-edge.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi
work=$build/tests/cl-edge-work
export OMP_NUM_THREADS=1
cl_edge=$build/apps/cl-edge
fail() { echo "FAIL: $*" >&2; exit 1; }
data=$("$source/tests/fedsim/fixture.sh" "$work") || exit $?
small=(--config "$source/configs/cl-edge/split-fashion.yaml" --set data.path="$data"
       --set stream.train_per_task=300 --set stream.test_per_task=200
       --set memory.rb_size=100 --set memory.st_size=1000
       --set miro.rb_sizes=[50,100,200] --set miro.st_sizes=[1000] --set miro.swap_ratios=[0.1]
       --set miro.profile_iterations=5 --set miro.cutline=2 --set miro.step_seconds=0.001
       --set energy.devices_dir="$source/configs/devices")

# run OUT [--set ...]: one run into $work/OUT (fresh).
run() {
  local out=$work/$1
  shift
  rm -rf "$out"
  "$cl_edge" "${small[@]}" --set output.dir="$out" "$@" > "$out.log" 2>&1 ||
    { cat "$out.log" >&2; fail "cl-edge $* exited non-zero"; }
}

# expect_error PATTERN [--set ...]: the run fails before training, saying PATTERN.
expect_error() {
  local pattern=$1 out=$work/bad
  shift
  rm -rf "$out"
  if "$cl_edge" "${small[@]}" --set output.dir="$out" "$@" > "$out.log" 2>&1; then
    fail "expected an error for $*"
  fi
  grep -q -- "$pattern" "$out.log" || { cat "$out.log" >&2; fail "no '$pattern' for $*"; }
  ! grep -q "^task 0" "$out.log" || fail "$* trained before failing"
}

case $case_name in
  strategies)
    for s in naive joint er cb-er agem ewc lwf der++ hierarchical miro; do
      run "s-$s" --set strategy.name="$s"
    done
    # Two epochs a task: the samples go to the memory and to storage once.
    run s-two-epochs --set strategy.name=hierarchical --set train.epochs=2
    # Task-incremental (logits masked to the task's classes) and Permuted
    # Fashion-MNIST (domain-incremental), with ER.
    run s-task --set strategy.name=er --set stream.scenario=task
    run s-permuted --set strategy.name=er --set stream.benchmark=permuted-fashion-mnist \
      --set stream.scenario=domain --set stream.tasks=3
    python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
m = json.load(open(f"{work}/s-two-epochs/summary.json"))["final"]["memory"]
assert m["stored"] == 1000 and m["held"] == 100, m
task = json.load(open(f"{work}/s-task/summary.json"))
rows = task["matrix"]["accuracy"]
# Each task a 2-way choice within its classes: every earlier task stays well above chance.
assert all(rows[4][j] > 0.6 for j in range(5)), rows
perm = json.load(open(f"{work}/s-permuted/summary.json"))
rows = perm["matrix"]["accuracy"]
assert len(rows) == 3 and rows[0][0] > 0.5 and rows[2][0] > 0.3, rows
print(f"task-incremental ACC {task['metrics']['acc']:.4f}, permuted ACC {perm['metrics']['acc']:.4f}")
def summary(s): return json.load(open(f"{work}/s-{s}/summary.json"))
acc = {}
for s in ["naive", "joint", "er", "cb-er", "agem", "ewc", "lwf", "der++", "hierarchical", "miro"]:
    j = summary(s)
    rows = j["matrix"]["accuracy"]
    assert len(rows) == 5 and all(len(r) == 5 and None not in r for r in rows), (s, rows)
    lines = [json.loads(l) for l in open(f"{work}/s-{s}/metrics.jsonl")]
    assert [l["task"] for l in lines] == [0, 1, 2, 3, 4], (s, lines)
    assert j["energy"]["modelled"]["total_j"] > 0 and j["energy"]["device"] == "jetson-xavier-nx"
    acc[s] = j["metrics"]["acc"]
    print(f"{s}: ACC {100 * acc[s]:.2f}%, forgetting {100 * j['metrics']['forgetting']:.2f}")
assert acc["er"] > acc["naive"] + 0.20, acc
assert summary("naive")["metrics"]["forgetting"] > 0.8
er = summary("er")["final"]["memory"]
assert er["rb_size"] == 100 and er["held"] == 100 and er["ram_bytes"] == 100 * (784 + 12), er
h = summary("hierarchical")["final"]["memory"]
assert h["stored"] == 1000 and h["swaps"] > 0 and h["swapped_in"] > 0, h
# 1500 samples offered to a store of 1000 records (of 1024 bytes, O_DIRECT's unit): the
# first 1000 written, then each kept with probability 1000/n.
assert h["bytes_written"] % 1024 == 0 and 1000 * 1024 < h["bytes_written"] < 1500 * 1024, h
assert h["storage_bytes"] == 1000 * 1024 and h["bytes_read"] >= h["swapped_in"] * 1024, h
m = summary("miro")["miro"]
assert len(m["choices"]) == 5 and m["profiling_seconds"] > 0, m
for c in m["choices"]:
    assert len(c["kept"]) == 2 and c["chosen"]["index"] in [k["index"] for k in c["kept"]], c
print("ok")
PY
    ;;
  sweep)
    out=$work/sweep
    rm -rf "$out"
    run_mpi 2 "$cl_edge" "${small[@]}" --set output.dir="$out" --sweep \
      --set sweep.strategies=[naive,er,hierarchical,miro] --set sweep.seeds=[1,2] \
      --set sweep.rb_sizes=[100] \
      > "$work/sweep.log" 2>&1 || { cat "$work/sweep.log" >&2; fail "the sweep failed"; }
    for s in naive er hierarchical miro; do
      for seed in 1 2; do
        name=$s-seed$seed
        [[ $s == naive ]] || name=$s-rb100-seed$seed
        run "one-$name" --set strategy.name=$s --set seed=$seed --set memory.rb_size=100
        python3 - "$out/runs/$name/summary.json" "$work/one-$name/summary.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["matrix"] == b["matrix"], (sys.argv[1:], a["matrix"], b["matrix"])
PY
      done
    done
    for s in naive er hierarchical miro; do
      grep -q "^| $s |" "$out/sweep.md" || fail "no $s row in sweep.md"
    done
    [[ $(wc -l < "$out/sweep.csv") == 9 ]] || fail "sweep.csv: expected 8 runs"
    # The sweep's storage strategy keeps memory.st_size on storage, as a run of its own does.
    python3 - "$out/runs/hierarchical-rb100-seed1/summary.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["final"]["memory"]
assert m["st_size"] == 1000 and m["stored"] == 1000 and m["swaps"] > 0, m
PY
    echo ok
    ;;
  resume)
    # Stopped within task 2 (train.stop_after, as a stop signal would; 30 steps a task)
    # and resumed: the same accuracy matrix as the straight run, for the strategies
    # with state (the storage file and swaps, Miro's reconfigured tiers with another
    # st_size, EWC's importance, LwF's previous model, DER++'s stored logits).
    for s in hierarchical miro ewc lwf der++; do
      run "straight-$s" --set strategy.name=$s --set miro.st_sizes=[500,1000]
      out=$work/halves-$s
      rm -rf "$out"
      set +e
      "$cl_edge" "${small[@]}" --set output.dir="$out" --set strategy.name=$s \
        --set miro.st_sizes=[500,1000] --set train.stop_after=77 --set checkpoint.interval=20 \
        > "$out.log" 2>&1
      rc=$?
      set -e
      [[ $rc == 75 ]] || { cat "$out.log" >&2; fail "$s: stopping exited $rc, not 75"; }
      [[ ! -f $out/summary.json ]] || fail "$s: a stopped run wrote summary.json"
      [[ $s != hierarchical ]] ||
        expect_error "holds a checkpoint" --set strategy.name=$s --set output.dir="$out"
      "$cl_edge" "${small[@]}" --set output.dir="$out" --set strategy.name=$s \
        --set miro.st_sizes=[500,1000] --set train.stop_after=77 --set checkpoint.interval=20 \
        --resume >> "$out.log" 2>&1 || { cat "$out.log" >&2; fail "$s: resuming failed"; }
      python3 - "$work/straight-$s" "$out" <<'PY'
import json, sys
a, b = (json.load(open(f"{d}/summary.json")) for d in sys.argv[1:])
assert a["matrix"] == b["matrix"], (sys.argv[1:], a["matrix"], b["matrix"])
tasks = [json.loads(l)["task"] for l in open(f"{sys.argv[2]}/metrics.jsonl")]
assert tasks == [0, 1, 2, 3, 4], tasks
PY
    done
    echo ok
    ;;
  text)
    # The KJV's first 400 kB (the pretrain tests' data set: Genesis, Exodus,
    # Leviticus) as a 3-book stream for a tiny BLOOM; with ER the memory holds
    # windows of every book; der++ (logits of every token) is refused.
    kjv=$work/kjv
    "$source/tests/pretrain/fixture.sh" "$kjv"
    chapters=$(awk 'BEGIN { RS = "" } END { print NR }' "$kjv/kjv-400k.txt")
    head -n "$chapters" "$kjv/kjv.books" > "$kjv/books-400k.txt"
    text=(--config "$source/configs/cl-edge/kjv-books.yaml" --set data.path="$kjv/data.h5"
          --set stream.groups="$kjv/books-400k.txt" --set stream.tasks=3
          --set stream.seq_len=32 --set stream.train_per_task=96 --set stream.test_per_task=16
          --set model.hidden_size=32 --set train.lr=0.1 --set memory.rb_size=60
          --set energy.devices_dir="$source/configs/devices")
    out=$work/text
    rm -rf "$out"
    "$cl_edge" "${text[@]}" --set output.dir="$out" > "$out.log" 2>&1 ||
      { cat "$out.log" >&2; fail "the text stream failed"; }
    python3 - "$out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1] + "/summary.json"))
lines = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
rows = j["matrix"]["accuracy"]
print("accuracy matrix:", rows, "loss by task:", [l["loss"] for l in lines])
assert len(rows) == 3 and all(None not in r for r in rows), rows
assert lines[-1]["loss"] < lines[0]["loss"], lines  # later books start from what was learned
assert rows[2][0] > j["matrix"]["random_init"][0], j["matrix"]  # above chance on Genesis
assert j["final"]["memory"]["held"] == 60
PY
    if "$cl_edge" "${text[@]}" --set output.dir="$work/text-der" --set strategy.name=der++ \
      > "$work/text-der.log" 2>&1; then fail "der++ on text ran"; fi
    grep -q "der++ keeps each sample's logits" "$work/text-der.log" || fail "no der++ reason"
    echo ok
    ;;
  bad_input)
    expect_error "over the memory budget" --set memory.budget_mb=0.05
    expect_error "classes_per_task must divide 10" --set stream.classes_per_task=3 \
      --set stream.tasks=3
    touch "$work/a-file"
    expect_error "memory.storage_dir" --set strategy.name=hierarchical \
      --set memory.storage_dir="$work/a-file/storage"
    expect_error "no-such-board" --set energy.device=no-such-board
    expect_error "strategy.name" --set strategy.name=icarl
    expect_error "training diverged" --set train.lr=1e4
    echo ok
    ;;
  *) fail "unknown case $case_name" ;;
esac
