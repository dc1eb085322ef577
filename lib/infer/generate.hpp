// Autoregressive sampling from a BLOOM model: temperature and top-k over
// the last position's logits, drawn with the counter-based RNG so a sample
// is reproducible from its seed. Decodes with a KV cache (Bloom::decode):
// the prompt once, then one position per token.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "dist/process_group.hpp"
#include "nn/bloom.hpp"
#include "nn/paged_kv_cache.hpp"

namespace turbine::infer {

struct SamplingOptions {
  int64_t max_new_tokens = 48;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: the whole vocabulary
  // Nucleus sampling: the likeliest tokens whose probabilities (after
  // temperature and top-k) first reach top_p; 1: all.
  double top_p = 1.0;
  // CTRL's repetition penalty (as Hugging Face's): a token already in the
  // text has its logit divided by it when positive, multiplied when
  // negative; 1: off.
  double repetition_penalty = 1.0;
  int64_t context = 128;  // at most this many most recent tokens are fed
  uint64_t seed = 0;
  int64_t stop_token = -1;  // stop after emitting this id (e.g. EOS); -1: never
};

// The next token from one position's logits (vocab of them) under the
// options: `history` is the text so far (for the repetition penalty),
// `draw` numbers the draw (the n-th generated token) in the seed's stream.
// Writes the token's log-probability under the model's own distribution
// (log-softmax of the raw logits) to *logprob when given.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& options,
                     const std::vector<int32_t>& history, uint64_t draw, double* logprob = nullptr);

// What decoding steps run on: a model and, under tensor parallelism, the
// group whose ranks hold its parts (each rank runs the same steps; decode's
// vocabulary slices are gathered here, so every rank sees the whole logits
// and draws the same tokens).
struct Decoder {
  const nn::Bloom& model;
  dist::ProcessGroup* tensor_parallel = nullptr;
  // Bloom::decode, with the logits (B, vocab) on the host.
  Tensor decode(const Tensor& ids, nn::KvCache& cache,
                const std::vector<uint8_t>& valid = {}) const;
  nn::KvCache new_cache(int64_t batch, int64_t capacity) const {
    return model.new_cache(batch, capacity);
  }
  // Bloom::decode_paged, with the logits (R, vocab) on the host.
  Tensor decode_paged(const Tensor& ids, nn::PagedKvCache& cache) const;
  // A paged cache of `blocks` blocks for this model's heads (this rank's).
  nn::PagedKvCache new_paged_cache(int64_t blocks, int64_t block_size) const;
};

// The prompt followed by the generated tokens; on_token (if given) sees each
// generated token as soon as it is chosen (streaming) and returns false to
// end the text there (a stop string).
std::vector<int32_t> generate(const Decoder& decoder, std::vector<int32_t> prompt,
                              const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token = {});
inline std::vector<int32_t> generate(const nn::Bloom& model, std::vector<int32_t> prompt,
                                     const SamplingOptions& options,
                                     const std::function<bool(int32_t)>& on_token = {}) {
  return generate(Decoder{model}, std::move(prompt), options, on_token);
}

}  // namespace turbine::infer
