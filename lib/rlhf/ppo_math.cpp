// PPO's and the reward model's arithmetic.
#include "rlhf/ppo_math.hpp"

#include <algorithm>

#include "autograd/functions.hpp"
#include "core/error.hpp"

namespace turbine::rlhf {

namespace {

void check_region(const char* what, const Tensor& t, int64_t rows, int64_t n) {
  TURBINE_CHECK(t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == n, "{}: expected ({}, {}), got {}",
                what, rows, n, t.str());
}

// a - b, differentiable in a only when b is a constant.
Tensor minus(const Tensor& a, const Tensor& b) {
  return ag::add(a, ag::scale(b, -1.0f));
}

double mask_sum(const Tensor& mask) {
  double total = 0;
  for (const float m : mask.to_vector<float>()) total += m;
  TURBINE_CHECK(total > 0, "PPO: the batch has no answer tokens (every mask entry is 0)");
  return total;
}

}  // namespace

Tensor answer_mask(const std::vector<int64_t>& answer_lengths, int64_t n) {
  const int64_t rows = int64_t(answer_lengths.size());
  std::vector<float> mask(size_t(rows * n), 0.0f);
  for (int64_t b = 0; b < rows; ++b)
    for (int64_t t = 0; t < std::min(n, answer_lengths[size_t(b)]); ++t)
      mask[size_t(b * n + t)] = 1.0f;
  return Tensor::from_vector<float>({rows, n}, mask);
}

Tensor per_token_rewards(const Tensor& log_probs, const Tensor& ref_log_probs,
                         const std::vector<float>& scores,
                         const std::vector<int64_t>& answer_lengths, const PpoConstants& c) {
  const int64_t rows = int64_t(answer_lengths.size()), n = log_probs.dim(1);
  check_region("per_token_rewards: log_probs", log_probs, rows, n);
  check_region("per_token_rewards: ref_log_probs", ref_log_probs, rows, n);
  TURBINE_CHECK(int64_t(scores.size()) == rows, "per_token_rewards: {} scores for {} rows",
                scores.size(), rows);
  const std::vector<float> lp = log_probs.to_vector<float>(),
                           ref = ref_log_probs.to_vector<float>();
  std::vector<float> r(size_t(rows * n), 0.0f);
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t len = answer_lengths[size_t(b)];
    TURBINE_CHECK(len >= 1 && len <= n, "per_token_rewards: answer {} has {} tokens of {}", b, len,
                  n);
    for (int64_t t = 0; t < len; ++t) {
      const size_t i = size_t(b * n + t);
      r[i] = float(-c.kl_ctl * (double(lp[i]) - double(ref[i])));
    }
    const double clip = c.clip_reward_value;
    r[size_t(b * n + len - 1)] += float(std::clamp(double(scores[size_t(b)]), -clip, clip));
  }
  return Tensor::from_vector<float>({rows, n}, r);
}

Gae advantages_and_returns(const Tensor& values, const Tensor& rewards,
                           const std::vector<int64_t>& answer_lengths, const PpoConstants& c) {
  const int64_t rows = int64_t(answer_lengths.size()), n = values.dim(1);
  check_region("advantages_and_returns: values", values, rows, n);
  check_region("advantages_and_returns: rewards", rewards, rows, n);
  std::vector<float> v = values.to_vector<float>(), r = rewards.to_vector<float>();
  std::vector<float> adv(size_t(rows * n)), ret(size_t(rows * n));
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t len = answer_lengths[size_t(b)];
    for (int64_t t = len; t < n; ++t) v[size_t(b * n + t)] = r[size_t(b * n + t)] = 0.0f;
    // In f32 as PyTorch computes it.
    float last = 0.0f;
    for (int64_t t = n - 1; t >= 0; --t) {
      const size_t i = size_t(b * n + t);
      const float next = t < n - 1 ? v[i + 1] : 0.0f;
      const float delta = r[i] + float(c.gamma) * next - v[i];
      last = delta + float(c.gamma) * float(c.lam) * last;
      adv[i] = last;
      ret[i] = last + v[i];
    }
  }
  return {Tensor::from_vector<float>({rows, n}, adv), Tensor::from_vector<float>({rows, n}, ret)};
}

Tensor actor_loss(const Tensor& log_probs, const Tensor& old_log_probs, const Tensor& advantages,
                  const Tensor& mask, double cliprange) {
  const int64_t rows = log_probs.dim(0), n = log_probs.dim(1);
  check_region("actor_loss: old_log_probs", old_log_probs, rows, n);
  check_region("actor_loss: advantages", advantages, rows, n);
  check_region("actor_loss: mask", mask, rows, n);
  const Device device = log_probs.device();
  const Tensor m = mask.to(device);
  const Tensor ratio = ag::exp(ag::mul(minus(log_probs, old_log_probs.to(device)), m));
  const Tensor neg_adv = ag::scale(advantages.to(device), -1.0f);
  const Tensor pg1 = ag::mul(ratio, neg_adv);
  const Tensor pg2 =
      ag::mul(ag::clamp(ratio, float(1.0 - cliprange), float(1.0 + cliprange)), neg_adv);
  return ag::scale(ag::sum(ag::mul(ag::maximum(pg1, pg2), m)), float(1.0 / mask_sum(mask)));
}

Tensor critic_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                   const Tensor& mask, double cliprange_value) {
  const int64_t rows = values.dim(0), n = values.dim(1);
  check_region("critic_loss: old_values", old_values, rows, n);
  check_region("critic_loss: returns", returns, rows, n);
  check_region("critic_loss: mask", mask, rows, n);
  const Device device = values.device();
  const Tensor old = old_values.to(device), ret = returns.to(device), m = mask.to(device);
  const float eps = float(cliprange_value);
  const Tensor clipped = ag::add(ag::clamp(minus(values, old), -eps, eps), old);
  const Tensor e1 = minus(values, ret), e2 = minus(clipped, ret);
  const Tensor worst = ag::maximum(ag::mul(e1, e1), ag::mul(e2, e2));
  return ag::scale(ag::sum(ag::mul(worst, m)), float(0.5 / mask_sum(mask)));
}

double policy_clip_fraction(const Tensor& log_probs, const Tensor& old_log_probs,
                            const Tensor& mask, double cliprange) {
  const std::vector<float> lp = log_probs.to_vector<float>(),
                           old = old_log_probs.to_vector<float>(), m = mask.to_vector<float>();
  double clipped = 0, total = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == 0.0f) continue;
    const double ratio = std::exp(double(lp[i]) - double(old[i]));
    clipped += ratio < 1.0 - cliprange || ratio > 1.0 + cliprange;
    total += 1;
  }
  return total > 0 ? clipped / total : 0.0;
}

double value_clip_fraction(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                           const Tensor& mask, double cliprange_value) {
  const std::vector<float> v = values.to_vector<float>(), old = old_values.to_vector<float>(),
                           ret = returns.to_vector<float>(), m = mask.to_vector<float>();
  double clipped = 0, total = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == 0.0f) continue;
    const double vc = std::clamp(double(v[i]), double(old[i]) - cliprange_value,
                                 double(old[i]) + cliprange_value);
    const double e1 = double(v[i]) - ret[i], e2 = vc - ret[i];
    clipped += e2 * e2 > e1 * e1;
    total += 1;
  }
  return total > 0 ? clipped / total : 0.0;
}

PairLossInputs pair_loss_inputs(const Tensor& ids, const std::vector<int64_t>& lengths) {
  TURBINE_CHECK(ids.ndim() == 2 && ids.dim(0) % 2 == 0 && int64_t(lengths.size()) == ids.dim(0),
                "pair_loss_inputs: ids (2B, T) with 2B lengths, got {} and {} lengths", ids.str(),
                lengths.size());
  const int64_t pairs = ids.dim(0) / 2, width = ids.dim(1);
  const std::vector<int64_t> all = ids.to(DType::i64).to_vector<int64_t>();
  PairLossInputs in;
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t lc = lengths[size_t(i)], lr = lengths[size_t(pairs + i)];
    TURBINE_CHECK(lc >= 1 && lc <= width && lr >= 1 && lr <= width,
                  "pair_loss_inputs: pair {} has lengths {} and {} in width {}", i, lc, lr, width);
    const int64_t* c = all.data() + i * width;
    const int64_t* r = all.data() + (pairs + i) * width;
    int64_t d = 0;
    while (d < std::min(lc, lr) && c[d] == r[d]) ++d;
    TURBINE_CHECK(d < std::max(lc, lr),
                  "pair {}: chosen and rejected are the same tokens: nothing to compare", i);
    TURBINE_CHECK(d > 0,
                  "pair {}: chosen and rejected differ at the first token (no shared prompt)", i);
    in.divergence.push_back(d);
    in.end.push_back(std::max(lc, lr));
    in.chosen_length.push_back(lc);
    in.rejected_length.push_back(lr);
  }
  return in;
}

PairLoss pairwise_loss(const Tensor& rewards, const PairLossInputs& in) {
  const int64_t pairs = int64_t(in.divergence.size());
  TURBINE_CHECK(rewards.ndim() == 2 && rewards.dim(0) == 2 * pairs,
                "pairwise_loss: rewards must be (2B, T) for {} pairs, got {}", pairs,
                rewards.str());
  const int64_t width = rewards.dim(1);
  const Device device = rewards.device();
  // r_chosen - r_rejected as one product: [I, -I] (B, 2B) @ rewards (2B, T).
  std::vector<float> pairing(size_t(pairs * 2 * pairs), 0.0f);
  for (int64_t i = 0; i < pairs; ++i) {
    pairing[size_t(i * 2 * pairs + i)] = 1.0f;
    pairing[size_t(i * 2 * pairs + pairs + i)] = -1.0f;
  }
  const Tensor gap =
      ag::matmul(Tensor::from_vector<float>({pairs, 2 * pairs}, pairing).to(device), rewards);
  // Each pair's mean over [divergence, end), then the mean over pairs.
  std::vector<float> weights(size_t(pairs * width), 0.0f);
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t d = in.divergence[size_t(i)], e = in.end[size_t(i)];
    for (int64_t t = d; t < e; ++t)
      weights[size_t(i * width + t)] = float(-1.0 / (double(e - d) * double(pairs)));
  }
  PairLoss out;
  out.loss = ag::sum(ag::mul(ag::log_sigmoid(gap),
                             Tensor::from_vector<float>({pairs, width}, weights).to(device)));
  const std::vector<float> r = rewards.to_vector<float>();
  for (int64_t i = 0; i < pairs; ++i) {
    out.chosen_scores.push_back(r[size_t(i * width + in.chosen_length[size_t(i)] - 1)]);
    out.rejected_scores.push_back(
        r[size_t((pairs + i) * width + in.rejected_length[size_t(i)] - 1)]);
  }
  return out;
}

}  // namespace turbine::rlhf
