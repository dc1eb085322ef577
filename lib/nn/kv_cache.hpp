// The keys and values a BLOOM has computed for a batch of sequences, so that
// decoding computes one new position per step instead of the whole context
// (incremental decoding, as DeepSpeed-Inference and llama.cpp). Per layer,
// keys and values are (B, H, capacity, D) buffers; attention reads the
// first length() positions of them in place (ops::attention's cache views).
//
// A batch of prompts of different lengths is left-padded to one length: the
// padding positions are marked invalid and masked as keys. ALiBi adds
// -slope * (i - j), which depends only on the distance between two real
// tokens, so padding changes no real token's scores (Hugging Face's BLOOM
// does the same with its attention mask).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ops/ops.hpp"
#include "tensor/tensor.hpp"

namespace turbine::nn {

struct BloomConfig;

// What a block's attention reads and extends at inference: the dense
// KvCache of a batch below, or the PagedKvCache of continuous batching
// (nn/paged_kv_cache.hpp).
class AttentionCache {
 public:
  virtual ~AttentionCache() = default;
  // Layer `layer`'s attention for the pending positions: q, k, v (B, H, Tq,
  // D) of them; k and v join the cache first. Returns (B, H, Tq, D).
  virtual Tensor attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v,
                        const std::vector<float>& alibi) = 0;
};

class KvCache final : public AttentionCache {
 public:
  // heads: per layer (a tensor-parallel rank's share); 0: config.n_head.
  KvCache(const BloomConfig& config, int64_t batch, int64_t capacity, Device device,
          int64_t heads = 0);

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // positions cached, padding included
  int64_t nbytes() const;                     // keys and values of every layer

  // Appends the next `tokens` positions' validity ((B, tokens) row-major, 1
  // for a real token, 0 for left padding; empty: all real). Call once per
  // forward, before its layers append; checks the capacity.
  void begin(int64_t tokens, const std::vector<uint8_t>& valid);
  // The same with each position's kind ((B, tokens) row-major: ops::kTextToken,
  // ops::kPaddingToken or an image's number, unique along a row over every
  // call): a multi-modal sequence.
  void begin_kinds(int64_t tokens, std::span<const int32_t> kinds);
  // Multi-modal causal attention (ops::mmca_masks) once a row holds an
  // image's tokens; off (the default): causal attention over every real key.
  void set_mmca(bool mmca) { mmca_ = mmca; }
  bool mmca() const { return mmca_; }
  // Layer `layer`'s keys and values of those positions, k and v (B, H,
  // tokens, D), copied in; returns views of all its keys and values so far
  // (B, H, length() + tokens, D).
  std::pair<Tensor, Tensor> append(int64_t layer, const Tensor& k, const Tensor& v);
  // The key mask of the pending positions' queries, (B, tokens, length() +
  // tokens) u8 on the device, or undefined when no cached position is padding
  // (or when MMCA's masks are in use).
  const Tensor& mask() const { return mask_; }
  // append, then causal attention of q over every cached key (masked
  // padding), or MMCA when it is on and an image is cached.
  Tensor attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v,
                const std::vector<float>& alibi) override;
  // Ends the forward: the pending positions become cached.
  void commit();
  // Forgets every position (the buffers are kept for the next batch).
  void clear();

 private:
  int64_t batch_, capacity_, heads_, head_dim_;
  Device device_;
  std::vector<Tensor> keys_, values_;  // per layer (B, H, capacity, D)
  std::vector<int32_t> kinds_;         // (B, capacity): ops::kTextToken, kPaddingToken, image n
  bool any_padding_ = false, any_image_ = false, mmca_ = false;
  int64_t length_ = 0, pending_ = 0;
  Tensor mask_;
  ops::MmcaMasks mmca_masks_;  // the pending queries' when MMCA applies
};

}  // namespace turbine::nn
