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

Tensor copy_of(const Tensor& t) {
  return t.defined() ? t.clone().set_requires_grad(t.requires_grad()) : Tensor();
}

Parameter listed(const std::string& name, const Tensor& t, bool weight_decay) {
  return {name, t, weight_decay, t.requires_grad()};
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, Init& init)
    : weight(trainable(init.normal({out, in}))) {
  if (with_bias) bias = trainable(Tensor::zeros({out}, DType::f32, init.device));
}

Tensor Linear::forward(const Tensor& x) const {
  return ag::linear(x, weight, bias);
}

std::unique_ptr<LinearLayer> Linear::clone() const {
  auto copy = std::make_unique<Linear>();
  copy->weight = copy_of(weight);
  copy->bias = copy_of(bias);
  return copy;
}

void Linear::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back(listed(prefix + "weight", weight, true));
  if (bias.defined()) out.push_back(listed(prefix + "bias", bias, false));
}

Embedding::Embedding(int64_t vocab, int64_t dim, Init& init)
    : weight(trainable(init.normal({vocab, dim}))) {}

Tensor Embedding::forward(const Tensor& ids) const {
  return ag::embedding(ids, weight);
}

Embedding Embedding::clone() const {
  Embedding copy;
  copy.weight = copy_of(weight);
  return copy;
}

void Embedding::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back(listed(prefix + "weight", weight, true));
}

LayerNorm::LayerNorm(int64_t dim, float eps_, Device device)
    : weight(trainable(Tensor::full({dim}, 1.0f, device))),
      bias(trainable(Tensor::zeros({dim}, DType::f32, device))),
      eps(eps_) {}

Tensor LayerNorm::forward(const Tensor& x) const {
  return ag::layer_norm(x, weight, bias, eps);
}

LayerNorm LayerNorm::clone() const {
  LayerNorm copy;
  copy.weight = copy_of(weight);
  copy.bias = copy_of(bias);
  copy.eps = eps;
  return copy;
}

void LayerNorm::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back(listed(prefix + "weight", weight, false));
  out.push_back(listed(prefix + "bias", bias, false));
}

ParameterList trainable(const ParameterList& params) {
  ParameterList out;
  for (const Parameter& p : params)
    if (p.trainable) out.push_back(p);
  return out;
}

void set_trainable(ParameterList& params, bool trainable,
                   const std::function<bool(const std::string&)>& select) {
  for (Parameter& p : params) {
    if (select && !select(p.name)) continue;
    p.trainable = trainable;
    p.tensor.set_requires_grad(trainable);
  }
}

}  // namespace turbine::nn
