// The KV cache of incremental decoding (nn/kv_cache.hpp).
#include "nn/kv_cache.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "nn/bloom.hpp"
#include "ops/ops.hpp"

namespace turbine::nn {

KvCache::KvCache(const BloomConfig& config, int64_t batch, int64_t capacity, Device device,
                 int64_t heads)
    : batch_(batch),
      capacity_(capacity),
      heads_(heads > 0 ? heads : config.n_head),
      head_dim_(config.head_dim()),
      device_(device),
      kinds_(size_t(std::max<int64_t>(0, batch * capacity)), ops::kPaddingToken) {
  TURBINE_CHECK(batch > 0 && capacity > 0, "KV cache: batch {} and capacity {} must be positive",
                batch, capacity);
  for (int64_t i = 0; i < config.n_layer; ++i) {
    keys_.push_back(Tensor::zeros({batch, heads_, capacity, head_dim_}, DType::f32, device));
    values_.push_back(Tensor::zeros({batch, heads_, capacity, head_dim_}, DType::f32, device));
  }
}

int64_t KvCache::nbytes() const {
  return 2 * int64_t(keys_.size()) * batch_ * heads_ * capacity_ * head_dim_ * 4;
}

void KvCache::begin(int64_t tokens, const std::vector<uint8_t>& valid) {
  TURBINE_CHECK(valid.empty() || int64_t(valid.size()) == batch_ * tokens,
                "KV cache: {} validity flags for {} rows of {} positions", valid.size(), batch_,
                tokens);
  std::vector<int32_t> kinds(size_t(std::max<int64_t>(0, batch_ * tokens)), ops::kTextToken);
  for (size_t i = 0; i < valid.size(); ++i)
    if (!valid[i]) kinds[i] = ops::kPaddingToken;
  begin_kinds(tokens, kinds);
}

void KvCache::begin_kinds(int64_t tokens, std::span<const int32_t> kinds) {
  TURBINE_CHECK(pending_ == 0, "KV cache: begin() twice without commit()");
  TURBINE_CHECK(tokens > 0, "KV cache: no positions to add");
  TURBINE_CHECK(length_ + tokens <= capacity_,
                "KV cache: {} cached + {} new positions exceed its capacity of {} (the context "
                "window this cache was made for)",
                length_, tokens, capacity_);
  TURBINE_CHECK(int64_t(kinds.size()) == batch_ * tokens,
                "KV cache: {} position kinds for {} rows of {} positions", kinds.size(), batch_,
                tokens);
  for (int64_t b = 0; b < batch_; ++b)
    for (int64_t t = 0; t < tokens; ++t) {
      const int32_t kind = kinds[size_t(b * tokens + t)];
      kinds_[size_t(b * capacity_ + length_ + t)] = kind;
      any_padding_ |= kind == ops::kPaddingToken;
      any_image_ |= kind > 0;
    }
  pending_ = tokens;
  mask_ = Tensor();
  mmca_masks_ = {};
  const bool multimodal = mmca_ && any_image_;
  if (!any_padding_ && !multimodal) return;
  const int64_t keys = length_ + tokens;
  std::vector<int32_t> rows(size_t(batch_ * keys));  // each row's kinds so far
  for (int64_t b = 0; b < batch_; ++b)
    std::copy_n(kinds_.begin() + b * capacity_, keys, rows.begin() + b * keys);
  if (multimodal)
    mmca_masks_ = ops::mmca_masks(rows, batch_, keys, tokens, device_);
  else
    mask_ = ops::padding_mask(rows, batch_, keys, tokens, device_);
}

std::pair<Tensor, Tensor> KvCache::append(int64_t layer, const Tensor& k_any, const Tensor& v_any) {
  TURBINE_CHECK(layer >= 0 && layer < int64_t(keys_.size()), "KV cache: no layer {}", layer);
  TURBINE_CHECK(pending_ > 0, "KV cache: append() outside begin()/commit()");
  const Shape expected = {batch_, heads_, pending_, head_dim_};
  TURBINE_CHECK(k_any.shape() == expected && v_any.shape() == expected,
                "KV cache: keys {} and values {} for positions ({}, {}, {}, {})", k_any.str(),
                v_any.str(), batch_, heads_, pending_, head_dim_);
  kernels::Backend& be = backend_for(device_);
  const int64_t plane = capacity_ * head_dim_, rows = batch_ * heads_, cols = pending_ * head_dim_;
  for (auto [src_any, dst] :
       {std::pair{&k_any, &keys_[size_t(layer)]}, {&v_any, &values_[size_t(layer)]}}) {
    const Tensor src = src_any->contiguous();
    // Each (b, h) plane's new rows, one strided block copy.
    be.copy_rows_strided(src.data<float>(), cols, dst->data<float>() + length_ * head_dim_, plane,
                         rows, cols, false);
  }
  const int64_t keys = length_ + pending_;
  return {keys_[size_t(layer)].narrow(2, 0, keys), values_[size_t(layer)].narrow(2, 0, keys)};
}

Tensor KvCache::attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v,
                       const std::vector<float>& alibi) {
  const auto [keys, values] = append(layer, k, v);
  ops::AttentionOptions options;
  options.causal = true;  // the new queries sit after the cached keys
  options.alibi_slopes = alibi;
  if (mmca_masks_.text.defined()) return ops::mmca_attention(q, keys, values, options, mmca_masks_);
  options.mask = mask_;
  return ops::attention(q, keys, values, options, nullptr);
}

void KvCache::commit() {
  TURBINE_CHECK(pending_ > 0, "KV cache: commit() without begin()");
  length_ += pending_;
  pending_ = 0;
  mask_ = Tensor();
  mmca_masks_ = {};
}

void KvCache::clear() {
  std::fill(kinds_.begin(), kinds_.end(), ops::kPaddingToken);
  any_padding_ = any_image_ = false;
  length_ = pending_ = 0;
  mask_ = Tensor();
  mmca_masks_ = {};
}

}  // namespace turbine::nn
