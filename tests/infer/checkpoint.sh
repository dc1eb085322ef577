#!/usr/bin/env bash
# The infer tests' checkpoint, made once in DIR (locked, so concurrent tests
# wait for one another): the tiny BLOOM of configs/pretrain/tiny.yaml trained
# 60 steps on the pretrain tests' KJV data set, with its tokenizer. Prints
# the checkpoint's folder.
# Usage: checkpoint.sh DIR (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
work=${1:?checkpoint.sh DIR}
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
mkdir -p "$work"
"$source/tests/pretrain/fixture.sh" "$build/tests/pretrain-work"
(
  flock 9
  if [[ ! -f $work/run/checkpoints/step_00000060/tokenizer.json ]]; then
    rm -rf "$work/run"
    OMP_NUM_THREADS=1 "$build/apps/pretrain" --config "$source/configs/pretrain/tiny.yaml" \
      --set data.path="$build/tests/pretrain-work/data.h5" --set output.dir="$work/run" \
      --set train_steps=60 --set eval.interval=0 --set checkpoint.interval=0 \
      > "$work/pretrain.log" 2>&1 ||
      { echo "checkpoint: pretrain failed:" >&2; tail -3 "$work/pretrain.log" >&2; exit 1; }
  fi
) 9>"$work/.lock"
echo "$work/run/checkpoints/step_00000060"
