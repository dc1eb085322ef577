// Differentiable collectives: forward collective now, the adjoint one on
// the tape.
#include "dist/differentiable_collectives.hpp"

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "dist/collectives.hpp"
#include "ops/ops.hpp"

namespace turbine::dist {

namespace {

using autograd::Node;

// Adds `g` to a gradient slot (null: not needed), taking it over when the
// slot is empty (no copy).
void add_grad(Tensor* slot, Tensor g) {
  if (!slot) return;
  if (!slot->defined())
    *slot = std::move(g);
  else
    ops::scale_backward(g, 1.0f, slot);
}

// Records y = forward(x) with backward dx = adjoint(dy), both collectives
// over the group.
template <class Adjoint>
Tensor with_adjoint(const Tensor& x, Tensor y, Adjoint adjoint) {
  if (autograd::needs_grad({&x}))
    autograd::record({&x}, {&y}, [adjoint](Node& n) {
      if (Tensor* slot = n.grad_input(0)) add_grad(slot, adjoint(n.grad_output(0)));
    });
  return y;
}

}  // namespace

Tensor copy_to_parallel_region(ProcessGroup& group, const Tensor& x) {
  // A new handle on x's storage: the tape needs an output of its own.
  Tensor y = x.is_contiguous() ? x.view(x.shape()) : x.contiguous();
  return with_adjoint(x, std::move(y),
                      [&group](const Tensor& dy) { return all_reduce_sum(group, dy); });
}

Tensor reduce_from_parallel_region(ProcessGroup& group, const Tensor& x) {
  return with_adjoint(x, all_reduce_sum(group, x), [](const Tensor& dy) { return dy.clone(); });
}

Tensor gather_from_parallel_region(ProcessGroup& group, const Tensor& x) {
  return with_adjoint(x, all_gather(group, x, -1),
                      [&group](const Tensor& dy) { return local_part(group, dy, -1); });
}

Tensor scatter_to_parallel_region(ProcessGroup& group, const Tensor& x) {
  return with_adjoint(x, local_part(group, x, -1),
                      [&group](const Tensor& dy) { return all_gather(group, dy, -1); });
}

Tensor sequence_all_to_all(ProcessGroup& group, const Tensor& x, int scatter_dim, int gather_dim) {
  return with_adjoint(x, all_to_all(group, x, scatter_dim, gather_dim),
                      [&group, scatter_dim, gather_dim](const Tensor& dy) {
                        return all_to_all(group, dy, gather_dim, scatter_dim);
                      });
}

Tensor sequence_to_head_shards(ProcessGroup& group, const Tensor& x) {
  TURBINE_CHECK(x.ndim() >= 3, "sequence_to_head_shards: {} is not (batch, sequence, heads, ...)",
                x.str());
  return sequence_all_to_all(group, x, 2, 1);
}

Tensor head_to_sequence_shards(ProcessGroup& group, const Tensor& x) {
  TURBINE_CHECK(x.ndim() >= 3, "head_to_sequence_shards: {} is not (batch, sequence, heads, ...)",
                x.str());
  return sequence_all_to_all(group, x, 1, 2);
}

}  // namespace turbine::dist
