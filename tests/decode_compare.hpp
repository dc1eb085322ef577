// Two decoders side by side (tensor-parallel vs serial, streamed vs
// resident): a ragged batch of prompts, left-padded, prefilled, then greedy
// steps that feed both the reference's tokens; the worst normalized error of
// the other's logits and whether the greedy tokens ever differ.
#pragma once

#include <algorithm>
#include <vector>

#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "infer/generate.hpp"

namespace turbine::testing {

struct DecodeComparison {
  double worst_error = 0;  // ||other - reference|| / ||reference||, worst step
  bool same_tokens = true;
};

// Each row's argmax of (rows, vocab) host logits.
inline std::vector<int32_t> greedy_tokens(const Tensor& logits) {
  const std::vector<float> v = logits.to_vector<float>();
  const int64_t vocab = logits.dim(1);
  std::vector<int32_t> out;
  for (int64_t r = 0; r < logits.dim(0); ++r) {
    const float* row = v.data() + r * vocab;
    out.push_back(int32_t(std::max_element(row, row + vocab) - row));
  }
  return out;
}

// Prompts of `lengths` tokens (ids below `vocab`), then `steps` steps.
inline DecodeComparison compare_decoding(const infer::Decoder& reference,
                                         const infer::Decoder& other,
                                         const std::vector<int64_t>& lengths, int64_t vocab,
                                         int64_t steps) {
  const autograd::NoGradGuard inference;
  const int64_t rows = int64_t(lengths.size());
  const int64_t width = *std::max_element(lengths.begin(), lengths.end());
  std::vector<int32_t> ids;
  std::vector<uint8_t> valid;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < width; ++t) {
      const bool real = t >= width - lengths[size_t(r)];
      ids.push_back(real ? int32_t((r * 31 + t * 7) % vocab) : 0);
      valid.push_back(real ? 1 : 0);
    }
  nn::KvCache cache_a = reference.new_cache(rows, width + steps),
              cache_b = other.new_cache(rows, width + steps);
  Tensor a = reference.decode(Tensor::from_vector<int32_t>({rows, width}, ids), cache_a, valid);
  Tensor b = other.decode(Tensor::from_vector<int32_t>({rows, width}, ids), cache_b, valid);
  DecodeComparison out;
  for (int64_t step = 0;; ++step) {
    out.worst_error =
        std::max(out.worst_error, norm_error(b.to_vector<float>(), a.to_vector<float>()));
    const std::vector<int32_t> next = greedy_tokens(a);
    out.same_tokens = out.same_tokens && greedy_tokens(b) == next;
    if (step == steps) break;
    a = reference.decode(Tensor::from_vector<int32_t>({rows, 1}, next), cache_a);
    b = other.decode(Tensor::from_vector<int32_t>({rows, 1}, next), cache_b);
  }
  return out;
}

}  // namespace turbine::testing
