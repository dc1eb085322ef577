// LoRA adapters.
#include "nn/lora.hpp"

#include <cmath>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"

namespace turbine::nn {

LoraLinear::LoraLinear(std::unique_ptr<LinearLayer> base, int64_t rank, float scaling_,
                       uint64_t seed, uint64_t stream)
    : scaling(scaling_), base_(std::move(base)) {
  TURBINE_CHECK(base_, "LoraLinear: no base layer");
  TURBINE_CHECK(rank > 0, "LoRA rank must be positive, got {}", rank);
  ParameterList base_params;
  base_->parameters("", base_params);
  TURBINE_CHECK(!base_params.empty(), "LoraLinear: the base layer has no parameters");
  const Device device = base_params.front().tensor.device();
  set_trainable(base_params, false);
  const int64_t in = base_->in_features(), out = base_->out_features();
  lora_a = Tensor::randn({rank, in}, seed, stream, 1.0f / std::sqrt(float(in)), device);
  lora_a.set_requires_grad(true);
  lora_b = Tensor::zeros({out, rank}, DType::f32, device);
  lora_b.set_requires_grad(true);
}

Tensor LoraLinear::delta() const {
  const autograd::NoGradGuard no_grad;
  return ops::scale(ops::matmul(lora_b, lora_a), scaling);
}

void LoraLinear::merge() {
  TURBINE_CHECK(!merged_, "LoraLinear::merge: merged already");
  auto* plain = dynamic_cast<Linear*>(base_.get());
  TURBINE_CHECK(plain != nullptr, "LoRA: only adapters over a plain linear layer can be merged");
  Tensor(plain->weight).copy_from(ops::add(plain->weight, delta()));
  merged_ = true;
}

void LoraLinear::unmerge() {
  TURBINE_CHECK(merged_, "LoraLinear::unmerge: not merged");
  auto* plain = static_cast<Linear*>(base_.get());
  Tensor(plain->weight).copy_from(ops::add(plain->weight, delta(), 1.0f, -1.0f));
  merged_ = false;
}

Tensor LoraLinear::forward(const Tensor& x) const {
  if (merged_) {
    TURBINE_CHECK(!autograd::grad_enabled(),
                  "LoRA: the adapters are merged for generation: unmerge them before training");
    return base_->forward(x);
  }
  const Tensor update = ag::linear(ag::linear(x, lora_a, Tensor()), lora_b, Tensor());
  return ag::add(base_->forward(x), ag::scale(update, scaling));
}

void LoraLinear::parameters(const std::string& prefix, ParameterList& out) {
  base_->parameters(prefix, out);
  out.push_back(listed(prefix + "lora_A.weight", lora_a, false));
  out.push_back(listed(prefix + "lora_B.weight", lora_b, false));
}

std::unique_ptr<LinearLayer> LoraLinear::clone() const {
  std::unique_ptr<LoraLinear> copy(new LoraLinear());
  copy->base_ = base_->clone();
  copy->lora_a = copy_of(lora_a);
  copy->lora_b = copy_of(lora_b);
  copy->scaling = scaling;
  copy->merged_ = merged_;
  return copy;
}

int64_t apply_lora(Bloom& model, const LoraConfig& config) {
  model.set_trainable(false);
  int64_t wrapped = 0;
  model.transform_linears([&](const std::string& name, std::unique_ptr<LinearLayer>& layer) {
    if (name.find(config.module_filter) == std::string::npos) return;
    layer = std::make_unique<LoraLinear>(std::move(layer), config.rank, config.scaling, config.seed,
                                         uint64_t(wrapped));
    ++wrapped;
  });
  TURBINE_CHECK(wrapped > 0, "LoRA: no linear layer's name contains '{}'", config.module_filter);
  return wrapped;
}

int64_t merge_lora(Bloom& model, bool merge) {
  int64_t count = 0;
  model.transform_linears([&](const std::string&, std::unique_ptr<LinearLayer>& layer) {
    auto* lora = dynamic_cast<LoraLinear*>(layer.get());
    if (lora == nullptr || lora->merged() == merge) return;
    merge ? lora->merge() : lora->unmerge();
    ++count;
  });
  return count;
}

}  // namespace turbine::nn
