// A metric's difficulty index over a token data set's training windows, made
// once by tools/analyze-data (data_analyzer.hpp) and read at training time,
// so that drawing by difficulty costs a binary search, never a scan.
// Windows are data::WindowLoader's: window w holds train tokens
// [w * T, w * T + T + 1) for T = seq_len, so an index is made for one seq_len.
//
// File `<data set minus .h5>.<metric>.seq<T>.index.h5`, format
// "turbine-difficulty-index", version 1:
//
//   /                     attributes
//     format                string  "turbine-difficulty-index"
//     version               int64   1
//     metric                string  "vocabularyrarity"
//     seq_len               int64   T
//     windows               int64   W = (train tokens - 1) / T
//     tokenizer_identity    string  the data set's Tokenizer::identity()
//     train_tokens          int64   the data set's training tokens ...
//     train_docs            int64   ... and documents, so a re-prepared data set
//                                   is told apart from the one indexed
//     value_min, value_median, value_max   double (for people; not read back)
//   /values               float32 (W): the metric's value of each window
//   /sorted_windows       int64 (W): windows from easiest to hardest (ties: lower window first)
//   /sorted_values        float32 (W): values[sorted_windows[k]]
//
// Values are stored (and compared) in float32: a window's rank never depends
// on digits the file does not hold.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/token_dataset.hpp"
#include "efficiency/curriculum.hpp"

namespace turbine::efficiency {

inline constexpr const char* kIndexFormat = "turbine-difficulty-index";
inline constexpr int64_t kIndexFormatVersion = 1;

// What an index was computed from; load() refuses an index whose identity
// differs from the data set's.
struct IndexIdentity {
  Metric metric = Metric::vocabularyrarity;
  int64_t seq_len = 0, windows = 0;
  std::string tokenizer_identity;
  int64_t train_tokens = 0, train_docs = 0;
  bool operator==(const IndexIdentity&) const = default;
};
// The identity an index of `metric` at `seq_len` over this data set must have.
IndexIdentity index_identity(const data::TokenDataset& dataset, Metric metric, int64_t seq_len);

class DifficultyIndex {
 public:
  // `<dataset_path minus .h5>.<metric>.seq<seq_len>.index.h5`
  static std::string path_for(const std::string& dataset_path, Metric metric, int64_t seq_len);
  // One value per window (values.size() == identity.windows).
  static DifficultyIndex from_values(std::span<const float> values, IndexIdentity identity);
  // Reads `path` and checks that it indexes this data set's training windows
  // for `metric` and `seq_len`; a missing, foreign or stale index is an error
  // that says what to run.
  static DifficultyIndex load(const std::string& path, const data::TokenDataset& dataset,
                              Metric metric, int64_t seq_len);
  // load(path_for(dataset.path(), metric, seq_len), ...).
  static DifficultyIndex open_for(const data::TokenDataset& dataset, Metric metric,
                                  int64_t seq_len);

  // Writes the file atomically: to `path + ".tmp"`, then renamed.
  void save(const std::string& path) const;

  const IndexIdentity& identity() const { return identity_; }
  int64_t windows() const { return identity_.windows; }
  std::span<const float> values() const { return values_; }  // by window
  // How many windows have a value <= difficulty: O(log W).
  int64_t count_at_most(double difficulty) const;
  // The k-th easiest window, 0 <= k < windows(): O(1). The windows at or under
  // a difficulty d are window_at(0 .. count_at_most(d) - 1).
  int64_t window_at(int64_t k) const { return sorted_windows_[size_t(k)]; }
  float sorted_value(int64_t k) const { return sorted_values_[size_t(k)]; }

  // Windows in the easiest `percentile` of `max_percentile` (DeepSpeed's
  // percentile difficulty, max_difficulty being 100%): floor(W x p / max),
  // all W from p = max on. DeepSpeed takes (W // max) x p instead, which is
  // the same when max divides W but otherwise leaves out up to max - 1
  // windows below 100% and selects none at all when W < max.
  int64_t count_at_percentile(int64_t percentile, int64_t max_percentile) const;
  // The value of the hardest window in that percentile (percentile -> value);
  // NaN when it holds no window.
  double value_at_percentile(int64_t percentile, int64_t max_percentile) const;

  double min_value() const { return sorted_values_.front(); }
  double median_value() const { return sorted_values_[sorted_values_.size() / 2]; }
  double max_value() const { return sorted_values_.back(); }

 private:
  IndexIdentity identity_;
  std::vector<float> values_, sorted_values_;
  std::vector<int64_t> sorted_windows_;
};

}  // namespace turbine::efficiency
