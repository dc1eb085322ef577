// Elementwise ops: add, scale, GeLU, dropout, and the sum of squares.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

// Each op here runs on f32 or 16-bit activations (check_activations).
using kernels::FloatType;

Tensor add(const Tensor& a, const Tensor& b, float alpha, float beta) {
  const FloatType t = check_activations("add", {&a, &b});
  TURBINE_CHECK(a.shape() == b.shape(), "add: shapes differ: {} and {}", shape_str(a.shape()),
                shape_str(b.shape()));
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  kernels::Backend& be = backend_for(a.device());
  if (t == FloatType::f32)
    be.add(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), alpha, beta);
  else
    be.add16(t, bits(a), bits(b), bits(y), a.numel(), alpha, beta);
  return y;
}

Tensor scale(const Tensor& x, float alpha) {
  const FloatType t = check_activations("scale", {&x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == FloatType::f32)
    be.scale(x.data<float>(), y.data<float>(), x.numel(), alpha, false);
  else
    be.scale16(t, bits(x), bits(y), x.numel(), alpha, false);
  return y;
}

void scale_backward(const Tensor& dy, float alpha, Tensor* dx) {
  const FloatType t = check_activations("scale_backward", {&dy});
  const bool acc = prepare_grad(dx, dy);
  kernels::Backend& be = backend_for(dy.device());
  if (t == FloatType::f32)
    be.scale(dy.data<float>(), dx->data<float>(), dy.numel(), alpha, acc);
  else
    be.scale16(t, bits(dy), bits(*dx), dy.numel(), alpha, acc);
}

Tensor gelu(const Tensor& x) {
  const FloatType t = check_activations("gelu", {&x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == FloatType::f32)
    be.gelu_forward(x.data<float>(), y.data<float>(), x.numel());
  else
    be.gelu_forward16(t, bits(x), bits(y), x.numel());
  return y;
}

void gelu_backward(const Tensor& x, const Tensor& dy, Tensor* dx) {
  const FloatType t = check_activations("gelu_backward", {&x, &dy});
  TURBINE_CHECK(x.shape() == dy.shape(), "gelu_backward: gradient {} for input {}", dy.str(),
                x.str());
  const bool acc = prepare_grad(dx, x);
  kernels::Backend& be = backend_for(x.device());
  if (t == FloatType::f32)
    be.gelu_backward(x.data<float>(), dy.data<float>(), dx->data<float>(), x.numel(), acc);
  else
    be.gelu_backward16(t, bits(x), bits(dy), bits(*dx), x.numel(), acc);
}

Tensor dropout(const Tensor& x, float p, const DropoutRng& rng) {
  const FloatType t = check_activations("dropout", {&x});
  TURBINE_CHECK(p >= 0.0f && p < 1.0f, "dropout: probability {} is outside [0, 1)", p);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == FloatType::f32)
    be.dropout_forward(x.data<float>(), y.data<float>(), x.numel(), p, rng.seed, rng.stream,
                       rng.offset);
  else
    be.dropout_forward16(t, bits(x), bits(y), x.numel(), p, rng.seed, rng.stream, rng.offset);
  return y;
}

void dropout_backward(const Tensor& dy, float p, const DropoutRng& rng, Tensor* dx) {
  const FloatType t = check_activations("dropout_backward", {&dy});
  const bool acc = prepare_grad(dx, dy);
  kernels::Backend& be = backend_for(dy.device());
  if (t == FloatType::f32)
    be.dropout_backward(dy.data<float>(), dx->data<float>(), dy.numel(), p, rng.seed, rng.stream,
                        rng.offset, acc);
  else
    be.dropout_backward16(t, bits(dy), bits(*dx), dy.numel(), p, rng.seed, rng.stream, rng.offset,
                          acc);
}

double sum_squares(const Tensor& x) {
  check_f32("sum_squares", {&x});
  return backend_for(x.device()).sum_squares(x.data<float>(), x.numel());
}

Tensor add_bias(const Tensor& x, const Tensor& bias) {
  check_f32("add_bias", {&x, &bias});
  check_same_device("add_bias", {&x, &bias});
  TURBINE_CHECK(x.ndim() >= 1 && bias.ndim() == 1 && bias.dim(0) == x.dim(-1),
                "add_bias: bias {} does not match the last dim of {}", bias.str(), x.str());
  Tensor y = x.contiguous().clone();
  const int64_t cols = bias.dim(0);
  backend_for(x.device())
      .add_bias(y.data<float>(), bias.data<float>(), static_cast<int>(y.numel() / cols),
                static_cast<int>(cols));
  return y;
}

void add_bias_backward(const Tensor& dy, Tensor* dx, Tensor* dbias) {
  check_f32("add_bias_backward", {&dy});
  if (dx) scale_backward(dy, 1.0f, dx);
  if (dbias) {
    const int64_t cols = dy.dim(-1);
    const bool acc = prepare_grad(dbias, Shape{cols}, dy.device());
    backend_for(dy.device())
        .bias_backward(dy.data<float>(), dbias->data<float>(), static_cast<int>(dy.numel() / cols),
                       static_cast<int>(cols), acc);
  }
}

}  // namespace turbine::ops
