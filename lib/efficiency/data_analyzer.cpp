// The data analyzer: map (per-rank window values), reduce (gather, sort, write).
#include "efficiency/data_analyzer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/timer.hpp"
#include "efficiency/difficulty_index.hpp"

namespace turbine::efficiency {

namespace {

constexpr int64_t kChunkTokens = 1 << 20;
// Elements per allreduce: MPI counts are ints.
constexpr int64_t kReduceBlock = int64_t(1) << 26;

// Rank `rank` of `ranks`'s share [begin, end) of n items: contiguous, sizes differ by at most 1.
std::pair<int64_t, int64_t> share(int64_t n, int rank, int ranks) {
  const auto at = [&](int r) { return n / ranks * r + std::min<int64_t>(n % ranks, r); };
  return {at(rank), at(rank + 1)};
}

void sum_over_ranks(std::vector<double>& values, dist::Communicator& comm) {
  for (int64_t at = 0; at < int64_t(values.size()); at += kReduceBlock) {
    comm.allreduce_sum(values.data() + at, std::min<int64_t>(kReduceBlock, values.size() - at));
  }
}

}  // namespace

std::vector<double> token_counts(const data::TokenDataset& dataset, data::Split split,
                                 int64_t begin, int64_t end) {
  std::vector<double> counts(size_t(dataset.vocab_size()), 0.0);
  std::vector<int32_t> chunk(size_t(std::min(kChunkTokens, std::max<int64_t>(end - begin, 1))));
  for (int64_t at = begin; at < end; at += int64_t(chunk.size())) {
    const int64_t n = std::min<int64_t>(int64_t(chunk.size()), end - at);
    dataset.read(split, at, n, chunk.data());
    for (int64_t i = 0; i < n; ++i) counts[size_t(chunk[size_t(i)])] += 1;
  }
  return counts;
}

std::vector<double> negative_log_frequencies(std::span<const double> counts) {
  double total = 0;
  for (double c : counts) total += c;
  std::vector<double> nll(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    nll[i] = counts[i] > 0 ? std::log(total) - std::log(counts[i])
                           : std::numeric_limits<double>::infinity();
  }
  return nll;
}

std::vector<double> vocabulary_rarity(const data::TokenDataset& dataset,
                                      std::span<const double> neg_log_freq, int64_t seq_len,
                                      int64_t first, int64_t end,
                                      const std::function<void(int64_t)>& on_progress) {
  const int64_t T = seq_len;
  const int64_t per_chunk = std::max<int64_t>(1, kChunkTokens / T);
  std::vector<double> values(size_t(std::max<int64_t>(end - first, 0)));
  std::vector<int32_t> tokens;
  for (int64_t w0 = first; w0 < end; w0 += per_chunk) {
    const int64_t w1 = std::min(end, w0 + per_chunk);
    // Windows w0 .. w1 - 1 span tokens [w0 T, w1 T + 1): neighbours share one token.
    tokens.resize(size_t((w1 - w0) * T + 1));
    dataset.read(data::Split::train, w0 * T, int64_t(tokens.size()), tokens.data());
    for (int64_t w = w0; w < w1; ++w) {
      const int32_t* window = tokens.data() + (w - w0) * T;
      double sum = 0;
      for (int64_t t = 0; t <= T; ++t) sum += neg_log_freq[size_t(window[t])];
      values[size_t(w - first)] = sum / double(T + 1);
    }
    if (on_progress) on_progress(w1 - first);
  }
  return values;
}

AnalyzeResult analyze_data(const AnalyzeOptions& o, dist::Communicator& comm) {
  Timer timer;
  TURBINE_CHECK(!is_seqlen_metric(o.metric),
                "{} needs no index: its difficulty is a sequence length, and every window holds "
                "seq_len tokens; only vocabularyrarity is analyzed",
                metric_name(o.metric));
  TURBINE_CHECK(o.seq_len > 0, "--seq-len must be positive, got {}", o.seq_len);
  const data::TokenDataset dataset = data::TokenDataset::open(o.dataset);
  const IndexIdentity identity = index_identity(dataset, o.metric, o.seq_len);
  const std::string path =
      o.output.empty() ? DifficultyIndex::path_for(o.dataset, o.metric, o.seq_len) : o.output;
  data::refuse_to_overwrite(path, o.force);
  const bool leader = comm.rank() == 0;

  // Round 1: unigram counts of the whole training split.
  const auto [token_begin, token_end] = share(identity.train_tokens, comm.rank(), comm.size());
  std::vector<double> counts = token_counts(dataset, data::Split::train, token_begin, token_end);
  sum_over_ranks(counts, comm);
  const std::vector<double> nll = negative_log_frequencies(counts);

  // Round 2, map: this rank's windows.
  const auto [first, end] = share(identity.windows, comm.rank(), comm.size());
  ProgressLine progress(stderr, o.progress && leader, comm.size() == 1);
  Timer since_line;
  const auto show = [&](int64_t done, bool last) {
    const bool due = since_line.seconds() >= 10;
    if (due) since_line.reset();
    progress.show(fmt::format("analyze-data: {} of windows {}/{} on rank 0 of {} ({:.0f}%), "
                              "{:.1f}M tokens/s",
                              metric_name(o.metric), done, end - first, comm.size(),
                              100.0 * double(done) / double(std::max<int64_t>(end - first, 1)),
                              double(done * o.seq_len) / 1e6 / std::max(timer.seconds(), 1e-9)),
                  due, last);
  };
  const std::vector<double> mine = vocabulary_rarity(dataset, nll, o.seq_len, first, end,
                                                     [&](int64_t done) { show(done, false); });
  show(end - first, true);

  // Reduce: every window's value on every rank, then rank 0 writes the index.
  std::vector<double> all(size_t(identity.windows), 0.0);
  std::copy(mine.begin(), mine.end(), all.begin() + first);
  sum_over_ranks(all, comm);
  std::vector<float> values(all.begin(), all.end());
  const DifficultyIndex index = DifficultyIndex::from_values(values, identity);
  std::string failure;
  if (leader) {
    try {
      index.save(path);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  if (comm.any(!failure.empty())) {
    if (leader) throw Error(failure);
    TURBINE_FAIL("rank 0 could not write the index '{}' (its error says why)", path);
  }
  return {
      path,           index.windows(), index.min_value(), index.median_value(), index.max_value(),
      timer.seconds()};
}

}  // namespace turbine::efficiency
