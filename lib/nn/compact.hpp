// Linear layers with compact weights for inference (DeepSpeed-Inference's
// dtype: fp16/bf16/int8 weights): the weight is stored in bf16, f16 or int8
// with group scales (ops::CompactTensor) and multiplied without ever being
// widened whole (Backend::gemm_compact); the bias stays f32. Forward only:
// running one where a gradient must flow through it is an error, not a
// silently cut graph.
#pragma once

#include <memory>
#include <string>

#include "nn/bloom.hpp"
#include "nn/module.hpp"
#include "ops/ops.hpp"

namespace turbine::nn {

class CompactLinear final : public LinearLayer {
 public:
  // `from`'s weight compacted (ops::compact_weight), its bias copied.
  CompactLinear(const Linear& from, DType type, int group);
  Tensor forward(const Tensor& x) const override;
  // The bias only, frozen: the compact weight is not a parameter (load the
  // f32 state first, then compact).
  void parameters(const std::string& prefix, ParameterList& out) override;
  std::unique_ptr<LinearLayer> clone() const override;
  int64_t in_features() const override { return weight.in_features(); }
  int64_t out_features() const override { return weight.out_features(); }

  ops::CompactTensor weight;
  Tensor bias;

 private:
  CompactLinear() = default;
};

// What compact_linears did: layers replaced, and the bytes their weights
// occupied before and after.
struct CompactReport {
  int64_t layers = 0, bytes_before = 0, bytes_after = 0;
};

// Replaces every plain Linear of the model's blocks (the four of each BLOOM
// block) by a CompactLinear of `type` (bf16, f16 or i8 with `group` inputs
// per scale, 0 for one scale per output channel). The embedding (tied to the
// LM head) and LayerNorms stay f32. A tensor-parallel layer keeps its split
// and has its part compacted (LinearLayer::inner); other layers that are not
// plain Linears (LoRA) are refused.
CompactReport compact_linears(Bloom& model, DType type, int group = 0);
// The same for one block's four layers (a streamed block, compacted once
// when the weights are staged).
CompactReport compact_block(BloomBlock& block, DType type, int group = 0);

}  // namespace turbine::nn
