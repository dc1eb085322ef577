#!/usr/bin/env bash
# Tests of `fedsim centralized` (the image classifier trained by the shared
# loop on Fashion-MNIST), one case per meson test:
#   accuracy   the default CNN config, 100 steps of 64 images: test accuracy
#              of at least 70% on 1024 test images (79.2% measured; the full run's figure,
#              about 91%, is in docs/results/fedsim.md)
#   resume     a ResNet-8 (BatchNorm) stopped at step 10 and resumed equals the
#              straight run bit for bit: losses, test loss and accuracy (which
#              use the running statistics, so they must travel in checkpoints)
#   bad_input  a missing data set, a ResNet depth not 6n + 2, an unknown arch: clear errors
# Usage: test-centralized.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi
work=$build/tests/fedsim-work
export OMP_NUM_THREADS=1
fedsim=$build/apps/fedsim
config=$source/configs/fedsim/fashion-cnn.yaml
fail() { echo "FAIL: $*" >&2; exit 1; }

data=$("$source/tests/fedsim/fixture.sh" "$work") || exit $?
common=(--config "$config" --set data.path="$data" --set peak_tflops=1)

# run NP OUT [--set ...]: fedsim centralized into $work/OUT.
run() {
  local np=$1 out=$2
  shift 2
  run_mpi "$np" "$fedsim" centralized "${common[@]}" --set output.dir="$work/$out" "$@" \
    >> "$work/$out.log" 2>&1 || return $?
}
fresh() { rm -rf "${work:?}/$1" "$work/$1.log"; }

case $case_name in
  accuracy)
    fresh accuracy
    run 2 accuracy --set train_steps=100 --set eval.interval=100 --set eval.batches=32 \
      --set checkpoint.interval=0 --set scheduler.params.warmup_num_steps=10 ||
      fail "training (see $work/accuracy.log)"
    accuracy=$(metric "$work/accuracy/metrics.jsonl" accuracy)
    echo "test accuracy after 100 steps: $accuracy"
    python3 -c "import sys; sys.exit(0 if float('$accuracy') >= 0.7 else 1)" ||
      fail "test accuracy $accuracy below 0.7 after 100 steps"
    ;;
  resume)
    resnet=(--set model.arch=resnet --set model.depth=8 --set model.width_base=4
            --set scheduler.params.total_num_steps=20 --set eval.interval=10 --set eval.batches=4
            --set checkpoint.interval=10 --set train_batch_size=16
            --set train_micro_batch_size_per_gpu=8)
    fresh straight
    run 1 straight "${resnet[@]}" --set train_steps=20 || fail "straight run (see $work/straight.log)"
    fresh halves
    run 1 halves "${resnet[@]}" --set train_steps=10 || fail "first half (see $work/halves.log)"
    run 1 halves "${resnet[@]}" --set train_steps=20 --resume || fail "resumed (see $work/halves.log)"
    python3 "$source/tests/parallel/equivalence.py" losses "$work/halves" "$work/straight" 0 \
      loss,val_loss,accuracy,train_accuracy
    ;;
  bad_input)
    fresh bad
    if run 1 bad --set data.path="$work/missing.h5"; then fail "a missing data set was accepted"; fi
    grep -q "missing.h5" "$work/bad.log" || fail "the missing data set is not named: $(tail -3 "$work/bad.log")"
    fresh bad
    if run 1 bad --set model.arch=resnet --set model.depth=10; then fail "depth 10 was accepted"; fi
    grep -q "6n + 2" "$work/bad.log" || fail "bad depth: $(tail -3 "$work/bad.log")"
    fresh bad
    if run 1 bad --set model.arch=transformer; then fail "model.arch transformer was accepted"; fi
    grep -q "model.arch" "$work/bad.log" || fail "bad arch: $(tail -3 "$work/bad.log")"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "fedsim $case_name: OK"
