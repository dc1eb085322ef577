#!/usr/bin/env bash
# VisualChat end to end, run by meson (one case per test): the rlhf tests'
# 2-layer BLOOM (tests/rlhf/fixture.sh), a ViT encoder trained for a few
# steps by `rlhf encoder` on Fashion-MNIST (tests/fedsim/fixture.sh), and a
# few dozen dialogues from tools/make-visualchat-data.
#   train      sft with model.type: visualchat under MMCA and causal
#              attention; answers scored by kind (answers.json); stopped
#              halfway and resumed equals the uninterrupted run; 2 ranks
#              equal 1 rank accumulating their micro-batches; `infer
#              generate` answers a two-image question from the command line
#   serve      infer serve answers chat messages with image_url parts over two
#              rounds; bad images, marker counts, non-data URLs: HTTP 400
#   bad_input  marker and image counts that differ, an unreadable image,
#              --image for a language model, visualchat outside sft, a missing
#              encoder: clear errors, non-zero exits
# Usage: test-visualchat.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi
work=$build/tests/visualchat-work
export OMP_NUM_THREADS=1
rlhf=$build/apps/rlhf
infer=$build/apps/infer
fail() { echo "FAIL: $*" >&2; exit 1; }

"$source/tests/rlhf/fixture.sh" "$build/tests/rlhf-work"
fashion=$("$source/tests/fedsim/fixture.sh" "$build/tests/fedsim-work")
mkdir -p "$work"
(
  flock 9
  if [[ ! -f $work/encoder/encoder.json ]]; then
    rm -rf "$work/encoder-run" "$work/encoder" "$work/dialogues"
    "$rlhf" encoder --config "$source/configs/rlhf/visualchat-encoder.yaml" \
      --set data.path="$fashion" --set output.dir="$work/encoder-run" --set train_steps=30 \
      --set scheduler.params.warmup_num_steps=5 --set eval.interval=0 --set checkpoint.interval=0 \
      > "$work/fixture.log" 2>&1 || { tail -5 "$work/fixture.log" >&2; fail "rlhf encoder"; }
    mv "$work/encoder-run/checkpoints/step_00000030" "$work/encoder"
    "$source/tools/make-visualchat-data" --train 64 --eval 6 -o "$work/dialogues" \
      >> "$work/fixture.log" 2>&1 || { tail -5 "$work/fixture.log" >&2; fail "make-visualchat-data"; }
  fi
) 9>"$work/.lock"

common=(--config "$source/configs/rlhf/visualchat.yaml"
        --set model_name_or_path="$build/tests/rlhf-work/pretrained"
        --set data_path="$work/dialogues" --set visualchat.encoder="$work/encoder"
        --set train_batch_size=4 --set train_micro_batch_size_per_gpu=2
        --set scheduler.params.warmup_num_steps=1 --set scheduler.params.total_num_steps=6
        --set sft.train_steps=6 --set eval.interval=3 --set eval.batches=2
        --set checkpoint.interval=3 --set visualchat.eval_conversations=6
        --set visualchat.answer_tokens=4 --set steps_per_print=1)
# sft OUT [--set ...]: rlhf sft into $work/OUT.
sft() {
  local out=$1
  shift
  "$rlhf" sft "${common[@]}" --set output.dir="$work/$out" "$@" >> "$work/$out.log" 2>&1
}
fresh() { rm -rf "${work:?}/$1" "$work/$1.log"; }
# expect_error WHAT TEXT COMMAND...: COMMAND fails and says TEXT.
expect_error() {
  local what=$1 text=$2
  shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what: exit status 0"; fi
  grep -qF -- "$text" <<< "$out" || fail "$what: expected '$text' in: $(tail -3 <<< "$out")"
}

case $case_name in
  train)
    fresh mmca
    sft mmca || fail "sft under MMCA (see $work/mmca.log)"
    python3 - "$work/mmca/sft/answers.json" <<'PY' || fail "answers.json"
import json, sys
scores = json.load(open(sys.argv[1]))
assert scores["attention"] == "mmca", scores
for kind in ("single", "multi", "multi-round", "overall"):
    assert 0 <= scores[kind]["accuracy"] <= 1 and scores[kind]["questions"] > 0, (kind, scores)
PY
    [[ $(wc -l < "$work/mmca/sft/answers.jsonl") -ge 6 ]] || fail "answers.jsonl"
    grep -q "parameters train (projection and input embeddings, LoRA adapters)" "$work/mmca.log" ||
      fail "the log names what trains"
    # Stopped at step 3 and resumed: the same losses bit for bit.
    fresh halves
    sft halves --set sft.train_steps=3 || fail "first half"
    sft halves --resume || fail "resumed"
    python3 "$source/tests/parallel/equivalence.py" losses "$work/halves/sft" "$work/mmca/sft" 0 \
      loss,val_loss || fail "resume differs"
    # 2 ranks equal 1 rank that accumulates their 2 micro-batches.
    fresh ranks
    run_mpi 2 "$rlhf" sft "${common[@]}" --set output.dir="$work/ranks" \
      --set gradient_accumulation_steps=1 >> "$work/ranks.log" 2>&1 || fail "sft on 2 ranks"
    fresh accumulated
    sft accumulated --set gradient_accumulation_steps=2 || fail "sft accumulating 2 micro-batches"
    python3 "$source/tests/parallel/equivalence.py" losses "$work/ranks/sft" \
      "$work/accumulated/sft" 1e-5 loss,val_loss || fail "2 ranks differ from 1 rank"
    fresh causal
    sft causal --set visualchat.attention=causal || fail "sft under causal attention"
    grep -q '"attention": "causal"' "$work/causal/sft/answers.json" || fail "causal answers.json"
    # Both attentions' losses differ (the masks matter) but both learn.
    ! python3 "$source/tests/parallel/equivalence.py" losses "$work/causal/sft" "$work/mmca/sft" 0 \
      loss > /dev/null || fail "MMCA and causal attention trained identically"
    # infer answers a question about two unseen (evaluation) images.
    checkpoint=$work/mmca/sft/checkpoints/step_00000006
    images=("$work"/dialogues/images/test/*.png)
    answer=$("$infer" generate --checkpoint "$checkpoint" --image "${images[0]}" \
      --image "${images[1]}" --prompt "Which image shows a bag?" --set sampling.max_new_tokens=4 \
      2> "$work/infer.log") || { cat "$work/infer.log" >&2; fail "infer generate with images"; }
    grep -q "2 image(s), MMCA attention" "$work/infer.log" || fail "infer log: $(cat "$work/infer.log")"
    echo "answer: $answer"
    ;;
  bad_input)
    checkpoint=$work/mmca/sft/checkpoints/step_00000006
    [[ -d $checkpoint ]] || { fresh mmca; sft mmca || fail "sft (see $work/mmca.log)"; }
    images=("$work"/dialogues/images/test/*.png)
    expect_error "more markers than images" "2 <image> markers in the questions but 1 images" \
      "$infer" generate --checkpoint "$checkpoint" --image "${images[0]}" \
      --prompt "<image> <image> Which image shows a bag?"
    expect_error "a file that is not a PNG" "not a readable PNG image" \
      "$infer" generate --checkpoint "$checkpoint" --image "$source/README.md" --prompt "What?"
    expect_error "a missing image" "missing.png" \
      "$infer" generate --checkpoint "$checkpoint" --image "$work/missing.png" --prompt "What?"
    expect_error "--image for a language model" "--image needs a VisualChat checkpoint" \
      "$infer" generate --checkpoint "$build/tests/rlhf-work/pretrained" --image "${images[0]}" \
      --prompt "What?"
    expect_error "visualchat in the reward step" "visualchat trains in the sft step only" \
      "$rlhf" reward "${common[@]}" --set output.dir="$work/bad"
    expect_error "a missing encoder" "is not a checkpoint: pretrain the encoder" \
      "$rlhf" sft "${common[@]}" --set visualchat.encoder="$work/nothing" --set output.dir="$work/bad"
    printf '{"images": ["a.png"], "rounds": [{"question": "hi", "answer": "x"}]}\n' > "$work/bad.jsonl"
    mkdir -p "$work/bad-data" && cp "$work/bad.jsonl" "$work/bad-data/train.jsonl" &&
      cp "$work/bad.jsonl" "$work/bad-data/eval.jsonl"
    expect_error "markers that do not match the images" "train.jsonl:1: 0 <image> markers" \
      "$rlhf" sft "${common[@]}" --set data_path="$work/bad-data" --set output.dir="$work/bad"
    ;;
  serve)
    # infer serve: chat messages with image_url parts (base64 PNG data URLs)
    # over two rounds; bad images and marker counts are 400s.
    checkpoint=$work/mmca/sft/checkpoints/step_00000006
    [[ -d $checkpoint ]] || { fresh mmca; sft mmca || fail "sft (see $work/mmca.log)"; }
    "$infer" serve --checkpoint "$checkpoint" --port 0 > "$work/serve.out" 2> "$work/serve.err" &
    server_pid=$!
    trap 'kill -KILL $server_pid 2>/dev/null || true' EXIT
    port=
    for _ in $(seq 600); do
      port=$(grep -o 'serving on http://127.0.0.1:[0-9]*' "$work/serve.err" | head -1 | cut -d: -f3 || true)
      if [[ -n $port ]] && curl -sf "http://127.0.0.1:$port/health" > /dev/null; then break; fi
      kill -0 "$server_pid" 2>/dev/null || fail "the server exited: $(tail -3 "$work/serve.err")"
      sleep 0.1
    done
    [[ -n $port ]] || fail "the server was not ready"
    images=("$work"/dialogues/images/test/*.png)
    python3 - "$port" "${images[0]}" "${images[1]}" <<'PY' || fail "serve requests"
import base64, json, sys, urllib.error, urllib.request
port, first, second = sys.argv[1], sys.argv[2], sys.argv[3]

def part(path):
    data = base64.b64encode(open(path, "rb").read()).decode()
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}

def ask(body, path="/v1/chat/completions"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

text = lambda t: {"type": "text", "text": t}
status, body = ask({"messages": [
    {"role": "user", "content": [part(first), text("What is in the image?")]},
    {"role": "assistant", "content": "A bag."},
    {"role": "user", "content": [part(second), text("Is image 2 the same kind of garment as image 1?")]}],
    "max_completion_tokens": 4})
assert status == 200, body
assert body["choices"][0]["message"]["role"] == "assistant", body
for content, why in [([part(first), text("<image> Which?")], "2 <image> markers"),
                     ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
                       text("What?")], "not a readable PNG"),
                     ([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                      "Only base64 data URLs"),
                     ([part(first)] * 9 + [text("?")], "max_images 8")]:
    status, body = ask({"messages": [{"role": "user", "content": content}]})
    assert status == 400 and why in body["error"]["message"], (status, body)
    # The user's mistake, not where in the server it was found.
    assert ".cpp:" not in body["error"]["message"], body
# A stream: the answer in one event, then [DONE].
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1/chat/completions",
    json.dumps({"messages": [{"role": "user", "content": [part(first), text("What is in the image?")]}],
                "stream": True, "max_completion_tokens": 4}).encode(),
    {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as r:
    events = [l for l in r.read().decode().split("\n") if l.startswith("data: ")]
assert events[-1] == "data: [DONE]", events
assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant", events
status, body = ask({"prompt": "hello"}, "/v1/completions")
assert status == 400 and "/v1/chat/completions" in body["error"]["message"], body
print("serve: ok")
PY
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "PASS: $case_name"
