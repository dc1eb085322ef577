// Collectives on tensors over a ProcessGroup, for tensor and sequence
// parallelism: each returns a new tensor and leaves its input unchanged, and
// runs over MPI or NCCL by the tensor's device (dist/process_group.hpp).
// Every rank calls each with a tensor of the same shape and dtype. Sums are
// f32 (bf16/f16 too on GPUs); the others move any dtype whose blocks are
// whole 4-byte words. Parts along a dimension are its size() equal slices in
// rank order; a dimension that does not divide is an error.
// Differentiable versions: dist/differentiable_collectives.hpp.
#pragma once

#include "dist/process_group.hpp"
#include "tensor/tensor.hpp"

namespace turbine::dist {

// The sum over the group's ranks of x.
Tensor all_reduce_sum(ProcessGroup& group, const Tensor& x);
// The ranks' x concatenated along `dim` in rank order.
Tensor all_gather(ProcessGroup& group, const Tensor& x, int dim);
// Part rank() along `dim` of the sum over ranks of x (Megatron-SP's
// reduce-scatter).
Tensor reduce_scatter_sum(ProcessGroup& group, const Tensor& x, int dim);
// Part rank() of x along `dim`, copied; no communication (all_gather's inverse).
Tensor local_part(ProcessGroup& group, const Tensor& x, int dim);
// x cut along `scatter_dim` into size() parts, part j sent to rank j; the
// parts received concatenated along `gather_dim` in rank order. DeepSpeed-
// Ulysses: (B, T/P, H, D) with scatter 2, gather 1 gives (B, T, H/P, D), and
// scatter 1, gather 2 brings it back.
Tensor all_to_all(ProcessGroup& group, const Tensor& x, int scatter_dim, int gather_dim);

}  // namespace turbine::dist
