// DeepSpeed-Ulysses sequence parallelism (Jacobs et al. 2023): the world's
// ranks as (data-parallel, sequence-parallel) coordinates, the attention
// exchange a BLOOM block runs through (nn::SequenceExchange over a process
// group's all-to-all), each rank's slice of a batch, and the communication
// volumes of Ulysses and its alternatives for the same layer.
//
// Each of a group's P ranks holds a contiguous T/P slice of every sequence:
// embeddings, LayerNorms, MLPs and the loss run on the slice. Around
// attention one all-to-all trades the slice of the fused QKV for the whole
// sequence of n_head/P heads, and one brings the context back: 4Nh/P
// elements per rank and layer forward (N = B x T tokens, h the hidden size),
// the same backward. n_head must be divisible by P (Bloom refuses others,
// naming the valid sizes); T need not be: the slices are padded to a
// multiple of P with ignored targets.
#pragma once

#include <optional>
#include <string>

#include "data/loader.hpp"
#include "dist/process_group.hpp"
#include "nn/bloom.hpp"

namespace turbine::seqpar {

// The world as a grid: rank = dp_rank * P + sp_rank, so a sequence-parallel
// group is P consecutive ranks (on one node where the launcher packs ranks
// by node: its all-to-alls are the heaviest traffic), and a data-parallel
// group takes every P-th rank.
struct Layout {
  int sequence_parallel = 1, data_parallel = 1;
  int sp_rank = 0, dp_rank = 0;
  // Throws with problem()'s message unless sequence_parallel divides world_size.
  static Layout of(int world_rank, int world_size, int sequence_parallel);
  // Why `sequence_parallel` cannot split `world_size` ranks, naming the fix;
  // nullopt when it can.
  static std::optional<std::string> problem(int world_size, int sequence_parallel);
};

// The exchange over a sequence-parallel group (which must outlive it and
// every backward through it).
class UlyssesExchange final : public nn::SequenceExchange {
 public:
  explicit UlyssesExchange(dist::ProcessGroup& group) : group_(group) {}
  int rank() const override { return group_.rank(); }
  int size() const override { return group_.size(); }
  Tensor to_heads(const Tensor& qkv) const override;
  Tensor to_sequence(const Tensor& context) const override;

 private:
  dist::ProcessGroup& group_;
};

// Rank `rank`'s slice of a batch of whole sequences (B, T): T padded to a
// multiple of `size` (ids with 0, targets with -100), then its contiguous
// part. `counted` is the whole batch's count of non-ignored targets: the
// loss of each slice is divided by it, so the group's losses sum to the
// batch's mean.
struct SequenceSlice {
  Tensor ids, targets;
  int64_t counted = 0;
};
SequenceSlice slice_batch(const data::Batch& batch, int rank, int size);

// Bytes one rank's collectives work on per transformer layer and micro-batch
// of `tokens` (B x T) tokens of hidden size `hidden`, `element_bytes` per
// activation, P ranks; in CommStats' convention (each call's whole buffer on
// the rank). Forward and backward; activation checkpointing adds a second
// forward.
struct LayerTraffic {
  int64_t forward = 0, backward = 0;
};
// Ulysses: QKV (3Nh/P) and context (Nh/P) all-to-alls; backward the transposed pair.
LayerTraffic ulysses_layer_bytes(int64_t tokens, int64_t hidden, int p, int64_t element_bytes);
// Megatron-LM sequence parallelism (Korthikanti et al. 2022): an all-gather
// (output Nh) before attention and the MLP, a reduce-scatter (input Nh)
// after each; backward the transposed pair: 4Nh each way whatever P.
LayerTraffic megatron_sp_layer_bytes(int64_t tokens, int64_t hidden, int p, int64_t element_bytes);
// Ring attention (Liu et al. 2023): each rank's keys and values (2Nh/P)
// travel P - 1 hops forward; backward sends them again with their gradients.
LayerTraffic ring_attention_layer_bytes(int64_t tokens, int64_t hidden, int p,
                                        int64_t element_bytes);

}  // namespace turbine::seqpar
