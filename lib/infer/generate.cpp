// Sampling loop.
#include "infer/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "dist/tensor_parallel.hpp"

namespace turbine::infer {

int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& o,
                     const std::vector<int32_t>& history, uint64_t draw, double* logprob) {
  if (logprob) {
    const double top = *std::max_element(logits, logits + vocab);
    double z = 0;
    for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - top);
    // filled in below, once the token is known
    *logprob = -(top + std::log(z));
  }
  std::vector<float> scores(logits, logits + vocab);
  if (o.repetition_penalty != 1.0) {
    std::vector<bool> seen(size_t(vocab), false);
    for (int32_t t : history)
      if (t >= 0 && t < vocab) seen[size_t(t)] = true;
    for (int64_t i = 0; i < vocab; ++i)
      if (seen[size_t(i)])
        scores[size_t(i)] = scores[size_t(i)] > 0 ? float(scores[size_t(i)] / o.repetition_penalty)
                                                  : float(scores[size_t(i)] * o.repetition_penalty);
  }
  int32_t next = 0;
  if (o.temperature == 0) {
    next = static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
  } else {
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
    // Descending by score, ties by id, so the order is the same everywhere.
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return scores[size_t(a)] > scores[size_t(b)] ||
             (scores[size_t(a)] == scores[size_t(b)] && a < b);
    });
    std::vector<double> weights(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i)
      weights[size_t(i)] = std::exp(
          (double(scores[size_t(order[size_t(i)])]) - scores[size_t(order[0])]) / o.temperature);
    double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    int64_t kept = k;
    if (o.top_p < 1.0) {  // the smallest prefix whose probability reaches top_p
      double cumulative = 0;
      for (kept = 0; kept < k;) {
        cumulative += weights[size_t(kept++)] / total;
        if (cumulative >= o.top_p) break;
      }
      total = std::accumulate(weights.begin(), weights.begin() + kept, 0.0);
    }
    double u = philox_uniform(o.seed, 0x5a3b1e, draw, 0) * total;
    int64_t pick = 0;
    while (pick + 1 < kept && u >= weights[size_t(pick)]) u -= weights[size_t(pick++)];
    next = order[size_t(pick)];
  }
  if (logprob) *logprob += double(logits[next]);
  return next;
}

Tensor Decoder::decode(const Tensor& ids, nn::KvCache& cache,
                       const std::vector<uint8_t>& valid) const {
  const Tensor local = model.decode(ids, cache, valid);
  if (tensor_parallel == nullptr) return local.to(Device::cpu());
  return dist::gather_vocab_logits(*tensor_parallel, model, local).to(Device::cpu());
}

Tensor Decoder::decode_paged(const Tensor& ids, nn::PagedKvCache& cache) const {
  const Tensor local = model.decode_paged(ids, cache);
  if (local.dim(0) == 0) return Tensor::zeros({0, model.config().vocab_size});  // every rank alike
  if (tensor_parallel == nullptr) return local.to(Device::cpu());
  return dist::gather_vocab_logits(*tensor_parallel, model, local).to(Device::cpu());
}

nn::PagedKvCache Decoder::new_paged_cache(int64_t blocks, int64_t block_size) const {
  return nn::PagedKvCache(model.config(), blocks, block_size, model.device(), model.heads());
}

std::vector<int32_t> generate(const Decoder& decoder, std::vector<int32_t> tokens,
                              const SamplingOptions& o,
                              const std::function<bool(int32_t)>& on_token) {
  TURBINE_CHECK(!tokens.empty(), "generate: the prompt encodes to no tokens");
  TURBINE_CHECK(o.temperature >= 0 && o.top_k >= 0 && o.context > 0 && o.top_p > 0 &&
                    o.top_p <= 1 && o.repetition_penalty > 0,
                "generate: temperature {} and top_k {} must be >= 0, context {} > 0, top_p {} in "
                "(0, 1], repetition_penalty {} > 0",
                o.temperature, o.top_k, o.context, o.top_p, o.repetition_penalty);
  autograd::NoGradGuard no_grad;
  const int64_t vocab = decoder.model.config().vocab_size;
  // The cache holds at most `context` positions. Within it each token costs
  // one position; once the text outgrows it, the window of the last
  // `context` tokens is recomputed for every token (as without a cache).
  const int64_t capacity =
      std::min<int64_t>(o.context, int64_t(tokens.size()) + std::max<int64_t>(o.max_new_tokens, 1));
  nn::KvCache cache = decoder.new_cache(1, capacity);
  const auto prefill = [&] {
    cache.clear();
    const int64_t start = std::max<int64_t>(0, int64_t(tokens.size()) - capacity);
    const std::vector<int32_t> window(tokens.begin() + start, tokens.end());
    return decoder.decode(Tensor::from_vector<int32_t>({1, int64_t(window.size())}, window), cache);
  };
  Tensor logits = prefill();
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (n > 0)
      logits = cache.length() < capacity
                   ? decoder.decode(Tensor::from_vector<int32_t>({1, 1}, {tokens.back()}), cache)
                   : prefill();
    const auto all = logits.to_vector<float>();
    const float* last = all.data();
    const int32_t next = sample_token(last, vocab, o, tokens, uint64_t(n));
    tokens.push_back(next);
    if (on_token && !on_token(next)) break;
    if (next == o.stop_token) break;
  }
  return tokens;
}

}  // namespace turbine::infer
