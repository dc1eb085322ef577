// The formulas of the pointwise kernels that the CPU and CUDA share, so the
// two backends select, clamp and route gradients identically: relu and clamp
// (NaN passes through, as in PyTorch), the unary slopes, and the binary ops
// with their slopes (minimum/maximum: a NaN operand wins; ties split the
// gradient in halves, as torch.minimum). exp and log stay with each backend
// (a vectorizable polynomial on the CPU, the device's expf/logf on CUDA).
#pragma once

#include <cmath>

#include "kernels/backend.hpp"
#include "kernels/host_device.hpp"

namespace turbine::kernels {

// relu or clamp of x (the unary ops that select rather than compute).
TURBINE_HOST_DEVICE inline float unary_select(UnaryOp op, float x, float lo, float hi) {
  if (op == UnaryOp::relu) return x < 0.0f ? 0.0f : x;
  return x < lo ? lo : (x > hi ? hi : x);
}

// log sigmoid(x) = min(x, 0) - log1p(e^-|x|): no overflow for any x.
TURBINE_HOST_DEVICE inline float log_sigmoid_value(float x) {
  return (x < 0.0f ? x : 0.0f) - log1pf(expf(-fabsf(x)));
}

// d op / dx at x, exp's from its output y. relu's is 0 at x <= 0; clamp's
// passes where lo <= x <= hi.
TURBINE_HOST_DEVICE inline float unary_slope(UnaryOp op, float x, float y, float lo, float hi) {
  switch (op) {
    case UnaryOp::exp:
      return y;
    case UnaryOp::log:
      return 1.0f / x;
    case UnaryOp::relu:
      return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::clamp:
      return x >= lo && x <= hi ? 1.0f : 0.0f;
    case UnaryOp::log_sigmoid:  // sigmoid(-x)
      return 1.0f / (1.0f + expf(x));
  }
  return 0.0f;
}

TURBINE_HOST_DEVICE inline float binary_value(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::minimum:
      return a < b || a != a ? a : b;
    case BinaryOp::maximum:
      return a > b || a != a ? a : b;
  }
  return a;
}

// (d op / da, d op / db).
TURBINE_HOST_DEVICE inline void binary_slopes(BinaryOp op, float a, float b, float& da, float& db) {
  if (op == BinaryOp::mul) {
    da = b;
    db = a;
    return;
  }
  const bool a_wins = op == BinaryOp::minimum ? a < b : a > b;
  const bool tie = a == b;
  da = tie ? 0.5f : (a_wins ? 1.0f : 0.0f);
  db = tie ? 0.5f : (a_wins ? 0.0f : 1.0f);
}

TURBINE_HOST_DEVICE inline void store(float* out, float value, bool accumulate) {
  *out = accumulate ? *out + value : value;
}

}  // namespace turbine::kernels
