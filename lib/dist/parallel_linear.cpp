// Column- and row-parallel linear layers.
#include "dist/parallel_linear.hpp"

#include "autograd/functions.hpp"
#include "core/error.hpp"
#include "dist/collectives.hpp"
#include "dist/differentiable_collectives.hpp"

namespace turbine::dist {

namespace {
// This rank's part of `t` along `dim` as a new trainable leaf, or undefined.
Tensor part_of(ProcessGroup& group, const Tensor& t, int dim, const char* layer) {
  if (!t.defined()) return Tensor();
  TURBINE_CHECK(t.dim(dim) % group.size() == 0,
                "{}: dimension {} of the weights ({}) is not divisible by the {} ranks of group "
                "'{}': pick a group size that divides it",
                layer, dim, t.str(), group.size(), group.name());
  return local_part(group, t, dim).set_requires_grad(t.requires_grad());
}
}  // namespace

using nn::copy_of;

ColumnParallelLinear::ColumnParallelLinear(const nn::Linear& full, ProcessGroup& group,
                                           bool gather_output)
    : group_(&group), gather_output_(gather_output) {
  auto part = std::make_unique<nn::Linear>();
  part->weight = part_of(group, full.weight, 0, "ColumnParallelLinear");
  part->bias = part_of(group, full.bias, 0, "ColumnParallelLinear");
  part_ = std::move(part);
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  const Tensor y = part_->forward(copy_to_parallel_region(*group_, x));
  return gather_output_ ? gather_from_parallel_region(*group_, y) : y;
}

void ColumnParallelLinear::parameters(const std::string& prefix, nn::ParameterList& out) {
  part_->parameters(prefix, out);
}

std::unique_ptr<nn::LinearLayer> ColumnParallelLinear::clone() const {
  std::unique_ptr<ColumnParallelLinear> copy(new ColumnParallelLinear());
  copy->part_ = part_->clone();
  copy->group_ = group_;
  copy->gather_output_ = gather_output_;
  return copy;
}

RowParallelLinear::RowParallelLinear(const nn::Linear& full, ProcessGroup& group,
                                     bool input_is_parallel)
    : bias_(copy_of(full.bias)), group_(&group), input_is_parallel_(input_is_parallel) {
  auto part = std::make_unique<nn::Linear>();
  part->weight = part_of(group, full.weight, 1, "RowParallelLinear");
  part_ = std::move(part);
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const Tensor x_part = input_is_parallel_ ? x : scatter_to_parallel_region(*group_, x);
  const Tensor y = reduce_from_parallel_region(*group_, part_->forward(x_part));
  if (!bias_.defined()) return y;
  // (..., out) + bias: the bias broadcast over the leading dims.
  return ag::add_bias(y, bias_);
}

void RowParallelLinear::parameters(const std::string& prefix, nn::ParameterList& out) {
  part_->parameters(prefix, out);
  if (bias_.defined()) out.push_back(nn::listed(prefix + "bias", bias_, false));
}

std::unique_ptr<nn::LinearLayer> RowParallelLinear::clone() const {
  std::unique_ptr<RowParallelLinear> copy(new RowParallelLinear());
  copy->part_ = part_->clone();
  copy->bias_ = copy_of(bias_);
  copy->group_ = group_;
  copy->input_is_parallel_ = input_is_parallel_;
  return copy;
}

}  // namespace turbine::dist
