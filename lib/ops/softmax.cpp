// Softmax and cross entropy (fused with log-softmax).
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

Tensor softmax(const Tensor& x) {
  check_f32("softmax", {&x});
  const int64_t cols = x.dim(-1);
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  backend_for(x.device()).softmax_forward(x.data<float>(), y.data<float>(), x.numel() / cols, cols);
  return y;
}

void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx) {
  check_f32("softmax_backward", {&y, &dy});
  TURBINE_CHECK(y.shape() == dy.shape(), "softmax_backward: gradient {} for output {}", dy.str(),
                y.str());
  const int64_t cols = y.dim(-1);
  const bool acc = prepare_grad(dx, y);
  backend_for(y.device())
      .softmax_backward(y.data<float>(), dy.data<float>(), dx->data<float>(), y.numel() / cols,
                        cols, acc);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved) {
  const kernels::FloatType type = check_activations("cross_entropy", {&logits});
  const int64_t vocab = logits.dim(-1), rows = logits.numel() / vocab;
  TURBINE_CHECK(targets.numel() == rows,
                "cross_entropy: {} targets for {} rows of logits {} (targets must have the "
                "logits' shape without the last dim)",
                targets.numel(), rows, logits.str());
  CrossEntropySaved local;
  CrossEntropySaved& s = saved ? *saved : local;
  s.targets = to_index(targets, "cross_entropy");
  const auto host_targets = s.targets.to(Device::cpu()).to_vector<int64_t>();
  s.counted = 0;
  for (int64_t t : host_targets) {
    if (t == ignore_index) continue;
    TURBINE_CHECK(t >= 0 && t < vocab, "cross_entropy: target {} outside the vocabulary [0, {})", t,
                  vocab);
    ++s.counted;
  }
  s.lse = Tensor::empty({rows}, DType::f32, logits.device());
  Tensor losses = Tensor::empty({rows}, DType::f32, logits.device());
  kernels::Backend& be = backend_for(logits.device());
  if (type == kernels::FloatType::f32)
    be.cross_entropy_forward(logits.data<float>(), s.targets.data<int64_t>(), losses.data<float>(),
                             s.lse.data<float>(), rows, vocab, ignore_index);
  else
    be.cross_entropy_forward16(type, bits(logits), s.targets.data<int64_t>(), losses.data<float>(),
                               s.lse.data<float>(), rows, vocab, ignore_index);
  const double total = be.sum(losses.data<float>(), rows);
  s.total = total;
  const float mean = s.counted > 0 ? static_cast<float>(total / s.counted) : 0.0f;
  return Tensor::from_vector<float>({1}, std::vector<float>{mean}, logits.device());
}

void cross_entropy_backward(const Tensor& logits, const CrossEntropySaved& saved,
                            int64_t ignore_index, float dloss, Tensor* dlogits) {
  const kernels::FloatType type = check_activations("cross_entropy_backward", {&logits});
  const int64_t vocab = logits.dim(-1), rows = logits.numel() / vocab;
  const bool acc = prepare_grad(dlogits, logits);
  const float scale = saved.counted > 0 ? dloss / static_cast<float>(saved.counted) : 0.0f;
  kernels::Backend& be = backend_for(logits.device());
  if (type == kernels::FloatType::f32)
    be.cross_entropy_backward(logits.data<float>(), saved.targets.data<int64_t>(),
                              saved.lse.data<float>(), scale, dlogits->data<float>(), rows, vocab,
                              ignore_index, acc);
  else
    be.cross_entropy_backward16(type, bits(logits), saved.targets.data<int64_t>(),
                                saved.lse.data<float>(), scale, bits(*dlogits), rows, vocab,
                                ignore_index, acc);
}

// ---- log_softmax and per-token log-probabilities (PPO) ------------------------------

// x (..., V) -> (..., V)
Tensor log_softmax(const Tensor& x) {
  check_f32("log_softmax", {&x});
  const int64_t cols = x.dim(-1);
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  backend_for(x.device())
      .log_softmax_forward(x.data<float>(), y.data<float>(), x.numel() / cols, cols);
  return y;
}

void log_softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx) {
  check_f32("log_softmax_backward", {&y, &dy});
  TURBINE_CHECK(y.shape() == dy.shape(), "log_softmax_backward: gradient {} for output {}",
                dy.str(), y.str());
  const int64_t cols = y.dim(-1);
  const bool acc = prepare_grad(dx, y);
  backend_for(y.device())
      .log_softmax_backward(y.data<float>(), dy.data<float>(), dx->data<float>(), y.numel() / cols,
                            cols, acc);
}

// logits (..., V), ids (...) -> (...). The forward is cross entropy's kernel
// (lse - logit at the target) negated: no id is ignored.
Tensor token_log_probs(const Tensor& logits, const Tensor& ids, TokenLogProbSaved* saved) {
  check_f32("token_log_probs", {&logits});
  Shape rows_shape = logits.shape();
  rows_shape.pop_back();
  TURBINE_CHECK(ids.shape() == rows_shape || (rows_shape.empty() && ids.numel() == 1),
                "token_log_probs: ids {} must have the logits' shape {} without the last dim",
                ids.str(), shape_str(logits.shape()));
  const int64_t vocab = logits.dim(-1), rows = ids.numel();
  TokenLogProbSaved local;
  TokenLogProbSaved& s = saved ? *saved : local;
  s.ids = to_index(ids, "token_log_probs").to(logits.device());
  for (int64_t id : s.ids.to(Device::cpu()).to_vector<int64_t>())
    TURBINE_CHECK(id >= 0 && id < vocab,
                  "token_log_probs: id {} outside the vocabulary [0, {}) of logits {}", id, vocab,
                  logits.str());
  s.lse = Tensor::empty({rows}, DType::f32, logits.device());
  Tensor y = Tensor::empty(ids.shape(), DType::f32, logits.device());
  kernels::Backend& be = backend_for(logits.device());
  be.cross_entropy_forward(logits.data<float>(), s.ids.data<int64_t>(), y.data<float>(),
                           s.lse.data<float>(), rows, vocab, /*ignore_index=*/-1);
  be.scale(y.data<float>(), y.data<float>(), rows, -1.0f, false);
  return y;
}

void token_log_probs_backward(const Tensor& logits, const TokenLogProbSaved& saved,
                              const Tensor& dy, Tensor* dlogits) {
  check_f32("token_log_probs_backward", {&logits, &dy});
  const int64_t vocab = logits.dim(-1), rows = logits.numel() / vocab;
  TURBINE_CHECK(dy.numel() == rows, "token_log_probs_backward: gradient {} for logits {}", dy.str(),
                logits.str());
  const bool acc = prepare_grad(dlogits, logits);
  backend_for(logits.device())
      .token_log_prob_backward(logits.data<float>(), saved.ids.data<int64_t>(),
                               saved.lse.data<float>(), dy.data<float>(), dlogits->data<float>(),
                               rows, vocab, acc);
}

}  // namespace turbine::ops
