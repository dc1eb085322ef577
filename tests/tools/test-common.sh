#!/usr/bin/env bash
# tools/lib/common.sh, with stand-ins for mpirun and ninja on PATH: run_mpi's
# flags and thread share, root's variables only for root; build_if_stale runs
# ninja only when `ninja -n` sees work and, on a failed build, prints the
# compiler errors and exits 1; metric reads metrics.jsonl.
set -euo pipefail
source=${TURBINE_SOURCE_ROOT:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$work/bin" "$work/build"
touch "$work/build/build.ninja"
cat > "$work/bin/mpirun" <<'SH'
#!/usr/bin/env bash
echo "args: $*"
echo "threads: $OMP_NUM_THREADS root: ${OMPI_ALLOW_RUN_AS_ROOT:-unset}"
SH
# ninja -n prints what $work/ninja-plan says; ninja builds (and fails when $work/ninja-fails exists).
cat > "$work/bin/ninja" <<SH
#!/usr/bin/env bash
if [[ \$3 == -n ]]; then cat "$work/ninja-plan"; exit 0; fi
echo "built \${*:3}" >> "$work/ninja-calls"
if [[ -f $work/ninja-fails ]]; then
  printf '[1/2] Compiling x.cpp\nFAILED: x.o\nx.cpp:3:1: error: expected ;\nninja: build stopped: subcommand failed.\n'
  exit 1
fi
SH
chmod +x "$work/bin/"*
export PATH=$work/bin:$PATH
build=$work/build
source "$source/tools/lib/common.sh"

out=$(unset OMP_NUM_THREADS; run_mpi 2 prog --flag)
[[ $out == *"args: -np 2 --oversubscribe --bind-to none prog --flag"* ]] || fail "run_mpi flags: $out"
share=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
[[ $out == *"threads: $share "* ]] || fail "run_mpi thread share (want $share): $out"
if [[ $(id -u) -eq 0 ]]; then want=1; else want=unset; fi
[[ $out == *"root: $want"* ]] || fail "root variables (want $want): $out"
out=$(OMP_NUM_THREADS=3 run_mpi 4 prog)
[[ $out == *"threads: 3 "* ]] || fail "OMP_NUM_THREADS set by the caller is kept: $out"
echo "  run_mpi: $(head -1 <<< "$out")"

echo "ninja: no work to do." > "$work/ninja-plan"
build_if_stale apps/x
[[ ! -f $work/ninja-calls ]] || fail "build_if_stale built with nothing to do"
echo "[1/1] Compiling x.cpp" > "$work/ninja-plan"
build_if_stale apps/x 2> "$work/err"
[[ $(cat "$work/ninja-calls") == "built apps/x" ]] || fail "stale target not built: $(cat "$work/ninja-calls")"
touch "$work/ninja-fails"
if (build_if_stale apps/x) 2> "$work/err"; then fail "a failed build returned 0"; fi
grep -q "x.cpp:3:1: error: expected ;" "$work/err" || fail "compiler error not shown: $(cat "$work/err")"
echo "  build_if_stale: no work: no build; stale: built; failed: $(grep -c . "$work/err") lines of errors, exit 1"

printf '%s\n' '{"step": 1, "loss": 7.25, "val_loss": null}' '{"step": 2, "loss": 6.5, "val_loss": 6.75}' \
  > "$work/metrics.jsonl"
[[ $(metric "$work/metrics.jsonl" loss) == 6.5 ]] || fail "metric: last loss"
[[ $(metric "$work/metrics.jsonl" loss 1) == 7.25 ]] || fail "metric: loss at step 1"
[[ $(metric "$work/metrics.jsonl" val_loss all) == 6.75 ]] || fail "metric: null is absent"
if metric "$work/metrics.jsonl" loss 3 2> "$work/err"; then fail "metric at a missing step"; fi
grep -q "no 'loss' at step 3" "$work/err" || fail "metric error: $(cat "$work/err")"
echo "  metric: last, at a step, all; a missing step is an error"
echo PASS
