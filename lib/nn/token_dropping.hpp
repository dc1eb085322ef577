// Random layerwise token dropping (random-LTD, Yao et al. 2022, arXiv
// 2211.11586): in the chosen layers only `kept` tokens of each sequence pass
// through the layer, a fresh random subset per sample, layer and step; the
// other tokens skip the layer unchanged. Kept tokens attend with their
// original positions (causality and ALiBi), through gather/scatter ops whose
// backward passes are exact.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::nn {

struct TokenDropping {
  std::vector<int64_t> layers;  // ids of the layers that drop tokens
  int64_t kept = 0;             // tokens kept per sequence; >= seq_len (or 0): nothing dropped
  uint64_t seed = 0;
  uint64_t step = 0;  // the training step: a new subset every step

  bool active_in(int64_t layer, int64_t seq_len) const;
};

// (batch, kept) i64, each row a sorted uniform random subset of [0, seq_len)
// drawn from the counter-based RNG at (seed, step, layer, row).
Tensor random_ltd_indices(int64_t batch, int64_t seq_len, int64_t kept, uint64_t seed,
                          uint64_t step, int64_t layer);

}  // namespace turbine::nn
