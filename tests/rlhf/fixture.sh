#!/usr/bin/env bash
# The rlhf tests' models and data, made once in DIR (locked, so concurrent
# tests wait for one another): DIR/pretrained, a 2-layer BLOOM pretrained for
# 40 steps on the pretrain tests' data set (tests/pretrain/fixture.sh, its
# 1024-token BPE); DIR/pairs, KJV preference pairs of verses of at most 16
# words (tools/make-preference-data); DIR/reward-fixture, a reward model
# trained 2 steps from the pretrained one.
# Usage: fixture.sh DIR (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
work=${1:?fixture.sh DIR}
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
mkdir -p "$work"
(
  flock 9
  if [[ ! -f $work/reward-fixture/trainer.h5 ]]; then
    "$source/tests/pretrain/fixture.sh" "$build/tests/pretrain-work"
    rm -rf "$work/pretrain-run" "$work/pretrained" "$work/reward-run" "$work/reward-fixture"
    "$build/apps/pretrain" --config "$source/configs/pretrain/tiny.yaml" \
      --set data.path="$build/tests/pretrain-work/data.h5" --set output.dir="$work/pretrain-run" \
      --set train_steps=40 --set eval.interval=0 --set checkpoint.interval=0 \
      > "$work/fixture.log" 2>&1 || { echo "fixture: pretrain failed:" >&2; tail -5 "$work/fixture.log" >&2; exit 1; }
    mv "$work/pretrain-run/checkpoints/step_00000040" "$work/pretrained"
    "$source/tools/make-preference-data" --max-words 16 -o "$work/pairs" >> "$work/fixture.log" 2>&1 ||
      { echo "fixture: make-preference-data failed:" >&2; tail -5 "$work/fixture.log" >&2; exit 1; }
    "$build/apps/rlhf" reward --config "$source/configs/rlhf/tiny.yaml" \
      --set data_path="$work/pairs" --set model_name_or_path="$work/pretrained" \
      --set output.dir="$work/reward-run" --set reward.train_steps=2 >> "$work/fixture.log" 2>&1 ||
      { echo "fixture: rlhf reward failed:" >&2; tail -5 "$work/fixture.log" >&2; exit 1; }
    mv "$work/reward-run/reward/checkpoints/step_00000002" "$work/reward-fixture"
  fi
) 9>"$work/.lock"
