#!/usr/bin/env bash
# Tests of the rlhf job, run by meson (one case per test), on a 2-layer BLOOM
# pretrained for a few seconds and KJV preference pairs (tests/rlhf/fixture.sh).
#   resume     each step stopped halfway and resumed equals the uninterrupted run
#              bit for bit (losses, evaluation, PPO's rewards and KL)
#   ranks      each step on 2 ranks equals 1 rank with 2 micro-batches accumulated
#   all        `rlhf all` equals the three steps run by hand; --resume skips what finished;
#              the hybrid engine and recomputation give the same PPO run; the
#              unsupervised loss mixes in; LoRA with only_optimize_lora (and EMA)
#              trains and chains into the next step
#   bad_input  bad JSONL (line and key named), a reward checkpoint without a value
#              head, bad data_split, a missing data folder, init_from: clear errors,
#              non-zero exits; long prompts and equal pairs: documented handling
# Usage: test-rlhf.sh CASE (TURBINE_BUILD_ROOT and TURBINE_SOURCE_ROOT from the environment).
set -euo pipefail
case_name=$1
build=${TURBINE_BUILD_ROOT:?}
source=${TURBINE_SOURCE_ROOT:?}
source "$source/tools/lib/common.sh"  # run_mpi, metric
work=$build/tests/rlhf-work
export OMP_NUM_THREADS=1
rlhf=$build/apps/rlhf
config=$source/configs/rlhf/tiny.yaml

fail() { echo "FAIL: $*" >&2; exit 1; }

"$source/tests/rlhf/fixture.sh" "$work"
# The fixture's data and model; a fixed schedule so that runs of different
# lengths share their learning rates.
common=(--set data_path="$work/pairs" --set model_name_or_path="$work/pretrained"
        --set scheduler.params.total_num_steps=8)

# run NP OUT STEP [--set ...]: rlhf STEP into $work/OUT.
run() {
  local np=$1 out=$2 step=$3
  shift 3
  run_mpi "$np" "$rlhf" "$step" --config "$config" "${common[@]}" --set output.dir="$work/$out" \
    "$@" >> "$work/$out.log" 2>&1 || return $?
}
fresh() { rm -rf "${work:?}/$1" "$work/$1.log"; }
# same DIR_A DIR_B TOL KEYS: every step's values of KEYS (comma-separated) within TOL.
same() { python3 "$source/tests/parallel/equivalence.py" losses "$work/$1" "$work/$2" "${@:3}"; }

sft_keys=loss,val_loss
reward_keys=loss,val_loss,accuracy,chosen_score,rejected_score,train_accuracy
ppo_keys=loss,reward_mean,kl,critic_loss,answer_len,eval_reward,eval_kl

case $case_name in
  resume)
    fresh whole
    run 1 whole all || fail "uninterrupted run (see $work/whole.log)"
    fresh halves
    run 1 halves sft --set sft.train_steps=4 || fail "first half of sft"
    run 1 halves sft --resume || fail "sft resumed"
    same halves/sft whole/sft 0 "$sft_keys"
    run 1 halves reward --set reward.model_name_or_path="$work/whole/sft/checkpoints/step_00000008" \
      --set reward.train_steps=4 || fail "first half of reward"
    run 1 halves reward --set reward.model_name_or_path="$work/whole/sft/checkpoints/step_00000008" \
      --resume || fail "reward resumed"
    same halves/reward whole/reward 0 "$reward_keys"
    ppo_models=(--set ppo.actor_model_name_or_path="$work/whole/sft/checkpoints/step_00000008"
                --set ppo.critic_model_name_or_path="$work/whole/reward/checkpoints/step_00000008")
    run 1 halves ppo "${ppo_models[@]}" --set ppo.train_steps=2 || fail "first half of ppo"
    run 1 halves ppo "${ppo_models[@]}" --resume || fail "ppo resumed"
    same halves/ppo whole/ppo 0 "$ppo_keys"
    ;;
  ranks)
    # 1 rank accumulating 2 micro-batches is the serial twin of 2 ranks.
    fresh one
    run 1 one all --set gradient_accumulation_steps=2 --set ppo.per_device_generation_batch_size=4 \
      --set ppo.per_device_training_batch_size=2 || fail "1 rank (see $work/one.log)"
    # Each step of the 2-rank run starts from the 1-rank run's models, so that
    # only the step's own parallelism is compared (rounding differences grow
    # through training: Adam scales tiny gradients up).
    fresh two
    two=(--set gradient_accumulation_steps=1 --set ppo.per_device_generation_batch_size=2
         --set ppo.per_device_training_batch_size=2)
    run 2 two sft "${two[@]}" || fail "2 ranks sft (see $work/two.log)"
    run 2 two reward "${two[@]}" --set reward.model_name_or_path="$work/one/sft/checkpoints/step_00000008" ||
      fail "2 ranks reward (see $work/two.log)"
    run 2 two ppo "${two[@]}" --set ppo.actor_model_name_or_path="$work/one/sft/checkpoints/step_00000008" \
      --set ppo.critic_model_name_or_path="$work/one/reward/checkpoints/step_00000008" ||
      fail "2 ranks ppo (see $work/two.log)"
    same two/sft one/sft 2e-5 "$sft_keys"
    same two/reward one/reward 5e-4 "$reward_keys"
    # (KL is a difference of nearly equal log-probabilities: compared exactly elsewhere.)
    same two/ppo one/ppo 1e-4 loss,reward_mean,critic_loss,answer_len,eval_reward
    ;;
  all)
    fresh chained
    run 1 chained all || fail "rlhf all (see $work/chained.log)"
    fresh by_hand
    run 1 by_hand sft || fail "sft by hand"
    run 1 by_hand reward --set reward.model_name_or_path="$work/by_hand/sft/checkpoints/step_00000008" ||
      fail "reward by hand"
    run 1 by_hand ppo --set ppo.actor_model_name_or_path="$work/by_hand/sft/checkpoints/step_00000008" \
      --set ppo.critic_model_name_or_path="$work/by_hand/reward/checkpoints/step_00000008" ||
      fail "ppo by hand"
    same by_hand/sft chained/sft 0 "$sft_keys"
    same by_hand/reward chained/reward 0 "$reward_keys"
    same by_hand/ppo chained/ppo 0 "$ppo_keys"
    # --resume on a finished chain runs nothing again.
    run 1 chained all --resume || fail "rlhf all --resume"
    [[ $(grep -c "finished already" "$work/chained.log") -eq 3 ]] || fail "finished steps not skipped"
    # Generation by recomputation gives the same PPO run as the hybrid engine.
    fresh recompute
    run 1 recompute ppo --set enable_hybrid_engine=false \
      --set ppo.actor_model_name_or_path="$work/by_hand/sft/checkpoints/step_00000008" \
      --set ppo.critic_model_name_or_path="$work/by_hand/reward/checkpoints/step_00000008" ||
      fail "ppo without the hybrid engine"
    same recompute/ppo chained/ppo 1e-5 "$ppo_keys"
    # Frozen reference and reward in infer's int8 weights: scores within rounding.
    fresh int8
    run 1 int8 ppo --set frozen_models_dtype=int8 \
      --set ppo.actor_model_name_or_path="$work/by_hand/sft/checkpoints/step_00000008" \
      --set ppo.critic_model_name_or_path="$work/by_hand/reward/checkpoints/step_00000008" ||
      fail "ppo with int8 frozen models (see $work/int8.log)"
    grep -q "frozen models in int8" "$work/int8.log" || fail "int8: not applied"
    same int8/ppo chained/ppo 0.05 reward_mean
    # The unsupervised (pretraining) loss mixed in: an actor update of its own.
    fresh unsup
    run 1 unsup ppo --set unsup_coef=0.5 --set unsup_data="$build/tests/pretrain-work/data.h5" \
      --set unsup_seq_len=32 --set ppo.train_steps=2 \
      --set ppo.actor_model_name_or_path="$work/by_hand/sft/checkpoints/step_00000008" \
      --set ppo.critic_model_name_or_path="$work/by_hand/reward/checkpoints/step_00000008" ||
      fail "ppo with unsup_coef (see $work/unsup.log)"
    [[ $(metric "$work/unsup/ppo/metrics.jsonl" unsup_loss 2) != "" ]] || fail "no unsup_loss"
    # LoRA adapters only: the chain merges them into the next step's model.
    fresh lora
    run 1 lora all --set lora_dim=4 --set actor_lora_dim=4 --set critic_lora_dim=4 \
      --set only_optimize_lora=true --set enable_ema=true || fail "LoRA chain (see $work/lora.log)"
    grep -q "only the adapters train" "$work/lora.log" || fail "LoRA not applied"
    [[ -f $work/lora/ppo/checkpoints/step_00000004/model_ema.h5 ]] || fail "no EMA saved"
    python3 - "$work/lora/sft/metrics.jsonl" <<'PY' || fail "LoRA SFT did not train"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[-1]["loss"] < lines[0]["loss"], (lines[0]["loss"], lines[-1]["loss"])
PY
    ;;
  bad_input)
    # expect_error OUT "TEXT" ARGS...: the run fails, saying TEXT.
    expect_error() {
      local out=$1 text=$2
      shift 2
      fresh "$out"
      if run 1 "$out" "$@"; then fail "$out: expected an error"; fi
      grep -qF -- "$text" "$work/$out.log" || { cat "$work/$out.log" >&2; fail "$out: no '$text'"; }
    }
    mkdir -p "$work/bad-pairs"
    cp "$work/pairs/eval.jsonl" "$work/bad-pairs/eval.jsonl"
    { head -3 "$work/pairs/train.jsonl"; echo '{"prompt": "Human: x Assistant:", "chosen": "y"}'; } \
      > "$work/bad-pairs/train.jsonl"
    expect_error bad-jsonl 'train.jsonl:4: the key "rejected" is missing' sft \
      --set data_path="$work/bad-pairs"
    expect_error bad-split "data_split '1,2' must be three shares" sft --set data_split=1,2
    expect_error bad-data "has no train.jsonl" sft --set data_path="$work/nowhere"
    expect_error bad-init "rlhf starts each step from model_name_or_path" sft --set init_from=x
    expect_error bad-end "end_of_conversation_token '<|im_end|>' is not a token" sft \
      --set end_of_conversation_token='<|im_end|>'
    expect_error bad-critic "has no value head (v_head.weight)" ppo \
      --set ppo.actor_model_name_or_path="$work/pretrained" \
      --set ppo.critic_model_name_or_path="$work/pretrained"
    expect_error bad-batch "must divide per_device_generation_batch_size" ppo \
      --set ppo.per_device_training_batch_size=3 --set ppo.actor_model_name_or_path="$work/pretrained" \
      --set ppo.critic_model_name_or_path="$work/reward-fixture"
    expect_error bad-step-key "ppo: " all --set ppo.ppo_epochs=0
    # Equal pairs are left out of the reward step with a warning naming the line.
    { head -20 "$work/pairs/train.jsonl"
      echo '{"prompt": "Human: a Assistant:", "chosen": "same", "rejected": "same"}'; } \
      > "$work/bad-pairs/train.jsonl"
    fresh equal
    run 1 equal reward --set data_split=0,1,0 --set data_path="$work/bad-pairs" \
      --set reward.train_steps=1 || fail "equal pairs"
    grep -q 'have "chosen" equal to "rejected" (line 21)' "$work/equal.log" || fail "equal pairs: no warning"
    # Prompts longer than max_prompt_seq_len are left out of PPO, counted.
    fresh long
    run 1 long ppo --set max_prompt_seq_len=48 --set ppo.train_steps=1 \
      --set ppo.actor_model_name_or_path="$work/pretrained" \
      --set ppo.critic_model_name_or_path="$work/reward-fixture" || fail "long prompts"
    grep -q "longer than max_prompt_seq_len" "$work/long.log" || fail "long prompts: no warning"
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
echo "PASS: $case_name"
