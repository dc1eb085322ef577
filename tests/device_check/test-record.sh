#!/usr/bin/env bash
# tools/device-check record: a GPU run's files (as the device tool fetches
# $OUT) are filed under the card's name and the date, a second run of the day
# gets its own suffix, the README's list of runs gains a line with the
# figures, and a folder without a run's JSON is refused with nothing written.
# Usage: test-record.sh (BUILD and SOURCE come from the environment).
set -euo pipefail
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
work=$build/tests/device-check-record
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/out" "$work/results"
cp "$source/docs/results/gpu/README.md" "$work/results/"
export TURBINE_GPU_RESULTS=$work/results
cat > "$work/out/device-check.json" <<'JSON'
{"date": "2026-11-29", "card": "NVIDIA H100 80GB HBM3, 81559 MiB, 570.124.06",
 "bf16_peak_tflops": 989.4, "conformance": "PASS", "golden": "PASS", "pretrain_job": "FAIL",
 "turbine": {"tokens_per_s": 41234.5, "mfu": 0.3712}, "turbine_gemm_convert": {},
 "pytorch": {"tokens_per_s": 30000.0}, "speedup_vs_pytorch": 1.374}
JSON
for f in device-check.md conformance.txt profile.txt job-metrics.jsonl device-check.log; do
  echo "$f of the run" > "$work/out/$f"
done

"$source/tools/device-check" record "$work/out" > "$work/first.log" || fail "record: $(cat "$work/first.log")"
stem=$work/results/device-check-h100-80gb-hbm3-2026-11-29
for suffix in .md .json .conformance.txt .profile.txt .job-metrics.jsonl .log; do
  [[ -f $stem$suffix ]] || fail "no $stem$suffix: $(ls "$work/results")"
done
cmp -s "$work/out/device-check.json" "$stem.json" || fail "the JSON was not copied as it is"
readme=$work/results/README.md
line='- 2026-11-29, NVIDIA H100 80GB HBM3: conformance PASS, golden PASS, pretrain_job FAIL; 41234 tokens/s, MFU 37.1%, 1.37x PyTorch eager: [device-check-h100-80gb-hbm3-2026-11-29.md](device-check-h100-80gb-hbm3-2026-11-29.md)'
grep -qxF -- "$line" "$readme" || fail "README lacks the run's line: $(tail -3 "$readme")"
! grep -q '(none yet)' "$readme" || fail "README still says (none yet)"

# The same day again: a suffix, and both runs listed in order.
"$source/tools/device-check" record "$work/out" > "$work/second.log" || fail "second record"
[[ -f $stem-2.md && -f $stem-2.json ]] || fail "the second run was not filed as -2: $(ls "$work/results")"
[[ $(grep -c '^- 2026-11-29' "$readme") == 2 ]] || fail "README should list 2 runs: $(cat "$readme")"
grep -q 'hbm3-2026-11-29-2.md)$' <(tail -1 "$readme") || fail "the second run is not last"

# No run there: usage error (exit 2), nothing written.
before=$(ls "$work/results" | wc -l)
set +e
"$source/tools/device-check" record "$work/nothing" > "$work/bad.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "record of an empty folder exited $rc, not 2"
grep -q 'usage: tools/device-check record DIR' "$work/bad.log" || fail "no usage line: $(cat "$work/bad.log")"
[[ $(ls "$work/results" | wc -l) == "$before" ]] || fail "record of an empty folder wrote files"
echo "device-check record: 2 runs filed, README lists both, an empty folder refused"
