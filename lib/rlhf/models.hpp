// The models of RLHF: BLOOM as the policy (SFT's and PPO's actor, the
// frozen reference) and BLOOM with DeepSpeed-Chat's value head as the reward
// model and the critic. Sequences are right-padded: each row its prompt,
// its answer, then padding, so every forward is plain causal attention and
// padding never reaches a real token. A row's answer region is given by its
// first action position (the prompt's last token, which predicts the first
// answer token) and a common width.
#pragma once

#include <string>
#include <vector>

#include "nn/bloom.hpp"
#include "nn/lora.hpp"

namespace turbine::rlhf {

// log p(ids[b, s_b + k + 1] | ids[b, ..s_b + k]) for k in [0, count):
// (B, count), differentiable. starts (B): s_b; every s_b + count < T.
// The LM head runs on those positions only.
Tensor region_log_probs(const nn::Bloom& model, const Tensor& ids,
                        const std::vector<int64_t>& starts, int64_t count);

// BLOOM with a value head: v_head, Linear(hidden, 1) without bias, on the
// final hidden states. Parameters: the base's under its names, then
// "v_head.weight". A reward checkpoint is a model part holding all of them.
class RewardModel {
 public:
  // v_head drawn at `seed` with the base's initializer_range.
  RewardModel(nn::Bloom base, uint64_t seed);
  RewardModel(RewardModel&&) = default;
  RewardModel(const RewardModel&) = delete;
  RewardModel& operator=(const RewardModel&) = delete;
  RewardModel frozen_copy() const;

  // The value at every position (B, T).
  Tensor values(const Tensor& ids) const;
  // Values at positions s_b + k, k in [0, count): (B, count).
  Tensor region_values(const Tensor& ids, const std::vector<int64_t>& starts, int64_t count) const;

  nn::Bloom& base() { return base_; }
  const nn::Bloom& base() const { return base_; }
  nn::ParameterList& parameters() { return params_; }
  const nn::ParameterList& parameters() const { return params_; }
  // After the base's layers change (LoRA): lists the parameters again.
  void refresh_parameters();

 private:
  RewardModel(nn::Bloom base, nn::Linear v_head);
  nn::Bloom base_;
  nn::Linear v_head_;
  nn::ParameterList params_;
};

// Load a checkpoint's "model" part (what the previous step wrote) into a
// policy or a reward model. Adapters stored with a layer the model has plain
// are merged into its weight (W + lora_scaling B A, lora_scaling from the
// checkpoint's state); adapters the model has but the checkpoint lacks keep
// their fresh values (LoRA starts here). A checkpoint without a value head
// is refused as a reward model, by name.
void load_policy(const std::string& checkpoint, nn::Bloom& model);
void load_reward(const std::string& checkpoint, RewardModel& model);

}  // namespace turbine::rlhf
