// Megatron-LM's tensor parallelism for a BLOOM (DeepSpeed-Inference's
// tensor_parallel.tp_size): query_key_value and dense_h_to_4h split by
// output rows (ColumnParallelLinear; QKV's rows are head-major, (head, q/k/v,
// head_dim), so a rank's contiguous rows are whole heads), the attention
// output dense and dense_4h_to_h by input columns (RowParallelLinear), one
// all-reduce after each of the two per block; each rank's ALiBi slopes are
// its heads' and decode's LM head is its slice of the vocabulary
// (nn::Bloom::shard_heads), joined by gather_vocab_logits.
#pragma once

#include "dist/process_group.hpp"
#include "nn/bloom.hpp"

namespace turbine::dist {

// Splits a model whose full weights every rank of `group` holds (loaded from
// one checkpoint, or made from one seed); the group must outlive it. Errors
// name the fix when the group size does not divide the heads.
void split_bloom(nn::Bloom& model, ProcessGroup& group);

// Collective: the ranks' decode logits (B, vocab slice) joined into (B, V).
Tensor gather_vocab_logits(ProcessGroup& group, const nn::Bloom& model, const Tensor& local);

}  // namespace turbine::dist
