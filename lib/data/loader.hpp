// Training windows over a token data set. A split of N tokens is cut into
// W = (N - 1) / T windows of T + 1 tokens starting every T tokens (inputs are
// the first T, targets the last T). Global sample i (counting across epochs)
// is window perm_e[i mod W] of epoch e = i / W, where perm_e is a seeded
// shuffle of the epoch. A step's global batch is a contiguous range of sample
// indices, so the only position to save is "samples consumed", and any
// world size reads the same samples; each rank reads only its own windows
// from disk (hyperslabs).
#pragma once

#include <cstdint>
#include <vector>

#include "data/token_dataset.hpp"
#include "tensor/tensor.hpp"

namespace turbine::data {

// A seeded order over n items that repeats in epochs: global sample i is
// item perm_e[i mod n] of epoch e = i / n, perm_e a Fisher-Yates shuffle
// drawn from the counter-based RNG at (seed, salt + e); identity when not
// shuffling. Any rank computes any sample's item alone.
class EpochOrder {
 public:
  EpochOrder(int64_t items, uint64_t seed, bool shuffle, uint64_t salt);
  int64_t items() const { return items_; }
  int64_t at(int64_t sample);

 private:
  int64_t items_;
  uint64_t seed_, salt_;
  bool shuffle_;
  int64_t epoch_ = -1;
  std::vector<int64_t> permutation_;
};

struct Batch {
  Tensor ids, targets;  // (B, T) i64
};

class WindowLoader {
 public:
  WindowLoader(const TokenDataset& dataset, Split split, int64_t seq_len, uint64_t seed,
               bool shuffle);
  int64_t windows_per_epoch() const { return windows_; }
  int64_t seq_len() const { return seq_len_; }
  // The window (0 .. W-1) that global sample `sample` reads.
  int64_t window_of(int64_t sample);
  // Reads samples [first, first + count) as one batch.
  Batch read(int64_t first, int64_t count);

 private:
  const TokenDataset& dataset_;
  Split split_;
  int64_t seq_len_, windows_;
  EpochOrder order_;
};

}  // namespace turbine::data
