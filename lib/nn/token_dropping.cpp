// Random subsets of token positions.
#include "nn/token_dropping.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::nn {

bool TokenDropping::active_in(int64_t layer, int64_t seq_len) const {
  return kept > 0 && kept < seq_len &&
         std::find(layers.begin(), layers.end(), layer) != layers.end();
}

Tensor random_ltd_indices(int64_t batch, int64_t seq_len, int64_t kept, uint64_t seed,
                          uint64_t step, int64_t layer) {
  TURBINE_CHECK(kept > 0 && kept <= seq_len, "random-LTD: keeping {} of {} tokens", kept, seq_len);
  std::vector<int64_t> out(batch * kept), order(seq_len);
  for (int64_t b = 0; b < batch; ++b) {
    // Partial Fisher-Yates: the first `kept` entries become a uniform subset.
    std::iota(order.begin(), order.end(), 0);
    const uint64_t stream = (step << 24) ^ (uint64_t(layer) << 16) ^ uint64_t(b);
    for (int64_t i = 0; i < kept; ++i) {
      const auto r = philox4x32(seed ^ 0x17d0u, stream, uint64_t(i));
      const uint64_t draw = (uint64_t(r[0]) << 32) | r[1];
      std::swap(order[i], order[i + int64_t(draw % uint64_t(seq_len - i))]);
    }
    std::sort(order.begin(), order.begin() + kept);
    std::copy(order.begin(), order.begin() + kept, out.begin() + b * kept);
  }
  return Tensor::from_vector<int64_t>({batch, kept}, out);
}

}  // namespace turbine::nn
