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
                              const SamplingOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  TURBINE_CHECK(!tokens.empty(), "generate: the prompt encodes to no tokens");
  TURBINE_CHECK(o.temperature >= 0 && o.top_k >= 0 && o.context > 0,
                "generate: temperature {} and top_k {} must be >= 0, context {} > 0", o.temperature,
                o.top_k, o.context);
  autograd::NoGradGuard no_grad;
  const int64_t vocab = model.config().vocab_size;
  // The cache holds at most `context` positions. Within it each token costs
  // one position; once the text outgrows it, the window of the last
  // `context` tokens is recomputed for every token (as without a cache).
  const int64_t capacity =
      std::min<int64_t>(o.context, int64_t(tokens.size()) + std::max<int64_t>(o.max_new_tokens, 1));
  nn::KvCache cache(model.config(), 1, capacity, model.device());
  const auto prefill = [&] {
    cache.clear();
    const int64_t start = std::max<int64_t>(0, int64_t(tokens.size()) - capacity);
    const std::vector<int32_t> window(tokens.begin() + start, tokens.end());
    return model.decode(Tensor::from_vector<int32_t>({1, int64_t(window.size())}, window), cache);
  };
  Tensor logits = prefill();
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (n > 0)
      logits = cache.length() < capacity
                   ? model.decode(Tensor::from_vector<int32_t>({1, 1}, {tokens.back()}), cache)
                   : prefill();
    const auto all = logits.to_vector<float>();
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
    if (on_token) on_token(next);
    if (next == o.stop_token) break;
  }
  return tokens;
}

}  // namespace turbine::infer
