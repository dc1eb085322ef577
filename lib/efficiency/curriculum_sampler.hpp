// Training data under a curriculum: which window each global sample reads
// (only windows at or under the scheduled difficulty), and the scheduled
// sequence length applied to a batch.
//
// The draw. Global sample i at a step where the `n` easiest windows are
// eligible reads window index.window_at(k), k = philox4x32(seed, stream, i)
// mod n: a uniform draw among the eligible windows, with replacement, that is
// a pure function of (seed, i, n). So every rank computes the same window for
// the same sample, any world size reads the same samples, and a resumed run
// continues exactly from the global sample counter alone (n follows from the
// step, which follows from the counter). A seeded permutation of the eligible
// set would avoid repeats, but the set grows every few steps and a
// permutation of a growing set is not a pure function of the counter. When
// every window is eligible (no sample metric, or the schedule has reached
// them all), the sample reads data::WindowLoader::window_of(i): the
// baseline's epoch permutation, so a seqlen-only curriculum trains on exactly
// the baseline's windows.
//
// In the pretrain loop (curriculum on):
//   efficiency::CurriculumLoader curriculum(o.curriculum, dataset, train_loader);
//   ... each step:
//   const efficiency::CurriculumStep now = curriculum.at(state.step + 1);  // DeepSpeed's step
//   data::Batch batch = curriculum.read(rank_first + m * micro, micro, now);
//   state.tokens += (tokens actually trained: batch.ids.numel() summed over ranks)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "data/loader.hpp"
#include "efficiency/curriculum.hpp"
#include "efficiency/difficulty_index.hpp"

namespace turbine::efficiency {

class CurriculumSampler {
 public:
  // Every window always eligible: samples follow `loader`.
  CurriculumSampler(data::WindowLoader& loader, uint64_t seed);
  // Windows at or under a difficulty of `index`'s metric, by value or by
  // percentile of `max_difficulty` (DifficultyIndex::count_at_percentile).
  CurriculumSampler(data::WindowLoader& loader, uint64_t seed, DifficultyIndex index,
                    DifficultyType type, int64_t max_difficulty);

  // How many windows are at or under `difficulty`.
  int64_t eligible_windows(int64_t difficulty) const;
  // The window global sample `sample` reads when the `eligible` easiest
  // windows may be drawn (1 <= eligible <= windows()).
  int64_t window_of(int64_t sample, int64_t eligible);
  int64_t windows() const { return loader_.windows_per_epoch(); }
  const DifficultyIndex* index() const { return index_ ? &*index_ : nullptr; }

 private:
  data::WindowLoader& loader_;
  uint64_t seed_;
  std::optional<DifficultyIndex> index_;
  DifficultyType type_ = DifficultyType::value;
  int64_t max_difficulty_ = 0;
};

// Reads the given training windows as a batch: ids (B, T) and targets (B, T).
data::Batch read_windows(const data::TokenDataset& dataset, int64_t seq_len,
                         std::span<const int64_t> windows);

// seqlen_truncate: (B, T) -> (B, d), the first d positions of each sample
// (Megatron-DeepSpeed keeps text[:, :d + 1], the same inputs and targets).
// d >= T leaves the batch as it is.
data::Batch truncate_batch(const data::Batch& batch, int64_t d);
// seqlen_reshape: (B, T) -> (B x ceil(T / d), d), each sample cut into
// consecutive pieces of d positions (ids and targets alike, so every piece
// predicts each of its d next tokens). When d does not divide T, each
// sample's last piece is its final d positions, overlapping the piece before
// it: every position is trained, a piece never mixes two samples, and the
// overlapped positions count twice in the mean loss. (Megatron-DeepSpeed also
// appends each sample's last piece, then drops rows to keep about the same
// token count and an even row count; here every row stays.) d >= T leaves the
// batch as it is.
data::Batch reshape_batch(const data::Batch& batch, int64_t d);
// The metric's transform: truncate_batch or reshape_batch.
data::Batch apply_seqlen(Metric metric, const data::Batch& batch, int64_t d);

// Where a step of the curriculum stands.
struct CurriculumStep {
  int64_t step = 0;                // DeepSpeed's curriculum step (1: the first batch)
  int64_t sample_difficulty = -1;  // the sample metric's difficulty; -1 without one
  int64_t eligible_windows = 0;    // windows drawn from
  int64_t seq_len = 0;             // positions per sequence the model sees
};

// The curriculum's stand-in for data::WindowLoader in a training loop:
// schedules, sampler and seqlen transform together.
class CurriculumLoader {
 public:
  // Loads the sample metric's index beside the data set (checked against it
  // and loader.seq_len()), and checks that the schedule's easiest difficulty
  // selects at least one window. `loader` (the training windows) must outlive
  // this object.
  CurriculumLoader(const CurriculumConfig& config, const data::TokenDataset& dataset,
                   data::WindowLoader& loader);
  CurriculumStep at(int64_t step) const;
  // Samples [first, first + count) at `now`: drawn windows, then the seqlen transform.
  data::Batch read(int64_t first, int64_t count, const CurriculumStep& now);
  // "vocabularyrarity 23 (1840 of 8000 windows, <= 7.41), seqlen_truncate 64": for logs.
  std::string describe(const CurriculumStep& now) const;

 private:
  CurriculumConfig config_;
  const data::TokenDataset& dataset_;
  int64_t seq_len_;
  CurriculumSampler sampler_;
};

}  // namespace turbine::efficiency
