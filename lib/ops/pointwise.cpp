// Pointwise ops: exp, log, ReLU, clamp, and multiply / minimum / maximum of
// two tensors, one of which may be broadcast (PPO's ratio * advantage, masks,
// torch.min of the clipped surrogates; per-channel scales of the CNNs).
#include <algorithm>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

using kernels::BinaryOp;
using kernels::Broadcast;
using kernels::UnaryOp;

// ---- unary ---------------------------------------------------------------------

namespace {

Tensor unary(const char* op_name, UnaryOp op, const Tensor& x, float lo = 0, float hi = 0) {
  check_f32(op_name, {&x});
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  backend_for(x.device()).unary_forward(op, x.data<float>(), y.data<float>(), x.numel(), lo, hi);
  return y;
}

// `input` is what the slope is computed from: y for exp, x for the others.
void unary_grad(const char* op_name, UnaryOp op, const Tensor& input, const Tensor& dy, Tensor* dx,
                float lo = 0, float hi = 0) {
  check_f32(op_name, {&input, &dy});
  TURBINE_CHECK(input.shape() == dy.shape(), "{}: gradient {} for a tensor {}", op_name, dy.str(),
                input.str());
  const bool acc = prepare_grad(dx, input);
  const float* in = input.data<float>();
  backend_for(input.device())
      .unary_backward(op, op == UnaryOp::exp ? nullptr : in, op == UnaryOp::exp ? in : nullptr,
                      dy.data<float>(), dx->data<float>(), input.numel(), lo, hi, acc);
}

}  // namespace

// x (...) -> (...)
Tensor exp(const Tensor& x) {
  return unary("exp", UnaryOp::exp, x);
}
void exp_backward(const Tensor& y, const Tensor& dy, Tensor* dx) {
  unary_grad("exp_backward", UnaryOp::exp, y, dy, dx);
}

Tensor log(const Tensor& x) {
  return unary("log", UnaryOp::log, x);
}
void log_backward(const Tensor& x, const Tensor& dy, Tensor* dx) {
  unary_grad("log_backward", UnaryOp::log, x, dy, dx);
}

Tensor log_sigmoid(const Tensor& x) {
  return unary("log_sigmoid", UnaryOp::log_sigmoid, x);
}
void log_sigmoid_backward(const Tensor& x, const Tensor& dy, Tensor* dx) {
  unary_grad("log_sigmoid_backward", UnaryOp::log_sigmoid, x, dy, dx);
}

Tensor relu(const Tensor& x) {
  return unary("relu", UnaryOp::relu, x);
}
void relu_backward(const Tensor& x, const Tensor& dy, Tensor* dx) {
  unary_grad("relu_backward", UnaryOp::relu, x, dy, dx);
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  TURBINE_CHECK(lo <= hi, "clamp: min {} is above max {}", lo, hi);
  return unary("clamp", UnaryOp::clamp, x, lo, hi);
}
void clamp_backward(const Tensor& x, float lo, float hi, const Tensor& dy, Tensor* dx) {
  unary_grad("clamp_backward", UnaryOp::clamp, x, dy, dx, lo, hi);
}

// ---- binary with broadcasting -------------------------------------------------------

namespace {

// How `small` spreads over `full` (see ops.hpp), or nullopt.
std::optional<Broadcast> broadcast_of(const Shape& full, const Shape& small) {
  if (small.size() > full.size()) return std::nullopt;
  Shape padded(full.size() - small.size(), 1);
  padded.insert(padded.end(), small.begin(), small.end());
  // The run of dims [first, last] where small is not 1 must equal full's.
  int first = -1, last = -1;
  for (int d = 0; d < int(full.size()); ++d)
    if (padded[d] != 1) {
      if (first < 0) first = d;
      last = d;
    }
  Broadcast b;
  for (int d = 0; d < int(full.size()); ++d) {
    if (first >= 0 && d >= first && d <= last) {
      if (padded[d] != full[d]) return std::nullopt;
      b.mid *= full[d];
    } else if (padded[d] != 1) {
      return std::nullopt;
    } else if (first < 0 || d < first) {
      b.outer *= full[d];
    } else {
      b.inner *= full[d];
    }
  }
  return b;
}

// Which operand is full-size (the ops are commutative, so either may be the
// broadcast one) and how the other spreads over it.
struct BinaryPlan {
  bool swapped;  // b is the full one
  Broadcast shape;
};

BinaryPlan plan_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_f32(op, {&a, &b});
  if (auto shape = broadcast_of(a.shape(), b.shape())) return {false, *shape};
  if (auto shape = broadcast_of(b.shape(), a.shape())) return {true, *shape};
  TURBINE_FAIL(
      "{}: shapes {} and {} do not broadcast: the smaller must equal the larger with leading "
      "dims dropped or set to 1 and trailing dims set to 1 (e.g. (C) or (B, T, 1) for (B, T, C))",
      op, shape_str(a.shape()), shape_str(b.shape()));
}

Tensor binary(const char* op_name, BinaryOp op, const Tensor& a, const Tensor& b) {
  const BinaryPlan plan = plan_binary(op_name, a, b);
  const Tensor& full = plan.swapped ? b : a;
  const Tensor& small = plan.swapped ? a : b;
  Tensor y = Tensor::empty(full.shape(), DType::f32, full.device());
  backend_for(full.device())
      .binary_forward(op, full.data<float>(), small.data<float>(), y.data<float>(), plan.shape);
  return y;
}

void binary_grad(const char* op_name, BinaryOp op, const Tensor& a, const Tensor& b,
                 const Tensor& dy, Tensor* da, Tensor* db) {
  const BinaryPlan plan = plan_binary(op_name, a, b);
  const Tensor& full = plan.swapped ? b : a;
  const Tensor& small = plan.swapped ? a : b;
  Tensor* dfull = plan.swapped ? db : da;
  Tensor* dsmall = plan.swapped ? da : db;
  check_f32(op_name, {&dy});
  TURBINE_CHECK(dy.shape() == full.shape(), "{}: gradient {} for a result {}", op_name, dy.str(),
                shape_str(full.shape()));
  kernels::Backend& be = backend_for(full.device());
  const bool acc_full = dfull ? prepare_grad(dfull, full) : false;
  bool acc_small = false;
  Tensor spread;  // the small operand's gradient per full element, before summing
  float* dsmall_full = nullptr;
  if (dsmall) {
    acc_small = prepare_grad(dsmall, small);
    if (small.numel() == full.numel()) {
      dsmall_full = dsmall->data<float>();
    } else {
      spread = Tensor::empty(full.shape(), DType::f32, full.device());
      dsmall_full = spread.data<float>();
    }
  }
  // minimum/maximum's slopes are symmetric in their operands and mul's too,
  // so the kernel's (a, b) roles can be (full, small) whatever the order.
  be.binary_backward(op, full.data<float>(), small.data<float>(), dy.data<float>(),
                     dfull ? dfull->data<float>() : nullptr, dsmall_full, plan.shape, acc_full,
                     spread.defined() ? false : acc_small);
  if (spread.defined())
    be.reduce_sum(spread.data<float>(), dsmall->data<float>(), plan.shape, 1.0f, acc_small);
}

}  // namespace

// a, b: one of them full-size (...), the other the same or broadcast -> (...)
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary("mul", BinaryOp::mul, a, b);
}
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  binary_grad("mul_backward", BinaryOp::mul, a, b, dy, da, db);
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary("minimum", BinaryOp::minimum, a, b);
}
void minimum_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  binary_grad("minimum_backward", BinaryOp::minimum, a, b, dy, da, db);
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary("maximum", BinaryOp::maximum, a, b);
}
void maximum_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  binary_grad("maximum_backward", BinaryOp::maximum, a, b, dy, da, db);
}

}  // namespace turbine::ops
