// The offline data analyzer of curriculum learning (DeepSpeed's DataAnalyzer):
// per-window metric values over a token data set's training split, computed
// under MPI as a map-reduce, and stored as a difficulty index
// (difficulty_index.hpp).
//
// vocabularyrarity, in two rounds:
//   1. unigram counts: each rank counts its share of the training tokens; the
//      counts are summed over the ranks (as doubles: exact below 2^53 tokens).
//   2. map: each rank computes the values of its contiguous share of the
//      windows, each the mean over the window's T + 1 tokens of
//      -log p(token) = log(N) - log(count), N the training tokens, summed in
//      token order; reduce: the shares are gathered (a sum of disjoint slices
//      in which every other rank contributes zeros, so exact) and rank 0
//      sorts them and writes the index.
// A window's value depends only on its own tokens and the global counts, so
// any number of ranks writes the same file.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "data/token_dataset.hpp"
#include "dist/communicator.hpp"
#include "efficiency/curriculum.hpp"

namespace turbine::efficiency {

struct AnalyzeOptions {
  std::string dataset;  // a token data set made by tools/prepare-data
  Metric metric = Metric::vocabularyrarity;
  int64_t seq_len = 0;   // the training windows' length, data.seq_len
  std::string output;    // "": DifficultyIndex::path_for(dataset, metric, seq_len)
  bool force = false;    // replace an existing index
  bool progress = true;  // a progress line on rank 0 (stderr)
};

struct AnalyzeResult {
  std::string path;  // the index written
  int64_t windows = 0;
  double min = 0, median = 0, max = 0;  // of the windows' values
  double seconds = 0;
};

// Computes and writes the index (rank 0 writes; every rank returns the
// result). Collective over `comm`.
AnalyzeResult analyze_data(const AnalyzeOptions& options, dist::Communicator& comm);

// The building blocks, for one rank's share.
// Occurrences of each vocabulary id among tokens [begin, end) of a split.
std::vector<double> token_counts(const data::TokenDataset& dataset, data::Split split,
                                 int64_t begin, int64_t end);
// log(N) - log(count) for each id, N the sum of the counts (infinity for a count of 0).
std::vector<double> negative_log_frequencies(std::span<const double> counts);
// vocabularyrarity of training windows [first, end) at seq_len: the mean of
// neg_log_freq over each window's seq_len + 1 tokens. `on_progress(done)` is
// called after each chunk read.
std::vector<double> vocabulary_rarity(const data::TokenDataset& dataset,
                                      std::span<const double> neg_log_freq, int64_t seq_len,
                                      int64_t first, int64_t end,
                                      const std::function<void(int64_t)>& on_progress = {});

}  // namespace turbine::efficiency
