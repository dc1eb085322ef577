// The paged KV cache of continuous batching (vLLM's PagedAttention,
// DeepSpeed-FastGen's blocked KV cache): keys and values of every running
// sequence live in fixed-size blocks of `block_size` positions carved from
// one pool allocated up front, (num_blocks, H, block_size, D) per layer for
// keys and for values. A sequence owns a block table, the list of its blocks
// in order; blocks come from a free list and go back to it the moment the
// sequence ends, so memory is never fragmented and never reallocated.
//
// One engine step runs the new tokens of several sequences together (prompt
// chunks and single decode tokens, Dynamic SplitFuse): begin() takes each
// sequence's block table, how many positions it has cached and how many it
// adds, and the attention kernels read every sequence's keys through its
// table (Backend::paged_attention).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/kv_cache.hpp"
#include "tensor/tensor.hpp"

namespace turbine::nn {

struct BloomConfig;

class PagedKvCache final : public AttentionCache {
 public:
  // heads: per layer (a tensor-parallel rank's share); 0: config.n_head.
  PagedKvCache(const BloomConfig& config, int64_t num_blocks, int64_t block_size, Device device,
               int64_t heads = 0);
  // Bytes of one block over all layers, keys and values (f32): what the
  // pool's size in MB is divided by.
  static int64_t block_bytes(const BloomConfig& config, int64_t block_size, int64_t heads = 0);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
  int64_t nbytes() const;  // the whole pool
  // Blocks holding `positions` positions.
  int64_t blocks_for(int64_t positions) const {
    return (positions + block_size_ - 1) / block_size_;
  }

  // Takes `count` blocks from the free list and appends them to `table`;
  // false (taking none) when fewer are free.
  bool allocate(int64_t count, std::vector<int32_t>& table);
  // Returns a table's blocks to the free list and empties it.
  void release(std::vector<int32_t>& table);

  // One sequence of a step: its table must cover cached + new positions.
  struct StepSequence {
    const std::vector<int32_t>* table = nullptr;
    int64_t cached = 0, tokens = 0;
    bool wants_logits = true;  // its last new token's logits are returned
  };
  // Describes the next forward's sequences, in the order of its tokens.
  void begin(const std::vector<StepSequence>& sequences);
  int64_t step_tokens() const { return step_tokens_; }
  // Token rows (into the step's N) whose logits the step returns.
  const std::vector<int64_t>& logit_rows() const { return logit_rows_; }
  // Writes the step's keys and values of layer `layer` into their slots,
  // then attention for its queries: q, k, v (1, H, N, D) -> (1, H, N, D).
  Tensor attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v,
                const std::vector<float>& alibi) override;
  void commit();  // ends the step

 private:
  int64_t num_blocks_, block_size_, heads_, head_dim_;
  Device device_;
  std::vector<Tensor> keys_, values_;  // per layer (num_blocks, H, block_size, D)
  std::vector<int32_t> free_;          // a stack: the most recently freed first
  // The step being run.
  int64_t step_tokens_ = 0, step_sequences_ = 0, max_blocks_ = 0;
  Tensor slots_, tables_, seq_info_;  // on the device
  std::vector<int64_t> logit_rows_;
};

}  // namespace turbine::nn
