// Softmax and cross entropy (fused with log-softmax).
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

Tensor softmax(const Tensor& x) {
  check_f32("softmax", {&x});
  const int64_t cols = x.dim(-1);
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  backend_for(x.device()).softmax_forward(x.data<float>(), y.data<float>(), x.numel() / cols,
                                          cols);
  return y;
}

void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx) {
  check_f32("softmax_backward", {&y, &dy});
  TURBINE_CHECK(y.shape() == dy.shape(), "softmax_backward: gradient {} for output {}", dy.str(),
                y.str());
  const int64_t cols = y.dim(-1);
  const bool acc = prepare_grad(dx, y);
  backend_for(y.device()).softmax_backward(y.data<float>(), dy.data<float>(), dx->data<float>(),
                                           y.numel() / cols, cols, acc);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved) {
  check_f32("cross_entropy", {&logits});
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
    TURBINE_CHECK(t >= 0 && t < vocab, "cross_entropy: target {} outside the vocabulary [0, {})",
                  t, vocab);
    ++s.counted;
  }
  s.lse = Tensor::empty({rows}, DType::f32, logits.device());
  Tensor losses = Tensor::empty({rows}, DType::f32, logits.device());
  kernels::Backend& be = backend_for(logits.device());
  be.cross_entropy_forward(logits.data<float>(), s.targets.data<int64_t>(), losses.data<float>(),
                           s.lse.data<float>(), rows, vocab, ignore_index);
  const double total = be.sum(losses.data<float>(), rows);
  const float mean = s.counted > 0 ? static_cast<float>(total / s.counted) : 0.0f;
  return Tensor::from_vector<float>({1}, std::vector<float>{mean}, logits.device());
}

void cross_entropy_backward(const Tensor& logits, const CrossEntropySaved& saved,
                            int64_t ignore_index, float dloss, Tensor* dlogits) {
  check_f32("cross_entropy_backward", {&logits});
  const int64_t vocab = logits.dim(-1), rows = logits.numel() / vocab;
  const bool acc = prepare_grad(dlogits, logits);
  const float scale = saved.counted > 0 ? dloss / static_cast<float>(saved.counted) : 0.0f;
  backend_for(logits.device())
      .cross_entropy_backward(logits.data<float>(), saved.targets.data<int64_t>(),
                              saved.lse.data<float>(), scale, dlogits->data<float>(), rows, vocab,
                              ignore_index, acc);
}

}  // namespace turbine::ops
