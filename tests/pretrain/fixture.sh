#!/usr/bin/env bash
# The pretrain tests' data set, made once in DIR (locked, so concurrent tests
# wait for one another): DIR/data.h5 from the first 400 kB of the King James
# Bible with a 1024-token BPE (DIR/data.tokenizer.json), 5% held out; the
# texts stay as DIR/kjv.txt and DIR/kjv-400k.txt.
# Usage: fixture.sh DIR (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
work=${1:?fixture.sh DIR}
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
mkdir -p "$work"
(
  flock 9
  if [[ ! -f $work/data.h5 ]]; then
    "$source/tools/get-kjv" "$work/kjv.txt" >/dev/null
    head -c 400000 "$work/kjv.txt" > "$work/kjv-400k.txt"
    "$build/apps/prepare-data" -o "$work/data.h5" --train-tokenizer 1024 --valid-fraction 0.05 \
      "$work/kjv-400k.txt" > "$work/prepare-data.log" 2>&1 ||
      { echo "fixture: prepare-data failed:" >&2; tail -5 "$work/prepare-data.log" >&2; exit 1; }
  fi
) 9>"$work/.lock"
