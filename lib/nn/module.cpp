// Linear, Embedding and LayerNorm on the differentiable ops.
#include "nn/module.hpp"

#include "autograd/functions.hpp"

namespace turbine::nn {

namespace {
Tensor trainable(Tensor t) {
  t.set_requires_grad(true);
  return t;
}
}  // namespace

Linear::Linear(int64_t in, int64_t out, bool with_bias, Init& init)
    : weight(trainable(init.normal({out, in}))) {
  if (with_bias) bias = trainable(Tensor::zeros({out}, DType::f32, init.device));
}

Tensor Linear::forward(const Tensor& x) const { return ag::linear(x, weight, bias); }

void Linear::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back({prefix + "weight", weight, true});
  if (bias.defined()) out.push_back({prefix + "bias", bias, false});
}

Embedding::Embedding(int64_t vocab, int64_t dim, Init& init)
    : weight(trainable(init.normal({vocab, dim}))) {}

Tensor Embedding::forward(const Tensor& ids) const { return ag::embedding(ids, weight); }

void Embedding::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back({prefix + "weight", weight, true});
}

LayerNorm::LayerNorm(int64_t dim, float eps_, Device device)
    : weight(trainable(Tensor::full({dim}, 1.0f, device))),
      bias(trainable(Tensor::zeros({dim}, DType::f32, device))),
      eps(eps_) {}

Tensor LayerNorm::forward(const Tensor& x) const { return ag::layer_norm(x, weight, bias, eps); }

void LayerNorm::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back({prefix + "weight", weight, false});
  out.push_back({prefix + "bias", bias, false});
}

}  // namespace turbine::nn
