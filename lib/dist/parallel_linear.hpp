// Megatron-LM's split linear layers over a process group of P ranks, as
// nn::LinearLayer so that a model's linear maps can be swapped for them
// (nn::Bloom::transform_linears). Each is made from the full layer (every
// rank holds the same weights first: a checkpoint, or one seed), keeping
// its part.
//   ColumnParallelLinear: rank r holds rows [r out/P, (r+1) out/P) of W and
//     b; forward f(x) W_r^T + b_r (f: identity, all-reduce in backward),
//     optionally all-gathered along the last dim.
//   RowParallelLinear: rank r holds columns [r in/P, (r+1) in/P) of W; its
//     input is the matching part of x (input_is_parallel: a column-parallel
//     layer's output) or is split here; forward g(x_r W_r^T) + b (g: the sum
//     over the group, identity in backward), the bias added once.
// A column-parallel layer followed by a row-parallel one (an MLP, attention's
// QKV and output projection) communicates once forward and once backward.
// The part is a plain nn::Linear when made; inner() hands it to passes that
// replace it (nn::compact_linears stores it in bf16/f16/int8 for inference).
#pragma once

#include <memory>

#include "dist/process_group.hpp"
#include "nn/module.hpp"

namespace turbine::dist {

class ColumnParallelLinear final : public nn::LinearLayer {
 public:
  ColumnParallelLinear(const nn::Linear& full, ProcessGroup& group, bool gather_output);
  Tensor forward(const Tensor& x) const override;
  void parameters(const std::string& prefix, nn::ParameterList& out) override;
  std::unique_ptr<nn::LinearLayer> clone() const override;
  int64_t in_features() const override { return part_->in_features(); }
  // The full layer's: what the layer computes when gather_output is set.
  int64_t out_features() const override { return part_->out_features() * group_->size(); }
  std::unique_ptr<nn::LinearLayer>* inner() override { return &part_; }
  const nn::LinearLayer& part() const { return *part_; }

 private:
  ColumnParallelLinear() = default;
  std::unique_ptr<nn::LinearLayer> part_;  // this rank's rows
  ProcessGroup* group_ = nullptr;
  bool gather_output_ = false;
};

class RowParallelLinear final : public nn::LinearLayer {
 public:
  RowParallelLinear(const nn::Linear& full, ProcessGroup& group, bool input_is_parallel);
  Tensor forward(const Tensor& x) const override;
  void parameters(const std::string& prefix, nn::ParameterList& out) override;
  std::unique_ptr<nn::LinearLayer> clone() const override;
  int64_t in_features() const override { return part_->in_features() * group_->size(); }
  int64_t out_features() const override { return part_->out_features(); }
  std::unique_ptr<nn::LinearLayer>* inner() override { return &part_; }
  const nn::LinearLayer& part() const { return *part_; }

 private:
  RowParallelLinear() = default;
  std::unique_ptr<nn::LinearLayer> part_;  // this rank's columns of W, no bias
  Tensor bias_;                            // the full bias, added after the sum
  ProcessGroup* group_ = nullptr;
  bool input_is_parallel_ = false;
};

}  // namespace turbine::dist
