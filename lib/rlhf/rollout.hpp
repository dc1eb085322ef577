// PPO's generation phase: the actor answers a batch of prompts. The hybrid
// engine (enable_hybrid_engine) generates with infer's KV-cache decoding
// directly on the actor's training weights, with no copy: the prompts
// left-padded into one batch, one prefill, then one token per step for every
// row; LoRA adapters are merged into their weights for the phase and
// unmerged after it. Without it, every token recomputes the whole sequence
// (Hugging Face's generate with use_cache=False), for comparison.
//
// Row b samples with its own seed (SamplingOptions::seed = seeds[b]),
// numbering draws from its first answer token, so its answer does not depend
// on the batch around it, and both paths draw the same tokens. A row ends at
// the end-of-text token (kept, as the answer's last token) or after
// max_answer tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "infer/generate.hpp"
#include "nn/bloom.hpp"

namespace turbine::rlhf {

struct RolloutOptions {
  int64_t max_answer = 64;          // max_answer_seq_len
  infer::SamplingOptions sampling;  // temperature, top_k, top_p (seed and length are set per row)
  bool kv_cache = true;             // the hybrid engine; false: recompute every token
  int32_t eos = -1;                 // ends an answer
  int32_t pad = 0;                  // fills the right padding
};

// Right-packed: row b is prompt_b, answer_b, then padding, width
// max(prompt) + max(answer). The answer region of row b starts at action
// position prompt_lengths[b] - 1 (models.hpp).
struct Rollout {
  Tensor ids;  // (B, W) i64, host
  std::vector<int64_t> prompt_lengths, answer_lengths;
  int64_t answer_width = 0;             // max(answer_lengths)
  double seconds = 0;                   // generating
  std::vector<int64_t> starts() const;  // prompt_lengths[b] - 1
  std::vector<int32_t> answer(int64_t row) const;
};

Rollout generate_rollout(const nn::Bloom& model, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<uint64_t>& seeds, const RolloutOptions& options);

}  // namespace turbine::rlhf
