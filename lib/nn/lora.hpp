// LoRA (Hu et al. 2021): a frozen linear layer plus a trainable low-rank
// update, y = base(x) + (alpha / r) * (x A^T) B^T with A (r, in) and
// B (out, r); B starts at zero, so a wrapped model starts out exactly as
// the base. DeepSpeed-Chat's lora_dim is r, and its lora_scaling the
// factor alpha / r. Parameters: the base's under its own names (a LoRA
// model loads base checkpoints unchanged), then lora_A.weight and
// lora_B.weight.
#pragma once

#include <memory>

#include "nn/bloom.hpp"
#include "nn/module.hpp"

namespace turbine::nn {

class LoraLinear final : public LinearLayer {
 public:
  // Freezes `base`. A is drawn at (seed, stream) with stddev 1/sqrt(in).
  LoraLinear(std::unique_ptr<LinearLayer> base, int64_t rank, float scaling, uint64_t seed,
             uint64_t stream);
  Tensor forward(const Tensor& x) const override;
  void parameters(const std::string& prefix, ParameterList& out) override;
  std::unique_ptr<LinearLayer> clone() const override;
  int64_t in_features() const override { return base_->in_features(); }
  int64_t out_features() const override { return base_->out_features(); }

  const LinearLayer& base() const { return *base_; }
  Tensor lora_a, lora_b;  // (r, in), (out, r)
  float scaling = 1.0f;

  // The hybrid engine's fuse and unfuse (DeepSpeed's fuse_lora_weight): merge
  // adds scaling * B A into the base weight, so forward is one product (for
  // generation); unmerge subtracts it again (for training). The base weight
  // then differs from before by rounding only. Forward while merged runs the
  // base alone; training while merged is refused (no gradient reaches A, B).
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

 private:
  LoraLinear() = default;
  Tensor delta() const;  // scaling * B A, (out, in)
  std::unique_ptr<LinearLayer> base_;
  bool merged_ = false;
};

struct LoraConfig {
  int64_t rank = 8;      // DeepSpeed-Chat's lora_dim
  float scaling = 1.0f;  // its lora_scaling (alpha / r)
  // Module names containing this are wrapped ("" wraps every linear layer;
  // "mlp." only the MLP's, "self_attention.query_key_value" only QKV).
  std::string module_filter;
  uint64_t seed = 0;
};
// Wraps the model's matching linear layers and freezes everything else
// (DeepSpeed-Chat's only_optimize_lora). Returns how many were wrapped.
int64_t apply_lora(Bloom& model, const LoraConfig& config);
// Merges (or unmerges) every adapter of the model; returns how many.
int64_t merge_lora(Bloom& model, bool merge);

}  // namespace turbine::nn
