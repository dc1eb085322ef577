// Finite-difference gradient checking for the differentiable ops: the
// analytic gradient of <R, f(inputs)> (R random, fixed) against central
// differences on a sample of each input's elements.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "autograd/tape.hpp"
#include "core/rng.hpp"
#include "tensor/tensor.hpp"

namespace turbine::testing {

inline double norm_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  double diff = 0, base = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(ours[i]) - ref[i]) * (double(ours[i]) - ref[i]);
    base += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(base), 1e-30);
}

using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Returns the worst normalized error over the inputs that require grad.
inline double grad_check(const MultiFn& f, std::vector<Tensor> inputs, float eps = 1e-2f,
                         int samples = 48) {
  for (Tensor& t : inputs)
    if (t.requires_grad()) t.set_grad(Tensor());
  std::vector<Tensor> outs = f(inputs);
  std::vector<Tensor> seeds;
  for (size_t i = 0; i < outs.size(); ++i)
    seeds.push_back(Tensor::randn(outs[i].shape(), 99, 1000 + i));
  auto objective = [&](const std::vector<Tensor>& values) {
    autograd::NoGradGuard guard;
    const auto o = f(values);
    double total = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      const auto a = o[i].to_vector<float>();
      const auto r = seeds[i].to_vector<float>();
      for (size_t j = 0; j < a.size(); ++j) total += double(a[j]) * r[j];
    }
    return total;
  };
  for (size_t i = 1; i < outs.size(); ++i) outs[i].set_grad(seeds[i].clone());
  autograd::backward(outs[0], seeds[0]);
  double worst = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    const auto analytic = inputs[k].grad().to_vector<float>();
    std::vector<float> ours, numeric;
    const int64_t n = inputs[k].numel();
    const int64_t stride = std::max<int64_t>(1, n / samples);
    for (int64_t idx = 0; idx < n; idx += stride) {
      std::vector<Tensor> plus = inputs, minus = inputs;
      plus[k] = inputs[k].clone();
      minus[k] = inputs[k].clone();
      plus[k].data<float>()[idx] += eps;
      minus[k].data<float>()[idx] -= eps;
      numeric.push_back(float((objective(plus) - objective(minus)) / (2.0 * eps)));
      ours.push_back(analytic[idx]);
    }
    worst = std::max(worst, norm_error(ours, numeric));
  }
  return worst;
}

inline Tensor param(const Shape& shape, uint64_t stream, float stddev = 1.0f) {
  Tensor t = Tensor::randn(shape, 7, stream, stddev);
  t.set_requires_grad(true);
  return t;
}

}  // namespace turbine::testing
