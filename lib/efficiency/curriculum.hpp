// Curriculum learning (DeepSpeed Data Efficiency, arXiv 2212.03597): the
// difficulty schedules, the metrics, and the config tree under
// `data_efficiency.data_sampling.curriculum_learning`, with DeepSpeed's key
// names.
//
// Steps are DeepSpeed's curriculum steps: the first batch of a run is step 1
// (DeepSpeed's sampler increments its counter before it asks the schedule),
// so the pretrain loop asks for step `state.step + 1`. Before step 1 the
// difficulty is min_difficulty (DeepSpeed's initial "current difficulty").
//
// Schedules, as deepspeed/runtime/data_pipeline/curriculum_scheduler.py:
//   fixed_linear   fixed_root with root_degree 1
//   fixed_root     d = floor((step / total_curriculum_step)^(1 / root_degree)
//                            x (max_difficulty - min_difficulty) + min_difficulty)
//                  d -= d mod difficulty_step      (down to a multiple, in absolute terms)
//                  d = min(d, max_difficulty)
//   fixed_discrete difficulty[i] while step <= max_step[i]; difficulty.back() after
//                  max_step.back() (max_step has one entry fewer than difficulty)
//   custom         a table of "step difficulty" lines in a file: piecewise
//                  constant, each line's difficulty from its step on (DeepSpeed
//                  calls a Python function here; a file is what a job can read)
// DeepSpeed stops updating the difficulty once it has reached max_difficulty
// (CurriculumScheduler.update_difficulty); a non-monotone fixed_discrete or
// custom table therefore stays at the first value >= max_difficulty from the
// step it is reached. difficulty_at() reproduces that as a pure function of
// the step, so a resumed run needs no schedule state.
//
// Two DeepSpeed behaviours are made errors instead: min_difficulty above
// max_difficulty, and (for fixed_linear/fixed_root) a min_difficulty that is
// not a multiple of difficulty_step, which DeepSpeed's rounding would turn
// into a difficulty below min_difficulty (0 for min 5, step 8) at the start.
//
// Metrics:
//   seqlen_truncate   difficulty = a sequence length d: train on the first d
//                     positions of each sample
//   seqlen_reshape    difficulty = d: cut each sample into pieces of d
//                     (curriculum_sampler.hpp says what happens when d does
//                     not divide seq_len)
//   vocabularyrarity  a window's difficulty = the mean over its seq_len + 1
//                     tokens of -log p(token), p the token's unigram frequency
//                     in the training split; computed offline by
//                     tools/analyze-data into an index (difficulty_index.hpp).
// The seqlen metrics change every sample's length and select none
// (clustering_type single_cluster, difficulty_type value); vocabularyrarity
// selects the windows at or under the difficulty (schedule_based), by value
// (mean nats per token) or, as DeepSpeed's GPT recipe does, by percentile
// (max_difficulty is 100%).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/config.hpp"

namespace turbine::efficiency {

enum class Metric { seqlen_truncate, seqlen_reshape, vocabularyrarity };
inline constexpr Metric kAllMetrics[] = {Metric::seqlen_truncate, Metric::seqlen_reshape,
                                         Metric::vocabularyrarity};
const char* metric_name(Metric metric);  // DeepSpeed's name: "vocabularyrarity"
// The metric of that name; throws, naming the known ones, for any other.
Metric metric_from_name(const std::string& name);
// seqlen_truncate and seqlen_reshape: the difficulty is a sequence length.
inline bool is_seqlen_metric(Metric m) {
  return m != Metric::vocabularyrarity;
}

enum class DifficultyType { value, percentile };
enum class ClusteringType { schedule_based, single_cluster };
enum class ScheduleType { fixed_linear, fixed_root, fixed_discrete, custom };
const char* schedule_type_name(ScheduleType type);

// One line of a custom schedule: `difficulty` from `step` on.
struct ScheduleRow {
  int64_t step = 0;
  int64_t difficulty = 0;
};

// A schedule's parameters as DeepSpeed's config holds them; only those of its
// type are read.
struct ScheduleSettings {
  ScheduleType type = ScheduleType::fixed_linear;
  int64_t min_difficulty = 0, max_difficulty = 0;
  int64_t total_curriculum_step = 0;          // fixed_linear, fixed_root
  int64_t difficulty_step = 1;                // fixed_linear, fixed_root
  double root_degree = 1;                     // fixed_root
  std::vector<int64_t> difficulty, max_step;  // fixed_discrete
  std::vector<ScheduleRow> table;             // custom, steps increasing
};

// What is wrong with settings: the key it concerns, relative to the metric
// ("schedule_config.max_step"), and a text that follows the key's name.
struct ScheduleProblem {
  std::string key;
  std::string text;
};
std::optional<ScheduleProblem> schedule_problem(const ScheduleSettings& settings);

// Reads a custom schedule: one "step difficulty" pair of integers a line,
// steps strictly increasing; blank lines and '#' comments are skipped. `key`
// names the config key in messages.
std::vector<ScheduleRow> read_custom_schedule(const std::string& path, const std::string& key);

class CurriculumSchedule {
 public:
  // Throws when schedule_problem() finds one.
  explicit CurriculumSchedule(ScheduleSettings settings);

  // The difficulty at DeepSpeed's curriculum step `step` (1 for the first batch).
  int64_t difficulty_at(int64_t step) const;
  // The smallest difficulty of any step >= 1: what the sampler must be able to serve.
  int64_t lowest_difficulty() const;

  const ScheduleSettings& settings() const { return s_; }
  ScheduleType type() const { return s_.type; }
  int64_t min_difficulty() const { return s_.min_difficulty; }
  int64_t max_difficulty() const { return s_.max_difficulty; }

 private:
  int64_t unlatched(int64_t step) const;
  int64_t table_lookup(int64_t step) const;

  ScheduleSettings s_;
  std::vector<ScheduleRow> rows_;   // fixed_discrete and custom, from step INT64_MIN
  int64_t latch_step_ = INT64_MAX;  // from here on the difficulty stays latch_value_
  int64_t latch_value_ = 0;
};

struct MetricConfig {
  Metric metric;
  DifficultyType difficulty_type;
  ClusteringType clustering_type;
  CurriculumSchedule schedule;
};

struct CurriculumConfig {
  // data_efficiency.enabled, data_sampling.enabled and curriculum_learning.enabled
  // all true, and at least one metric named.
  bool enabled = false;
  uint64_t seed = 1234;               // data_efficiency.seed
  std::vector<MetricConfig> metrics;  // the active metrics, in kAllMetrics order
  // "--set"-style "key=value" lines that make a resolved config (Config::to_yaml
  // writes every key) name the same metrics: each metric's `enabled`, set to
  // whether the config named it. Pass them with the job's own derived values.
  std::vector<std::string> resolved_overrides;

  // The active seqlen_truncate or seqlen_reshape metric, or nullptr.
  const MetricConfig* seqlen_metric() const;
  // The active metric that selects windows (vocabularyrarity), or nullptr.
  const MetricConfig* sample_metric() const;
};

// Declares DeepSpeed's tree: data_efficiency.{enabled, seed} (unless declared
// already, e.g. by random-LTD's declarations), data_sampling.enabled,
// curriculum_learning.enabled, and for each metric of kAllMetrics
// `...curriculum_metrics.<metric>.{enabled, difficulty_type, clustering_type,
// min_difficulty, max_difficulty, schedule_type, schedule_config.{
// total_curriculum_step, difficulty_step, root_degree, difficulty, max_step, file}}`.
// A metric is active when the config names it (gives any of its keys) and does
// not say `enabled: false`, or says `enabled: true`.
void declare_curriculum_config(io::ConfigSchema& schema);

// The parsed, validated settings. Errors name the key and its line: an
// active metric without min_difficulty, max_difficulty or schedule_type (as
// DeepSpeed requires), or without its schedule type's schedule_config keys;
// min above max; list lengths; a missing custom file; combinations that make
// no sense (a seqlen metric by percentile or schedule_based; both seqlen
// metrics; vocabularyrarity with single_cluster; a seqlen above data.seq_len
// when the schema has data.seq_len). A disabled curriculum is not checked.
CurriculumConfig curriculum_from(const io::Config& config);

// The dotted key of a metric's setting: metric_key(vocabularyrarity,
// "min_difficulty") = "data_efficiency.data_sampling.curriculum_learning.
// curriculum_metrics.vocabularyrarity.min_difficulty".
std::string metric_key(Metric metric, const std::string& setting);

}  // namespace turbine::efficiency
