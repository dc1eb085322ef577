// The paged KV cache (nn/paged_kv_cache.hpp).
#include "nn/paged_kv_cache.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "nn/bloom.hpp"

namespace turbine::nn {

PagedKvCache::PagedKvCache(const BloomConfig& config, int64_t num_blocks, int64_t block_size,
                           Device device, int64_t heads)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      heads_(heads > 0 ? heads : config.n_head),
      head_dim_(config.head_dim()),
      device_(device) {
  TURBINE_CHECK(num_blocks > 0 && block_size > 0,
                "paged KV cache: {} blocks of {} positions; both must be positive", num_blocks,
                block_size);
  TURBINE_CHECK(num_blocks < (int64_t(1) << 31) / block_size,
                "paged KV cache: {} blocks of {} positions overflow 32-bit slots", num_blocks,
                block_size);
  // Uninitialized: a position is always written before it is read, and on
  // the CPU untouched pages cost no memory until blocks are used.
  for (int64_t i = 0; i < config.n_layer; ++i) {
    keys_.push_back(Tensor::empty({num_blocks, heads_, block_size, head_dim_}, DType::f32, device));
    values_.push_back(
        Tensor::empty({num_blocks, heads_, block_size, head_dim_}, DType::f32, device));
  }
  free_.resize(size_t(num_blocks));
  // Block 0 on top: the first sequences get the lowest blocks.
  for (int64_t i = 0; i < num_blocks; ++i) free_[size_t(i)] = int32_t(num_blocks - 1 - i);
}

int64_t PagedKvCache::block_bytes(const BloomConfig& config, int64_t block_size, int64_t heads) {
  const int64_t h = heads > 0 ? heads : config.n_head;
  return 2 * config.n_layer * h * block_size * config.head_dim() * int64_t(sizeof(float));
}

int64_t PagedKvCache::nbytes() const {
  return num_blocks_ * 2 * int64_t(keys_.size()) * heads_ * block_size_ * head_dim_ *
         int64_t(sizeof(float));
}

bool PagedKvCache::allocate(int64_t count, std::vector<int32_t>& table) {
  if (count > free_blocks()) return false;
  for (int64_t i = 0; i < count; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void PagedKvCache::release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    TURBINE_CHECK(*it >= 0 && *it < num_blocks_, "paged KV cache: no block {}", *it);
    free_.push_back(*it);
  }
  TURBINE_CHECK(int64_t(free_.size()) <= num_blocks_,
                "paged KV cache: more blocks released than allocated (a table released twice)");
  table.clear();
}

void PagedKvCache::begin(const std::vector<StepSequence>& sequences) {
  TURBINE_CHECK(step_tokens_ == 0, "paged KV cache: begin() twice without commit()");
  TURBINE_CHECK(!sequences.empty(), "paged KV cache: a step of no sequences");
  max_blocks_ = 1;
  for (const StepSequence& s : sequences) {
    TURBINE_CHECK(s.table != nullptr && s.tokens > 0 && s.cached >= 0,
                  "paged KV cache: a step's sequence needs a table and new tokens");
    TURBINE_CHECK(blocks_for(s.cached + s.tokens) <= int64_t(s.table->size()),
                  "paged KV cache: a sequence of {} positions has {} blocks of {}",
                  s.cached + s.tokens, s.table->size(), block_size_);
    max_blocks_ = std::max<int64_t>(max_blocks_, int64_t(s.table->size()));
  }
  std::vector<int32_t> slots, tables(sequences.size() * size_t(max_blocks_), 0), info;
  logit_rows_.clear();
  int64_t token = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const StepSequence& s = sequences[i];
    std::copy(s.table->begin(), s.table->end(), tables.begin() + long(i) * max_blocks_);
    for (int64_t p = s.cached; p < s.cached + s.tokens; ++p)
      slots.push_back(int32_t((*s.table)[size_t(p / block_size_)] * block_size_ + p % block_size_));
    info.insert(info.end(), {int32_t(token), int32_t(s.tokens), int32_t(s.cached + s.tokens)});
    token += s.tokens;
    if (s.wants_logits) logit_rows_.push_back(token - 1);
  }
  step_tokens_ = token;
  step_sequences_ = int64_t(sequences.size());
  slots_ = Tensor::from_vector<int32_t>({token}, slots, device_);
  tables_ = Tensor::from_vector<int32_t>({step_sequences_, max_blocks_}, tables, device_);
  seq_info_ = Tensor::from_vector<int32_t>({step_sequences_, 3}, info, device_);
}

Tensor PagedKvCache::attend(int64_t layer, const Tensor& q_any, const Tensor& k_any,
                            const Tensor& v_any, const std::vector<float>& alibi) {
  TURBINE_CHECK(layer >= 0 && layer < int64_t(keys_.size()), "paged KV cache: no layer {}", layer);
  TURBINE_CHECK(step_tokens_ > 0, "paged KV cache: attend() outside begin()/commit()");
  const Shape expected = {1, heads_, step_tokens_, head_dim_};
  TURBINE_CHECK(q_any.shape() == expected && k_any.shape() == expected && v_any.shape() == expected,
                "paged KV cache: q {}, k {}, v {} for a step of ({}, {}, {}, {})", q_any.str(),
                k_any.str(), v_any.str(), 1, heads_, step_tokens_, head_dim_);
  TURBINE_CHECK(alibi.empty() || int64_t(alibi.size()) == heads_,
                "paged KV cache: {} ALiBi slopes for {} heads", alibi.size(), heads_);
  kernels::Backend& be = backend_for(device_);
  const Tensor q = q_any.contiguous(), k = k_any.contiguous(), v = v_any.contiguous();
  be.paged_kv_write(k.data<float>(), v.data<float>(), keys_[size_t(layer)].data<float>(),
                    values_[size_t(layer)].data<float>(), slots_.data<int32_t>(), int(step_tokens_),
                    int(heads_), int(head_dim_), int(block_size_));
  kernels::PagedAttentionShape shape;
  shape.sequences = int(step_sequences_);
  shape.tokens = int(step_tokens_);
  shape.heads = int(heads_);
  shape.head_dim = int(head_dim_);
  shape.block_size = int(block_size_);
  shape.max_blocks = int(max_blocks_);
  shape.scale = 1.0f / std::sqrt(float(head_dim_));
  shape.alibi_slopes = alibi.empty() ? nullptr : alibi.data();
  Tensor out = Tensor::empty(expected, DType::f32, device_);
  be.paged_attention(shape, q.data<float>(), keys_[size_t(layer)].data<float>(),
                     values_[size_t(layer)].data<float>(), tables_.data<int32_t>(),
                     seq_info_.data<int32_t>(), out.data<float>());
  return out;
}

void PagedKvCache::commit() {
  TURBINE_CHECK(step_tokens_ > 0, "paged KV cache: commit() without begin()");
  step_tokens_ = step_sequences_ = 0;
}

}  // namespace turbine::nn
