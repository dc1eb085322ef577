#!/usr/bin/env bash
# analyze-data under MPI: 2 and 3 ranks (an uneven split of the windows) write
# an index equal to the single rank's (h5diff: every dataset and attribute);
# an existing index is refused without --force. The data set is the golden
# GPT-2 text, one document a line, with a 300-token BPE trained on it.
# Usage: test-analyze-data.sh (BUILD and SOURCE come from the environment).
set -euo pipefail
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi
work=$build/tests/curriculum-work
export OMP_NUM_THREADS=1
analyze=$build/apps/analyze-data

fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
"$build/apps/prepare-data" -o "$work/data.h5" --train-tokenizer 300 --documents lines \
  --valid-fraction 0.1 "$source/tests/golden/gpt2_text.txt" > "$work/prepare.log" 2>&1 ||
  fail "prepare-data: $(tail -3 "$work/prepare.log")"

# One rank, without mpirun, to the default path beside the data set.
"$analyze" --quiet --seq-len 8 "$work/data.h5" > "$work/np1.log" 2>&1 ||
  fail "1 rank: $(tail -3 "$work/np1.log")"
index=$work/data.vocabularyrarity.seq8.index.h5
[[ -f $index ]] || fail "no index at $index"
grep -q 'windows of 8+1 tokens on 1 rank' "$work/np1.log" || fail "no summary: $(cat "$work/np1.log")"
echo "  1 rank: $(grep -o '[0-9]* windows.*' "$work/np1.log" | head -1)"

for np in 2 3; do
  run_mpi $np "$analyze" --quiet --seq-len 8 -o "$work/np$np.h5" \
    "$work/data.h5" > "$work/np$np.log" 2>&1 || fail "$np ranks: $(tail -3 "$work/np$np.log")"
  h5diff "$index" "$work/np$np.h5" > "$work/diff$np.log" 2>&1 ||
    fail "$np ranks differ from 1 rank: $(head -20 "$work/diff$np.log")"
  echo "  $np ranks: the same index as 1 rank"
done

# An existing index is kept unless --force; nothing is left half-written.
if "$analyze" --quiet --seq-len 8 "$work/data.h5" > "$work/again.log" 2>&1; then
  fail "an existing index was overwritten without --force"
fi
grep -q -- '--force' "$work/again.log" || fail "the refusal does not name --force: $(cat "$work/again.log")"
"$analyze" --quiet --force --seq-len 8 "$work/data.h5" > /dev/null 2>&1 || fail "--force failed"
h5diff "$index" "$work/np2.h5" > /dev/null || fail "the index rewritten with --force differs"
if compgen -G "$work/*.tmp" > /dev/null; then fail "temporary files left: $(ls "$work"/*.tmp)"; fi
echo "  refuses to overwrite without --force; no temporary files left"
