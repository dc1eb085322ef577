// Seeded, resumable window sampling and batched reads.
#include "data/loader.hpp"

#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::data {

EpochOrder::EpochOrder(int64_t items, uint64_t seed, bool shuffle, uint64_t salt)
    : items_(items), seed_(seed), salt_(salt), shuffle_(shuffle) {
  TURBINE_CHECK(items > 0, "EpochOrder: no items to order");
}

int64_t EpochOrder::at(int64_t sample) {
  TURBINE_CHECK(sample >= 0, "EpochOrder: negative sample index {}", sample);
  if (!shuffle_) return sample % items_;
  const int64_t epoch = sample / items_;
  if (epoch != epoch_) {
    // Fisher-Yates driven by the counter-based RNG at (seed, salt + epoch).
    permutation_.resize(size_t(items_));
    std::iota(permutation_.begin(), permutation_.end(), 0);
    for (int64_t i = items_ - 1; i > 0; --i) {
      const auto r = philox4x32(seed_, salt_ + uint64_t(epoch), uint64_t(i));
      const uint64_t draw = (uint64_t(r[0]) << 32) | r[1];
      std::swap(permutation_[size_t(i)], permutation_[size_t(draw % uint64_t(i + 1))]);
    }
    epoch_ = epoch;
  }
  return permutation_[size_t(sample % items_)];
}

namespace {
int64_t count_windows(const TokenDataset& dataset, Split split, int64_t seq_len) {
  TURBINE_CHECK(seq_len > 0, "data.seq_len must be positive, got {}", seq_len);
  const int64_t tokens = dataset.num_tokens(split);
  const int64_t windows = tokens > 0 ? (tokens - 1) / seq_len : 0;
  TURBINE_CHECK(windows > 0,
                "{}: the {} split has {} tokens, fewer than one window of seq_len + 1 = {}: use "
                "a shorter data.seq_len or more data",
                dataset.path(), split_name(split), tokens, seq_len + 1);
  return windows;
}
}  // namespace

WindowLoader::WindowLoader(const TokenDataset& dataset, Split split, int64_t seq_len,
                           uint64_t seed, bool shuffle)
    : dataset_(dataset),
      split_(split),
      seq_len_(seq_len),
      windows_(count_windows(dataset, split, seq_len)),
      order_(windows_, seed, shuffle, 0x10ade5u) {}

int64_t WindowLoader::window_of(int64_t sample) { return order_.at(sample); }

Batch WindowLoader::read(int64_t first, int64_t count) {
  const int64_t T = seq_len_;
  std::vector<int64_t> ids(count * T), targets(count * T);
  std::vector<int32_t> window(T + 1);
  for (int64_t b = 0; b < count; ++b) {
    const int64_t start = window_of(first + b) * T;
    dataset_.read(split_, start, T + 1, window.data());
    for (int64_t t = 0; t < T; ++t) {
      ids[b * T + t] = window[t];
      targets[b * T + t] = window[t + 1];
    }
  }
  return {Tensor::from_vector<int64_t>({count, T}, ids),
          Tensor::from_vector<int64_t>({count, T}, targets)};
}

}  // namespace turbine::data
