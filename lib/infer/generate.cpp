// Sampling loop.
#include "infer/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::infer {

std::vector<int32_t> generate(const nn::Bloom& model, std::vector<int32_t> tokens,
                              const SamplingOptions& o) {
  TURBINE_CHECK(!tokens.empty(), "generate: the prompt encodes to no tokens");
  TURBINE_CHECK(o.temperature >= 0 && o.top_k >= 0 && o.context > 0,
                "generate: temperature {} and top_k {} must be >= 0, context {} > 0", o.temperature,
                o.top_k, o.context);
  autograd::NoGradGuard no_grad;
  const int64_t vocab = model.config().vocab_size;
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    const int64_t start = std::max<int64_t>(0, int64_t(tokens.size()) - o.context);
    const std::vector<int32_t> window(tokens.begin() + start, tokens.end());
    const Tensor ids = Tensor::from_vector<int32_t>({1, int64_t(window.size())}, window);
    // The LM head on the last position only: (1, vocab).
    const auto all =
        model.logits_at(ids, Tensor::from_vector<int64_t>({1}, {-1})).to_vector<float>();
    const float* last = all.data();
    int32_t next = 0;
    if (o.temperature == 0) {
      next = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
    } else {
      std::vector<int32_t> order(vocab);
      std::iota(order.begin(), order.end(), 0);
      const int64_t k = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t a, int32_t b) { return last[a] > last[b]; });
      std::vector<double> weights(k);
      for (int64_t i = 0; i < k; ++i)
        weights[i] = std::exp((last[order[i]] - last[order[0]]) / o.temperature);
      const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
      double draw = philox_uniform(o.seed, 0x5a3b1e, uint64_t(n), 0) * total;
      int64_t pick = 0;
      while (pick + 1 < k && draw >= weights[pick]) draw -= weights[pick++];
      next = order[pick];
    }
    tokens.push_back(next);
    if (next == o.stop_token) break;
  }
  return tokens;
}

}  // namespace turbine::infer
