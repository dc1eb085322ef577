// Unigram entropy, streamed in chunks.
#include "data/token_stats.hpp"

#include <cmath>
#include <vector>

namespace turbine::data {

double unigram_entropy(const TokenDataset& dataset, Split split) {
  std::vector<int64_t> counts(dataset.vocab_size(), 0);
  const int64_t total = dataset.num_tokens(split);
  std::vector<int32_t> chunk(1 << 20);
  for (int64_t at = 0; at < total; at += int64_t(chunk.size())) {
    const int64_t n = std::min<int64_t>(int64_t(chunk.size()), total - at);
    dataset.read(split, at, n, chunk.data());
    for (int64_t i = 0; i < n; ++i) ++counts[chunk[i]];
  }
  double entropy = 0;
  for (int64_t c : counts)
    if (c > 0) entropy -= double(c) / total * std::log(double(c) / total);
  return entropy;
}

}  // namespace turbine::data
