// Curriculum sampling, window reads and the seqlen transforms.
#include "efficiency/curriculum_sampler.hpp"

#include <cmath>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::efficiency {

namespace {

// The Philox stream of curriculum draws ("curric" in ASCII).
constexpr uint64_t kCurriculumStream = 0x637572726963ULL;

CurriculumSampler make_sampler(const CurriculumConfig& config, const data::TokenDataset& dataset,
                               data::WindowLoader& loader) {
  const MetricConfig* metric = config.sample_metric();
  if (!metric) return CurriculumSampler(loader, config.seed);
  return CurriculumSampler(loader, config.seed,
                           DifficultyIndex::open_for(dataset, metric->metric, loader.seq_len()),
                           metric->difficulty_type, metric->schedule.max_difficulty());
}

}  // namespace

CurriculumSampler::CurriculumSampler(data::WindowLoader& loader, uint64_t seed)
    : loader_(loader), seed_(seed) {}

CurriculumSampler::CurriculumSampler(data::WindowLoader& loader, uint64_t seed,
                                     DifficultyIndex index, DifficultyType type,
                                     int64_t max_difficulty)
    : loader_(loader),
      seed_(seed),
      index_(std::move(index)),
      type_(type),
      max_difficulty_(max_difficulty) {
  TURBINE_CHECK(index_->windows() == loader.windows_per_epoch(),
                "the difficulty index has {} windows, the loader {}: they index different data",
                index_->windows(), loader.windows_per_epoch());
}

int64_t CurriculumSampler::eligible_windows(int64_t difficulty) const {
  if (!index_) return windows();
  return type_ == DifficultyType::percentile
             ? index_->count_at_percentile(difficulty, max_difficulty_)
             : index_->count_at_most(double(difficulty));
}

int64_t CurriculumSampler::window_of(int64_t sample, int64_t eligible) {
  TURBINE_CHECK(eligible >= 1 && eligible <= windows(),
                "curriculum: {} eligible windows of {}: no window to draw", eligible, windows());
  TURBINE_CHECK(sample >= 0, "curriculum: negative sample index {}", sample);
  if (!index_ || eligible == windows()) return loader_.window_of(sample);
  const auto r = philox4x32(seed_, kCurriculumStream, uint64_t(sample));
  const uint64_t draw = (uint64_t(r[0]) << 32) | r[1];
  return index_->window_at(int64_t(draw % uint64_t(eligible)));
}

data::Batch read_windows(const data::TokenDataset& dataset, int64_t seq_len,
                         std::span<const int64_t> windows) {
  const int64_t T = seq_len, B = int64_t(windows.size());
  std::vector<int32_t> tokens(size_t(T + 1));
  std::vector<int64_t> ids(size_t(B * T)), targets(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    dataset.read(data::Split::train, windows[size_t(b)] * T, T + 1, tokens.data());
    std::copy(tokens.begin(), tokens.end() - 1, ids.begin() + b * T);
    std::copy(tokens.begin() + 1, tokens.end(), targets.begin() + b * T);
  }
  return {Tensor::from_vector<int64_t>({B, T}, ids), Tensor::from_vector<int64_t>({B, T}, targets)};
}

namespace {

// Rows of `pieces` (row, start) of length d cut from a (B, T) i64 tensor.
Tensor cut(const Tensor& source, const std::vector<std::pair<int64_t, int64_t>>& pieces,
           int64_t d) {
  const Tensor s = source.contiguous();
  const int64_t T = s.dim(1);
  const int64_t* from = s.data<int64_t>();
  std::vector<int64_t> out(pieces.size() * size_t(d));
  for (size_t p = 0; p < pieces.size(); ++p) {
    const int64_t* row = from + pieces[p].first * T + pieces[p].second;
    std::copy(row, row + d, out.begin() + int64_t(p) * d);
  }
  return Tensor::from_vector<int64_t>({int64_t(pieces.size()), d}, out);
}

data::Batch cut_batch(const data::Batch& batch,
                      const std::vector<std::pair<int64_t, int64_t>>& pieces, int64_t d) {
  return {cut(batch.ids, pieces, d), cut(batch.targets, pieces, d)};
}

void check_length(const data::Batch& batch, int64_t d) {
  TURBINE_CHECK(batch.ids.ndim() == 2 && batch.ids.shape() == batch.targets.shape(),
                "curriculum seqlen: ids {} and targets {} must be the same (B, T)", batch.ids.str(),
                batch.targets.str());
  TURBINE_CHECK(d >= 1, "curriculum seqlen: the sequence length must be >= 1, got {}", d);
}

}  // namespace

data::Batch truncate_batch(const data::Batch& batch, int64_t d) {
  check_length(batch, d);
  const int64_t B = batch.ids.dim(0), T = batch.ids.dim(1);
  if (d >= T) return batch;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t b = 0; b < B; ++b) pieces.emplace_back(b, 0);
  return cut_batch(batch, pieces, d);
}

data::Batch reshape_batch(const data::Batch& batch, int64_t d) {
  check_length(batch, d);
  const int64_t B = batch.ids.dim(0), T = batch.ids.dim(1);
  if (d >= T) return batch;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t start = 0; start + d <= T; start += d) pieces.emplace_back(b, start);
    if (T % d != 0) pieces.emplace_back(b, T - d);
  }
  return cut_batch(batch, pieces, d);
}

data::Batch apply_seqlen(Metric metric, const data::Batch& batch, int64_t d) {
  TURBINE_CHECK(is_seqlen_metric(metric), "{} does not set the sequence length",
                metric_name(metric));
  return metric == Metric::seqlen_truncate ? truncate_batch(batch, d) : reshape_batch(batch, d);
}

// ------------------------------------------------------------------------------- loader

CurriculumLoader::CurriculumLoader(const CurriculumConfig& config,
                                   const data::TokenDataset& dataset, data::WindowLoader& loader)
    : config_(config),
      dataset_(dataset),
      seq_len_(loader.seq_len()),
      sampler_(make_sampler(config, dataset, loader)) {
  TURBINE_CHECK(config.enabled, "CurriculumLoader: curriculum learning is not enabled");
  if (const MetricConfig* m = config.sample_metric()) {
    const int64_t lowest = m->schedule.lowest_difficulty();
    const DifficultyIndex& index = *sampler_.index();
    TURBINE_CHECK(sampler_.eligible_windows(lowest) > 0,
                  "{}: the schedule starts at difficulty {}, which selects no training window "
                  "({}): raise min_difficulty",
                  metric_key(m->metric, "min_difficulty"), lowest,
                  m->difficulty_type == DifficultyType::value
                      ? fmt::format("the easiest of {} has {} {:.3f}", index.windows(),
                                    metric_name(m->metric), index.min_value())
                      : fmt::format("{} of {} percent of {} windows is none", lowest,
                                    m->schedule.max_difficulty(), index.windows()));
  }
  if (const MetricConfig* m = config.seqlen_metric()) {
    TURBINE_CHECK(m->schedule.max_difficulty() <= seq_len_,
                  "{} is {}, above the windows' seq_len {}: use at most {}",
                  metric_key(m->metric, "max_difficulty"), m->schedule.max_difficulty(), seq_len_,
                  seq_len_);
  }
}

CurriculumStep CurriculumLoader::at(int64_t step) const {
  CurriculumStep now;
  now.step = step;
  now.eligible_windows = sampler_.windows();
  now.seq_len = seq_len_;
  if (const MetricConfig* m = config_.sample_metric()) {
    now.sample_difficulty = m->schedule.difficulty_at(step);
    now.eligible_windows = sampler_.eligible_windows(now.sample_difficulty);
    TURBINE_CHECK(now.eligible_windows > 0,
                  "curriculum step {}: {} difficulty {} selects no training window: raise "
                  "the schedule's difficulties",
                  step, metric_name(m->metric), now.sample_difficulty);
  }
  if (const MetricConfig* m = config_.seqlen_metric()) {
    now.seq_len = std::min(seq_len_, m->schedule.difficulty_at(step));
  }
  return now;
}

data::Batch CurriculumLoader::read(int64_t first, int64_t count, const CurriculumStep& now) {
  std::vector<int64_t> windows(static_cast<size_t>(count));
  for (int64_t b = 0; b < count; ++b) {
    windows[size_t(b)] = sampler_.window_of(first + b, now.eligible_windows);
  }
  data::Batch batch = read_windows(dataset_, seq_len_, windows);
  if (const MetricConfig* m = config_.seqlen_metric()) {
    batch = apply_seqlen(m->metric, batch, now.seq_len);
  }
  return batch;
}

std::string CurriculumLoader::describe(const CurriculumStep& now) const {
  std::vector<std::string> parts;
  if (const MetricConfig* m = config_.sample_metric()) {
    const DifficultyIndex& index = *sampler_.index();
    const double hardest = double(index.sorted_value(now.eligible_windows - 1));
    parts.push_back(fmt::format("{} {}{} ({} of {} windows, <= {:.3f})", metric_name(m->metric),
                                now.sample_difficulty,
                                m->difficulty_type == DifficultyType::percentile
                                    ? fmt::format(" of {} percent", m->schedule.max_difficulty())
                                    : std::string(),
                                now.eligible_windows, index.windows(), hardest));
  }
  if (const MetricConfig* m = config_.seqlen_metric()) {
    parts.push_back(fmt::format("{} {}", metric_name(m->metric), now.seq_len));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace turbine::efficiency
