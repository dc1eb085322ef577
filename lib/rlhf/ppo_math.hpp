// The arithmetic of DeepSpeed-Chat's PPO (dschat/rlhf/ppo_trainer.py) and
// of its reward model's pairwise loss (dschat/utils/model/reward_model.py),
// as functions of tensors, checked against a PyTorch transcription
// (tests/rlhf/make_golden.py).
//
// Coordinates are DeepSpeed-Chat's. A generated batch is (B, T) tokens:
// each row its left-padded prompt of width P, then its answer of len_b
// tokens, then padding. Action position t in [0, T - 1) scores token t + 1,
// so the answer's actions are t in [start, start + len_b) with start =
// P - 1, and per-token quantities are (B, T - 1 - start) from start on.
//
// One deliberate difference: DeepSpeed-Chat adds the reward-model score at
// action start + len_b (ends - 1 with ends = start + sum + 1), one past the
// last generated token when the answer ends early, and on the last token
// when it fills max_answer_seq_len. Here it is always on the last generated
// token (start + len_b - 1), as its comment says and InstructGPT means.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::rlhf {

// DeepSpeed-Chat's constants (DeepSpeedPPOTrainer.__init__).
struct PpoConstants {
  double kl_ctl = 0.1;
  double clip_reward_value = 5;
  double cliprange = 0.2;
  double cliprange_value = 0.2;
  double gamma = 1.0;
  double lam = 0.95;
};

// The answer region's mask (B, n): 1 for the first len_b actions of row b.
Tensor answer_mask(const std::vector<int64_t>& answer_lengths, int64_t n);

// Per-token rewards (B, n), on the host: -kl_ctl (log p - log p_ref) at every
// action, plus the reward-model score clipped to +-clip_reward_value at each
// row's last generated token, zero after it. log_probs and ref_log_probs are
// (B, n) over the answer region; scores (B).
Tensor per_token_rewards(const Tensor& log_probs, const Tensor& ref_log_probs,
                         const std::vector<float>& scores,
                         const std::vector<int64_t>& answer_lengths, const PpoConstants& c);

// GAE (trlx's, as DeepSpeed-Chat): advantages and returns (B, n) from the
// critic's old values (B, n) and the rewards, both taken as zero after each
// row's answer.
struct Gae {
  Tensor advantages, returns;
};
Gae advantages_and_returns(const Tensor& values, const Tensor& rewards,
                           const std::vector<int64_t>& answer_lengths, const PpoConstants& c);

// The clipped policy loss (differentiable in log_probs): with ratio =
// exp((log_probs - old_log_probs) * mask),
//   sum(max(-A ratio, -A clamp(ratio, 1 - eps, 1 + eps)) * mask) / sum(mask).
// old_log_probs, advantages and mask (B, n) are constants.
Tensor actor_loss(const Tensor& log_probs, const Tensor& old_log_probs, const Tensor& advantages,
                  const Tensor& mask, double cliprange);

// The clipped value loss (differentiable in values):
//   0.5 sum(max((v - R)^2, (clamp(v, v_old - eps, v_old + eps) - R)^2) * mask) / sum(mask).
Tensor critic_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                   const Tensor& mask, double cliprange_value);

// The share of masked actions where the policy's ratio left [1 - eps,
// 1 + eps] (the clip fraction), and the critic's where the clipped value
// loss was the larger.
double policy_clip_fraction(const Tensor& log_probs, const Tensor& old_log_probs,
                            const Tensor& mask, double cliprange);
double value_clip_fraction(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                           const Tensor& mask, double cliprange_value);

// The reward model's pairwise loss over B pairs. rewards (2B, T): the value
// head's output at every position of the chosen rows, then the rejected
// rows (right-padded, width T). Pair i compares positions [d_i, e_i): d_i the
// first position where its token ids differ, e_i the longer row's length;
// loss = mean_i mean_t -log sigmoid(r_chosen - r_rejected). Each row's score
// is its value at its last token.
struct PairLossInputs {
  std::vector<int64_t> divergence, end;  // per pair
  std::vector<int64_t> chosen_length, rejected_length;
};
// From the batch's ids (2B, T) and each row's length.
PairLossInputs pair_loss_inputs(const Tensor& ids, const std::vector<int64_t>& lengths);
struct PairLoss {
  Tensor loss;  // (1), differentiable in rewards
  std::vector<float> chosen_scores, rejected_scores;
};
PairLoss pairwise_loss(const Tensor& rewards, const PairLossInputs& in);

}  // namespace turbine::rlhf
