// Collectives that autograd differentiates, for tensor parallelism
// (Megatron-LM's mappings: the f/g pair around a column- then row-parallel
// linear, and the gather/scatter of the last dim) and sequence parallelism
// (DeepSpeed-Ulysses' all-to-all around attention). Each runs its forward
// now and records a tape node whose backward is the adjoint collective over
// the same group, so the group must outlive the backward pass. Every rank
// runs the same ones in the same order, forward and backward.
#pragma once

#include "dist/process_group.hpp"
#include "tensor/tensor.hpp"

namespace turbine::dist {

// Megatron's f: x itself forward; backward sums the gradient over the group
// (each rank's column-parallel part contributes to the input's gradient).
Tensor copy_to_parallel_region(ProcessGroup& group, const Tensor& x);
// Megatron's g: the sum over the group forward (a row-parallel linear's
// partial products); backward passes the gradient through.
Tensor reduce_from_parallel_region(ProcessGroup& group, const Tensor& x);
// The ranks' x concatenated along the last dim forward; backward keeps this
// rank's part of the gradient.
Tensor gather_from_parallel_region(ProcessGroup& group, const Tensor& x);
// This rank's part of x along the last dim forward; backward all-gathers the
// gradient.
Tensor scatter_to_parallel_region(ProcessGroup& group, const Tensor& x);

// all_to_all (dist/collectives.hpp) forward; backward the reverse exchange,
// all_to_all(grad, gather_dim, scatter_dim) (DeepSpeed's _SeqAllToAll).
Tensor sequence_all_to_all(ProcessGroup& group, const Tensor& x, int scatter_dim, int gather_dim);
// Ulysses before attention: a sequence shard (B, T/P, H, ...) to a head
// shard (B, T, H/P, ...) (rank r holds heads r*H/P ...). Trailing dims ride
// along, so the fused (B, T/P, H, 3, D) QKV goes in one exchange.
Tensor sequence_to_head_shards(ProcessGroup& group, const Tensor& x);
// Ulysses after attention: (B, T, H/P, ...) back to (B, T/P, H, ...).
Tensor head_to_sequence_shards(ProcessGroup& group, const Tensor& x);

}  // namespace turbine::dist
