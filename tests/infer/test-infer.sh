#!/usr/bin/env bash
# infer generate on a checkpoint that pretrain wrote (the tokenizer travels
# with it): stdout is exactly the prompt and its continuation, greedy output
# repeats, a seeded sample repeats and another seed differs, every weight
# type runs, and bad input is a clear one-line error with a non-zero exit.
# (KV-cache decoding against recomputation is tests/test_nn.cpp's kv_cache.)
set -euo pipefail
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
work=$build/tests/infer-work
export OMP_NUM_THREADS=1
infer=$build/apps/infer
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"
ckpt=$("$source/tests/infer/checkpoint.sh" "$build/tests/infer-checkpoint") || fail "no checkpoint"
[[ -f $ckpt/tokenizer.json ]] || fail "the checkpoint has no tokenizer.json"

# gen NAME ARGS...: infer generate into NAME.out (stdout) and NAME.err.
gen() {
  local name=$1
  shift
  "$infer" generate --checkpoint "$ckpt" "$@" > "$work/$name.out" 2> "$work/$name.err"
}
prompt="And God said"
gen greedy --prompt "$prompt" --set sampling.temperature=0 --set sampling.max_new_tokens=20 \
  || fail "greedy: $(cat "$work/greedy.err")"
[[ $(head -c ${#prompt} "$work/greedy.out") == "$prompt" ]] || fail "stdout does not start with the prompt"
[[ $(wc -c < "$work/greedy.out") -gt $((${#prompt} + 5)) ]] || fail "no continuation: $(cat "$work/greedy.out")"
grep -q "20 generated (length)" "$work/greedy.err" || fail "no summary on stderr: $(cat "$work/greedy.err")"
gen greedy2 --prompt "$prompt" --set sampling.temperature=0 --set sampling.max_new_tokens=20
cmp -s "$work/greedy.out" "$work/greedy2.out" || fail "greedy output differs between runs"
echo "  greedy: $(head -c 80 "$work/greedy.out")"

gen seed1 --prompt "$prompt" --set sampling.seed=1 --set sampling.max_new_tokens=30
gen seed1b --prompt "$prompt" --set sampling.seed=1 --set sampling.max_new_tokens=30
gen seed2 --prompt "$prompt" --set sampling.seed=2 --set sampling.max_new_tokens=30
cmp -s "$work/seed1.out" "$work/seed1b.out" || fail "a seeded sample does not repeat"
gen nucleus --prompt "$prompt" --set sampling.seed=1 --set sampling.top_p=0.5 \
  --set sampling.repetition_penalty=1.3 --set sampling.max_new_tokens=30 || fail "top_p: $(cat "$work/nucleus.err")"
! cmp -s "$work/seed1.out" "$work/seed2.out" || fail "seeds 1 and 2 gave the same sample"
# --stop: the seeded sample ends before the first occurrence of a piece of
# its own continuation (streamed text never shows the stop string).
stop=$(/usr/bin/python3 -c 'import sys; t = open(sys.argv[1]).read()[len(sys.argv[2]):]; print(t[12:15])' \
  "$work/seed1.out" "$prompt")
gen stopped --prompt "$prompt" --set sampling.seed=1 --set sampling.max_new_tokens=30 --stop "$stop" \
  || fail "--stop: $(cat "$work/stopped.err")"
/usr/bin/python3 - "$work/seed1.out" "$work/stopped.out" "$prompt" "$stop" <<'PY' || fail "--stop '$stop': $(cat "$work/stopped.out")"
import sys
full, got, prompt, stop = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
cont = full[len(prompt):]
want = prompt + cont[:cont.index(stop)] + "\n"
assert got == want, (got, want)
PY
grep -q "generated (stop)" "$work/stopped.err" || fail "--stop: finish reason: $(cat "$work/stopped.err")"
echo "  --stop '$stop': the text ends before it"

echo "  seeded samples repeat; seed 2 differs"

for dtype in bf16 f16 int8; do
  gen "w-$dtype" --prompt "$prompt" --set inference.dtype=$dtype --set sampling.temperature=0 \
    --set sampling.max_new_tokens=20 || fail "$dtype: $(cat "$work/w-$dtype.err")"
  grep -q "8 linear layers and the LM head in $dtype" "$work/w-$dtype.err" || fail "$dtype: not compacted"
done
echo "  bf16, f16 and int8 weights: $(grep -o 'weights: .*' "$work/w-int8.err")"

# A prompts file, batched (ragged: 3, 4 and 5 tokens and more): greedy rows
# equal the single-prompt runs, a stop string cuts the text, log-probabilities
# come one per token.
cat > "$work/prompts.jsonl" <<'JSONL'
{"prompt": "And God said", "temperature": 0, "max_new_tokens": 20}
{"prompt": "In the beginning God created", "seed": 3, "logprobs": true, "max_new_tokens": 9}

{"prompt": "And the LORD", "temperature": 0, "stop": [" and", " the"], "max_new_tokens": 40}
JSONL
"$infer" generate --checkpoint "$ckpt" --prompts-file "$work/prompts.jsonl" --set inference.batch_size=2 \
  > "$work/batch.jsonl" 2> "$work/batch.err" || fail "prompts file: $(cat "$work/batch.err")"
python3 - "$work" "$prompt" <<'PY' || fail "prompts file results"
import json, sys
work, prompt = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{work}/batch.jsonl")]
assert len(rows) == 3, rows
single = open(f"{work}/greedy.out").read().rstrip("\n")
assert prompt + rows[0]["text"] == single, (rows[0]["text"], single)
assert rows[0]["finish_reason"] == "length" and len(rows[0]["tokens"]) == 20
assert len(rows[1]["logprobs"]) == len(rows[1]["tokens"]) == 9
assert all(lp <= 0 for lp in rows[1]["logprobs"])
assert rows[2]["finish_reason"] == "stop", rows[2]
assert " and" not in rows[2]["text"] and " the" not in rows[2]["text"], rows[2]
print("  prompts file: batched greedy row equals the single run; stop strings cut at",
      repr(rows[2]["text"]), "; logprobs", len(rows[1]["logprobs"]))
PY

# infer bench on a model config (random weights) and on the checkpoint: the
# figures are there and positive.
for source_arg in "--model $source/configs/models/bloom-tiny.yaml" "--checkpoint $ckpt"; do
  # shellcheck disable=SC2086
  "$infer" bench $source_arg --set inference.dtype=int8 > "$work/bench.json" 2> "$work/bench.err" \
    || fail "bench $source_arg: $(cat "$work/bench.err")"
  python3 - "$work/bench.json" <<'PY' || fail "bench figures: $(cat "$work/bench.json")"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for key in ("copy_gb_per_s", "prefill_tokens_per_s", "decode_b1_tokens_per_s",
            "decode_b8_tokens_per_s", "decode_b32_tokens_per_s", "bytes_per_token",
            "bandwidth_limit_tokens_per_s", "resident_mib"):
    assert r[key] > 0, key
assert r["weights"] == "int8"
PY
  grep -q "decode vs bandwidth limit: " "$work/bench.err" || fail "bench: no bandwidth line"
done
echo "  infer bench: $(grep -o 'decode vs bandwidth limit: .*' "$work/bench.err")"

# Quality of compact weights: validation perplexity with bf16 and int8
# weights within 1% of f32's (infer bench --eval on the training data set).
data=$build/tests/pretrain-work/data.h5
for dtype in bf16 int8; do
  "$infer" bench --checkpoint "$ckpt" --eval "$data" --set inference.dtype=$dtype \
    > "$work/eval-$dtype.json" 2> "$work/eval-$dtype.err" || fail "eval $dtype: $(cat "$work/eval-$dtype.err")"
  /usr/bin/python3 - "$work/eval-$dtype.json" <<'PY' || fail "eval $dtype: $(cat "$work/eval-$dtype.json")"
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["eval_tokens"] >= 1024 and r["perplexity_f32"] > 1, r
assert abs(r["perplexity_change"]) < 0.01, r
PY
  echo "  eval $dtype: $(grep -o 'eval perplexity: .*' "$work/eval-$dtype.err")"
done

# expect_error NAME WORDS -- ARGS: a non-zero exit whose stderr names WORDS.
expect_error() {
  local name=$1 words=$2
  shift 3
  if "$infer" generate "$@" > "$work/bad-$name.out" 2> "$work/bad-$name.err"; then
    fail "$name: exit status 0"
  fi
  grep -q -- "$words" "$work/bad-$name.err" || fail "$name: message lacks '$words': $(cat "$work/bad-$name.err")"
  echo "  $name: $(grep -m1 -o 'error: .*' "$work/bad-$name.err" | cut -c1-120)"
}
expect_error no_checkpoint "is not a folder" -- --checkpoint "$work/nothing" --prompt x
mkdir -p "$work/no-tok" && cp "$ckpt/config.yaml" "$ckpt/model.h5" "$work/no-tok/"
expect_error no_tokenizer "no tokenizer.json" -- --checkpoint "$work/no-tok" --prompt x
expect_error long_prompt "a sequence may hold 4" -- --checkpoint "$ckpt" \
  --prompt "And God said, Let there be light" --set inference.max_out_tokens=4
printf '{"prompt": "x"}\n{"prompt": "y", "temprature": 1}\n' > "$work/bad-key.jsonl"
expect_error prompts_key 'line 2: unknown key "temprature"' -- --checkpoint "$ckpt" \
  --prompts-file "$work/bad-key.jsonl"
printf '{"prompt": "x"}\nnot json\n' > "$work/bad-json.jsonl"
expect_error prompts_json "line 2: not JSON" -- --checkpoint "$ckpt" --prompts-file "$work/bad-json.jsonl"
expect_error bad_top_p "top_p" -- --checkpoint "$ckpt" --prompt x --set sampling.top_p=1.5
expect_error bad_dtype "inference.dtype" -- --checkpoint "$ckpt" --prompt x --set inference.dtype=int4
expect_error small_budget "give at least" -- --checkpoint "$ckpt" --prompt x \
  --set inference.zero.offload_param.device=nvme --set inference.zero.offload_param.max_resident_mb=0.1
expect_error cpu_offload_on_cpu "use nvme" -- --checkpoint "$ckpt" --prompt x \
  --set inference.zero.offload_param.device=cpu
expect_error bad_group "does not divide" -- --checkpoint "$ckpt" --prompt x \
  --set inference.dtype=int8 --set inference.int8_group=7
# Tensor parallelism under mpirun: 2 ranks split the 4 heads and decode the
# single rank's greedy text and seeded bf16 sample; 3 ranks do not divide the
# heads, which is refused before any weight is read.
source "$source/tools/lib/common.sh"
run_mpi 2 "$infer" generate --checkpoint "$ckpt" --prompt "$prompt" --set sampling.temperature=0 \
  --set sampling.max_new_tokens=20 > "$work/tp2.out" 2> "$work/tp2.err" || fail "tp 2: $(cat "$work/tp2.err")"
cmp -s "$work/greedy.out" "$work/tp2.out" || fail "tp 2 greedy text differs: $(cat "$work/tp2.out")"
gen seed1-bf16 --prompt "$prompt" --set sampling.seed=1 --set sampling.max_new_tokens=30 --set inference.dtype=bf16
run_mpi 2 "$infer" generate --checkpoint "$ckpt" --prompt "$prompt" --set sampling.seed=1 \
  --set sampling.max_new_tokens=30 --set inference.dtype=bf16 > "$work/tp2-bf16.out" 2> "$work/tp2-bf16.err" \
  || fail "tp 2 bf16: $(cat "$work/tp2-bf16.err")"
cmp -s "$work/seed1-bf16.out" "$work/tp2-bf16.out" || fail "tp 2 bf16 sample differs"
if run_mpi 3 "$infer" generate --checkpoint "$ckpt" --prompt x > /dev/null 2> "$work/tp3.err"; then
  fail "tp 3 over 4 heads: exit status 0"
fi
grep -q "tp_size 3 does not divide the model's 4 attention heads" "$work/tp3.err" \
  || fail "tp 3: $(cat "$work/tp3.err")"
echo "  tensor parallel: 2 ranks decode the single rank's text (greedy f32, sampled bf16); 3 refused"

# Weight streaming from a swap file: under a budget that holds the
# embeddings and one of the two layers (0.2 MiB of 0.23), the greedy text is
# the resident one, and the log says how much reading overlapped decoding.
gen streamed --prompt "$prompt" --set sampling.temperature=0 --set sampling.max_new_tokens=20 \
  --set inference.zero.offload_param.device=nvme --set inference.zero.offload_param.nvme_path="$work" \
  --set inference.zero.offload_param.max_resident_mb=0.2 || fail "streamed: $(cat "$work/streamed.err")"
cmp -s "$work/greedy.out" "$work/streamed.out" || fail "streamed greedy text differs: $(cat "$work/streamed.out")"
grep -q "through 1 resident slot" "$work/streamed.err" || fail "streamed: not one slot: $(cat "$work/streamed.err")"
grep -q "weights streamed: " "$work/streamed.err" || fail "streamed: no overlap report"
[[ -z $(ls "$work" | grep turbine-weights) ]] || fail "the swap file outlived the run"
echo "  streamed under 0.2 MiB: the resident text; $(grep -o 'decoding waited.*' "$work/streamed.err")"

# Hugging Face folders: the checkpoint exported (f32) and imported again
# decodes the same greedy tokens, infer reads the exported folder directly,
# and bad folders or outputs are refused (tests/test_safetensors.cpp checks
# the formats themselves against PyTorch).
convert=$build/apps/convert-hf
"$convert" export "$ckpt" --output "$work/hf" 2> "$work/export.err" || fail "export: $(cat "$work/export.err")"
"$convert" export "$ckpt" --output "$work/hf-bf16" --dtype bf16 2> "$work/export16.err" \
  || fail "export bf16: $(cat "$work/export16.err")"
(( $(stat -c %s "$work/hf-bf16/model.safetensors") * 19 / 10 < $(stat -c %s "$work/hf/model.safetensors") )) \
  || fail "the bf16 export is not about half the f32 one"
"$convert" import "$work/hf" --output "$work/imported" 2> "$work/import.err" || fail "import: $(cat "$work/import.err")"
for dir in hf imported; do
  "$infer" generate --checkpoint "$work/$dir" --prompt "$prompt" --set sampling.temperature=0 \
    --set sampling.max_new_tokens=20 > "$work/greedy-$dir.out" 2> "$work/greedy-$dir.err" \
    || fail "generate from $dir: $(cat "$work/greedy-$dir.err")"
  cmp -s "$work/greedy.out" "$work/greedy-$dir.out" || fail "greedy output from $dir differs"
done
echo "  export (f32, bf16) and import: the same greedy text from the Hugging Face folder and the re-import"
expect_convert_error() {
  local name=$1 words=$2
  shift 3
  if "$convert" "$@" > /dev/null 2> "$work/bad-$name.err"; then fail "$name: exit status 0"; fi
  grep -q -- "$words" "$work/bad-$name.err" || fail "$name: message lacks '$words': $(cat "$work/bad-$name.err")"
  echo "  $name: $(grep -m1 -o 'error: .*' "$work/bad-$name.err" | cut -c1-120)"
}
expect_convert_error import_not_hf "not a Hugging Face model folder" -- import "$ckpt" --output "$work/x"
expect_convert_error import_exists "exists already" -- import "$work/hf" --output "$work/imported"
expect_convert_error export_exists "exists already" -- export "$ckpt" --output "$work/hf"
[[ ! -e $work/x && ! -e $work/.tmp-x ]] || fail "a refused import left files behind"
mkdir -p "$work/hf-cut" && cp "$work/hf"/*.json "$work/hf-cut/"
head -c 100000 "$work/hf/model.safetensors" > "$work/hf-cut/model.safetensors"
expect_error truncated_safetensors "outside the" -- --checkpoint "$work/hf-cut" --prompt x
"$infer" generate --checkpoint "$ckpt" --prompt x --set inference.dtype=bf16 --dry-run \
  > "$work/dry.out" 2>&1 || fail "--dry-run"
grep -q "dtype: bf16" "$work/dry.out" || fail "--dry-run does not show the resolved config"
echo "  --dry-run prints the resolved config"
