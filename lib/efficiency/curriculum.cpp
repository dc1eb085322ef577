// Curriculum schedules, metrics and their config.
#include "efficiency/curriculum.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::efficiency {

namespace {

constexpr const char* kDataEfficiency = "data_efficiency";
constexpr const char* kSampling = "data_efficiency.data_sampling";
constexpr const char* kCurriculum = "data_efficiency.data_sampling.curriculum_learning";

// A metric's settings below `curriculum_metrics.<metric>`, `enabled` aside.
constexpr const char* kMetricSettings[] = {"difficulty_type",
                                           "clustering_type",
                                           "min_difficulty",
                                           "max_difficulty",
                                           "schedule_type",
                                           "schedule_config.total_curriculum_step",
                                           "schedule_config.difficulty_step",
                                           "schedule_config.root_degree",
                                           "schedule_config.difficulty",
                                           "schedule_config.max_step",
                                           "schedule_config.file"};

std::string key(const char* parent, const char* child) {
  return std::string(parent) + "." + child;
}

ScheduleType schedule_type_from_name(const std::string& name) {
  for (ScheduleType t : {ScheduleType::fixed_linear, ScheduleType::fixed_root,
                         ScheduleType::fixed_discrete, ScheduleType::custom}) {
    if (name == schedule_type_name(t)) return t;
  }
  TURBINE_FAIL(
      "unknown curriculum schedule_type '{}': use fixed_linear, fixed_root, "
      "fixed_discrete or custom",
      name);
}

bool is_fixed_formula(ScheduleType t) {
  return t == ScheduleType::fixed_linear || t == ScheduleType::fixed_root;
}

}  // namespace

const char* metric_name(Metric metric) {
  switch (metric) {
    case Metric::seqlen_truncate:
      return "seqlen_truncate";
    case Metric::seqlen_reshape:
      return "seqlen_reshape";
    case Metric::vocabularyrarity:
      return "vocabularyrarity";
  }
  return "?";
}

Metric metric_from_name(const std::string& name) {
  for (Metric m : kAllMetrics) {
    if (name == metric_name(m)) return m;
  }
  TURBINE_FAIL(
      "unknown curriculum metric '{}': use seqlen_truncate, seqlen_reshape or "
      "vocabularyrarity",
      name);
}

const char* schedule_type_name(ScheduleType type) {
  switch (type) {
    case ScheduleType::fixed_linear:
      return "fixed_linear";
    case ScheduleType::fixed_root:
      return "fixed_root";
    case ScheduleType::fixed_discrete:
      return "fixed_discrete";
    case ScheduleType::custom:
      return "custom";
  }
  return "?";
}

std::string metric_key(Metric metric, const std::string& setting) {
  return fmt::format("{}.curriculum_metrics.{}.{}", kCurriculum, metric_name(metric), setting);
}

// ------------------------------------------------------------------------------- schedules

std::optional<ScheduleProblem> schedule_problem(const ScheduleSettings& s) {
  const auto problem = [](std::string key, std::string text) {
    return std::optional<ScheduleProblem>(ScheduleProblem{std::move(key), std::move(text)});
  };
  if (s.min_difficulty < 0) {
    return problem("min_difficulty", fmt::format("is {}: use a value >= 0", s.min_difficulty));
  }
  if (s.min_difficulty > s.max_difficulty) {
    return problem("min_difficulty",
                   fmt::format("{} is above max_difficulty {}: lower it or raise max_difficulty",
                               s.min_difficulty, s.max_difficulty));
  }
  const auto within = [&](int64_t d) { return d >= s.min_difficulty && d <= s.max_difficulty; };
  switch (s.type) {
    case ScheduleType::fixed_root:
      if (!(s.root_degree > 0) || !std::isfinite(s.root_degree)) {
        return problem(
            "schedule_config.root_degree",
            fmt::format("is {}: use a positive degree (2: square root; 1: linear)", s.root_degree));
      }
      [[fallthrough]];
    case ScheduleType::fixed_linear:
      if (s.total_curriculum_step < 1) {
        return problem("schedule_config.total_curriculum_step",
                       fmt::format("is {}: set the steps the difficulty takes from "
                                   "min_difficulty to max_difficulty (>= 1)",
                                   s.total_curriculum_step));
      }
      if (s.difficulty_step < 1) {
        return problem("schedule_config.difficulty_step",
                       fmt::format("is {}: use a value >= 1", s.difficulty_step));
      }
      if (s.min_difficulty % s.difficulty_step != 0) {
        return problem("min_difficulty",
                       fmt::format("{} is not a multiple of schedule_config.difficulty_step {}: "
                                   "DeepSpeed rounds each difficulty down to a multiple of it, "
                                   "so the first steps would get {}, below min_difficulty; use "
                                   "{} or {}",
                                   s.min_difficulty, s.difficulty_step,
                                   s.min_difficulty - s.min_difficulty % s.difficulty_step,
                                   s.min_difficulty - s.min_difficulty % s.difficulty_step,
                                   s.min_difficulty - s.min_difficulty % s.difficulty_step +
                                       s.difficulty_step));
      }
      return std::nullopt;
    case ScheduleType::fixed_discrete: {
      if (s.difficulty.empty()) {
        return problem("schedule_config.difficulty",
                       "is empty: list the difficulties in the order they are used");
      }
      if (s.max_step.size() + 1 != s.difficulty.size()) {
        return problem("schedule_config.max_step",
                       fmt::format("has {} entries for {} difficulties: it needs one fewer than "
                                   "schedule_config.difficulty (the last difficulty holds after "
                                   "the last max_step)",
                                   s.max_step.size(), s.difficulty.size()));
      }
      for (size_t i = 0; i < s.max_step.size(); ++i) {
        if (s.max_step[i] < 1) {
          return problem("schedule_config.max_step",
                         fmt::format("holds {}: steps count from 1", s.max_step[i]));
        }
        if (i > 0 && s.max_step[i] <= s.max_step[i - 1]) {
          return problem("schedule_config.max_step",
                         fmt::format("is not increasing ({} after {}): each difficulty's last "
                                     "step comes after the previous one's",
                                     s.max_step[i], s.max_step[i - 1]));
        }
      }
      for (int64_t d : s.difficulty) {
        if (!within(d)) {
          return problem("schedule_config.difficulty",
                         fmt::format("holds {}, outside [min_difficulty, max_difficulty] = [{}, "
                                     "{}]: fix the value or the bounds",
                                     d, s.min_difficulty, s.max_difficulty));
        }
      }
      return std::nullopt;
    }
    case ScheduleType::custom:
      if (s.table.empty()) {
        return problem("schedule_config.file", "holds no 'step difficulty' lines: add some");
      }
      for (size_t i = 0; i < s.table.size(); ++i) {
        if (i > 0 && s.table[i].step <= s.table[i - 1].step) {
          return problem("schedule_config.file",
                         fmt::format("lists step {} after step {}: list steps in increasing "
                                     "order",
                                     s.table[i].step, s.table[i - 1].step));
        }
        if (!within(s.table[i].difficulty)) {
          return problem("schedule_config.file",
                         fmt::format("gives difficulty {} at step {}, outside [min_difficulty, "
                                     "max_difficulty] = [{}, {}]",
                                     s.table[i].difficulty, s.table[i].step, s.min_difficulty,
                                     s.max_difficulty));
        }
      }
      return std::nullopt;
  }
  return std::nullopt;
}

std::vector<ScheduleRow> read_custom_schedule(const std::string& path, const std::string& key) {
  TURBINE_CHECK(std::filesystem::is_regular_file(path),
                "{}: custom schedule '{}' not found: write a file of 'step difficulty' lines, "
                "or fix the path (relative to the working directory)",
                key, path);
  std::ifstream in(path);
  TURBINE_CHECK(in.is_open(), "{}: cannot read custom schedule '{}'", key, path);
  std::vector<ScheduleRow> rows;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string text = line.substr(0, line.find('#'));
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank or a comment
    std::istringstream fields(text);
    ScheduleRow row;
    std::string extra;
    TURBINE_CHECK((fields >> row.step >> row.difficulty) && !(fields >> extra),
                  "{}:{}: expected 'step difficulty' (two integers), got '{}' ({})", path, number,
                  line, key);
    TURBINE_CHECK(rows.empty() || row.step > rows.back().step,
                  "{}:{}: step {} does not come after the previous line's step {}: list steps "
                  "in increasing order ({})",
                  path, number, row.step, rows.back().step, key);
    rows.push_back(row);
  }
  TURBINE_CHECK(!in.bad(), "{}: reading custom schedule '{}' failed", key, path);
  return rows;
}

CurriculumSchedule::CurriculumSchedule(ScheduleSettings settings) : s_(std::move(settings)) {
  if (const auto p = schedule_problem(s_)) TURBINE_FAIL("curriculum {} {}", p->key, p->text);
  if (s_.type == ScheduleType::fixed_discrete) {
    rows_.push_back({INT64_MIN, s_.difficulty[0]});
    for (size_t i = 0; i < s_.max_step.size(); ++i) {
      rows_.push_back({s_.max_step[i] + 1, s_.difficulty[i + 1]});
    }
  } else if (s_.type == ScheduleType::custom) {
    rows_.push_back({INT64_MIN, s_.min_difficulty});
    rows_.insert(rows_.end(), s_.table.begin(), s_.table.end());
  }
  // DeepSpeed updates the difficulty only while it is below max_difficulty.
  if (s_.min_difficulty >= s_.max_difficulty) {
    latch_step_ = INT64_MIN;
    latch_value_ = s_.min_difficulty;
  }
  for (size_t i = 0; i < rows_.size() && latch_step_ == INT64_MAX; ++i) {
    const int64_t first = std::max<int64_t>(rows_[i].step, 1);
    const int64_t end = i + 1 < rows_.size() ? rows_[i + 1].step : INT64_MAX;
    if (first < end && rows_[i].difficulty >= s_.max_difficulty) {
      latch_step_ = first;
      latch_value_ = rows_[i].difficulty;
    }
  }
}

int64_t CurriculumSchedule::table_lookup(int64_t step) const {
  const auto after = std::upper_bound(rows_.begin(), rows_.end(), step,
                                      [](int64_t s, const ScheduleRow& r) { return s < r.step; });
  return std::prev(after)->difficulty;  // rows_[0] starts at INT64_MIN
}

int64_t CurriculumSchedule::unlatched(int64_t step) const {
  if (!is_fixed_formula(s_.type)) return table_lookup(step);
  // curriculum_scheduler.py's __fixed_root_get_difficulty, operation for operation.
  const double root = s_.type == ScheduleType::fixed_linear ? 1.0 : s_.root_degree;
  const double progress = std::pow(double(step) / double(s_.total_curriculum_step), 1.0 / root);
  const double scaled =
      progress * double(s_.max_difficulty - s_.min_difficulty) + double(s_.min_difficulty);
  // Far past the end the floor would not fit an integer; the result is max_difficulty.
  if (scaled >= double(s_.max_difficulty) + double(s_.difficulty_step)) return s_.max_difficulty;
  int64_t d = static_cast<int64_t>(std::floor(scaled));
  d -= d % s_.difficulty_step;
  return std::min(d, s_.max_difficulty);
}

int64_t CurriculumSchedule::difficulty_at(int64_t step) const {
  if (step < 1) return s_.min_difficulty;
  if (step >= latch_step_) return latch_value_;
  return unlatched(step);
}

int64_t CurriculumSchedule::lowest_difficulty() const {
  // Fixed formulas never decrease; a table changes only where a row starts.
  int64_t lowest = difficulty_at(1);
  for (const ScheduleRow& row : rows_) {
    if (row.step > 1) lowest = std::min(lowest, difficulty_at(row.step));
  }
  return lowest;
}

// ------------------------------------------------------------------------------- config

const MetricConfig* CurriculumConfig::seqlen_metric() const {
  for (const MetricConfig& m : metrics) {
    if (is_seqlen_metric(m.metric)) return &m;
  }
  return nullptr;
}

const MetricConfig* CurriculumConfig::sample_metric() const {
  for (const MetricConfig& m : metrics) {
    if (!is_seqlen_metric(m.metric)) return &m;
  }
  return nullptr;
}

void declare_curriculum_config(io::ConfigSchema& s) {
  if (!s.find(key(kDataEfficiency, "enabled"))) {
    s.boolean(key(kDataEfficiency, "enabled"), false,
              "DeepSpeed Data Efficiency: master switch of data_sampling and data_routing");
  }
  if (!s.find(key(kDataEfficiency, "seed"))) {
    s.integer(key(kDataEfficiency, "seed"), 1234, "seed of data efficiency's random draws")
        .at_least(0);
  }
  s.boolean(key(kSampling, "enabled"), false, "efficient data sampling (curriculum learning)");
  s.ignored(key(kSampling, "num_epochs"),
            "the run's length is train_steps (or train_tokens); windows reshuffle each epoch");
  s.ignored(key(kSampling, "num_workers"), "each rank reads its windows from HDF5 itself");
  s.boolean(key(kCurriculum, "enabled"), false,
            "curriculum learning over the metrics named under curriculum_metrics");
  const std::string index_files =
      "vocabularyrarity reads the difficulty index that tools/analyze-data writes next to the "
      "data set; no cluster or index files are named";
  s.ignored(key(kCurriculum, "data_cluster_path"), index_files);
  for (Metric m : kAllMetrics) {
    const bool seqlen = is_seqlen_metric(m);
    const auto k = [m](const char* setting) { return metric_key(m, setting); };
    s.boolean(k("enabled"), false,
              "use this metric (naming any of its keys turns it on; false turns it off)");
    s.string(k("difficulty_type"), seqlen ? "value" : "percentile",
             seqlen ? "value: the difficulty is a length in tokens"
                    : "value: mean nats per token; percentile: the easiest p% of windows")
        .one_of({std::string("value"), std::string("percentile")});
    s.string(k("clustering_type"), seqlen ? "single_cluster" : "schedule_based",
             seqlen ? "single_cluster: the metric changes samples, it selects none"
                    : "schedule_based: draw only windows at or under the difficulty")
        .one_of({std::string("schedule_based"), std::string("single_cluster")});
    s.integer(k("min_difficulty"), 0, "difficulty at the start (required)").at_least(0);
    s.integer(k("max_difficulty"), 0,
              seqlen ? "final sequence length (required), at most data.seq_len"
                     : "final difficulty (required); with percentile, the 100% mark")
        .at_least(0);
    s.string(k("schedule_type"), "fixed_linear", "how the difficulty grows (required)")
        .one_of({std::string("fixed_linear"), std::string("fixed_root"),
                 std::string("fixed_discrete"), std::string("custom")});
    s.integer(k("schedule_config.total_curriculum_step"), 0,
              "fixed_linear/fixed_root: steps from min_difficulty to max_difficulty")
        .at_least(0);
    s.integer(k("schedule_config.difficulty_step"), 1,
              "fixed_linear/fixed_root: difficulties are multiples of this")
        .at_least(1);
    s.number(k("schedule_config.root_degree"), 0, "fixed_root: 2 is a square root, 1 linear")
        .at_least(0);
    s.integers(k("schedule_config.difficulty"), {}, "fixed_discrete: the difficulties in order")
        .at_least(0);
    s.integers(k("schedule_config.max_step"), {},
               "fixed_discrete: last step of each difficulty but the last")
        .at_least(1);
    s.string(k("schedule_config.file"), "", "custom: a file of 'step difficulty' lines");
    s.ignored(k("index_to_sample_path"), index_files);
    s.ignored(k("index_to_metric_path"), index_files);
  }
}

namespace {

// Whether the config names the metric: its `enabled` if given, else any key of it given.
bool is_named(const io::Config& config, Metric m) {
  if (config.has(metric_key(m, "enabled"))) return config.get<bool>(metric_key(m, "enabled"));
  return std::any_of(std::begin(kMetricSettings), std::end(kMetricSettings),
                     [&](const char* setting) { return config.has(metric_key(m, setting)); });
}

// The key through which the config names the metric (for messages).
std::string named_by(const io::Config& config, Metric m) {
  for (const char* setting : kMetricSettings) {
    if (config.has(metric_key(m, setting))) return metric_key(m, setting);
  }
  return metric_key(m, "enabled");
}

// DeepSpeed requires these keys; a default here would hide a forgotten one.
void require(const io::Config& config, Metric m, const std::string& setting,
             const std::string& why) {
  const std::string k = metric_key(m, setting);
  if (!config.has(k)) config.fail(k, fmt::format("{} is not set: {}", k, why));
}

MetricConfig metric_from(const io::Config& config, Metric m) {
  const auto k = [m](const std::string& setting) { return metric_key(m, setting); };
  const bool seqlen = is_seqlen_metric(m);
  for (const char* setting : {"min_difficulty", "max_difficulty", "schedule_type"}) {
    require(config, m, setting, "an active curriculum metric needs it (as in DeepSpeed)");
  }
  ScheduleSettings s;
  s.type = schedule_type_from_name(config.get<std::string>(k("schedule_type")));
  s.min_difficulty = config.get<int64_t>(k("min_difficulty"));
  s.max_difficulty = config.get<int64_t>(k("max_difficulty"));
  const std::string needs = fmt::format("schedule_type {} needs it", schedule_type_name(s.type));
  if (is_fixed_formula(s.type)) {
    require(config, m, "schedule_config.total_curriculum_step", needs);
    require(config, m, "schedule_config.difficulty_step", needs);
    s.total_curriculum_step = config.get<int64_t>(k("schedule_config.total_curriculum_step"));
    s.difficulty_step = config.get<int64_t>(k("schedule_config.difficulty_step"));
  }
  if (s.type == ScheduleType::fixed_root) {
    require(config, m, "schedule_config.root_degree", needs);
    s.root_degree = config.get<double>(k("schedule_config.root_degree"));
  }
  if (s.type == ScheduleType::fixed_discrete) {
    require(config, m, "schedule_config.difficulty", needs);
    require(config, m, "schedule_config.max_step", needs);
    s.difficulty = config.get<std::vector<int64_t>>(k("schedule_config.difficulty"));
    s.max_step = config.get<std::vector<int64_t>>(k("schedule_config.max_step"));
  }
  if (s.type == ScheduleType::custom) {
    require(config, m, "schedule_config.file", needs);
    const std::string file_key = k("schedule_config.file");
    const std::string path = config.get<std::string>(file_key);
    if (!std::filesystem::is_regular_file(path)) {
      config.fail(file_key, fmt::format("{}: custom schedule '{}' not found: write a file of "
                                        "'step difficulty' lines, or fix the path (relative to "
                                        "the working directory)",
                                        file_key, path));
    }
    s.table = read_custom_schedule(path, file_key);
  }

  const std::string type_key = k("difficulty_type"), cluster_key = k("clustering_type");
  const DifficultyType difficulty_type = config.get<std::string>(type_key) == "percentile"
                                             ? DifficultyType::percentile
                                             : DifficultyType::value;
  const ClusteringType clustering = config.get<std::string>(cluster_key) == "single_cluster"
                                        ? ClusteringType::single_cluster
                                        : ClusteringType::schedule_based;
  if (seqlen && difficulty_type == DifficultyType::percentile) {
    config.fail(type_key, fmt::format("{} is percentile, but {}'s difficulty is a length in "
                                      "tokens: use difficulty_type: value",
                                      type_key, metric_name(m)));
  }
  if (seqlen && clustering == ClusteringType::schedule_based) {
    config.fail(cluster_key,
                fmt::format("{} is schedule_based, but {} changes every sample's length and "
                            "selects none: use clustering_type: single_cluster",
                            cluster_key, metric_name(m)));
  }
  if (!seqlen && clustering == ClusteringType::single_cluster) {
    config.fail(cluster_key, fmt::format("{} is single_cluster, which draws from every window, "
                                         "so {} would change nothing: use schedule_based",
                                         cluster_key, metric_name(m)));
  }
  if (seqlen && s.min_difficulty < 1) {
    config.fail(k("min_difficulty"), fmt::format("{} is {}: a sequence length is at least 1",
                                                 k("min_difficulty"), s.min_difficulty));
  }
  if (seqlen && config.schema().find("data.seq_len")) {
    const auto seq_len = config.get<int64_t>("data.seq_len");
    if (s.max_difficulty > seq_len) {
      config.fail(k("max_difficulty"),
                  fmt::format("{} is {}, above data.seq_len {}: the curriculum cannot make "
                              "samples longer than the windows; use at most {}",
                              k("max_difficulty"), s.max_difficulty, seq_len, seq_len));
    }
  }
  if (const auto p = schedule_problem(s)) {
    config.fail(k(p->key), fmt::format("{} {}", k(p->key), p->text));
  }
  return MetricConfig{m, difficulty_type, clustering, CurriculumSchedule(std::move(s))};
}

}  // namespace

CurriculumConfig curriculum_from(const io::Config& config) {
  CurriculumConfig c;
  c.seed = static_cast<uint64_t>(config.get<int64_t>(key(kDataEfficiency, "seed")));
  std::vector<Metric> named;
  for (Metric m : kAllMetrics) {
    const bool on = is_named(config, m);
    if (on) named.push_back(m);
    c.resolved_overrides.push_back(fmt::format("{}={}", metric_key(m, "enabled"), on));
  }
  std::vector<std::string> off;
  for (const std::string& flag :
       {key(kDataEfficiency, "enabled"), key(kSampling, "enabled"), key(kCurriculum, "enabled")}) {
    if (!config.get<bool>(flag)) off.push_back(flag);
  }
  if (!off.empty()) {
    if (!named.empty() || config.get<bool>(key(kCurriculum, "enabled"))) {
      log::warn(
          "{}: curriculum learning is configured but off, because {} {} false: set {} "
          "true to use it",
          config.origin(), fmt::join(off, " and "), off.size() > 1 ? "are" : "is",
          off.size() > 1 ? "them" : "it");
    }
    return c;
  }
  if (named.empty()) {
    config.fail(key(kCurriculum, "enabled"),
                fmt::format("{}.enabled is true but no metric is named under "
                            "curriculum_metrics: add seqlen_truncate, seqlen_reshape or "
                            "vocabularyrarity",
                            kCurriculum));
  }
  if (std::count_if(named.begin(), named.end(), is_seqlen_metric) > 1) {
    config.fail(named_by(config, Metric::seqlen_reshape),
                "seqlen_truncate and seqlen_reshape both set the sequence length: keep one");
  }
  for (Metric m : named) c.metrics.push_back(metric_from(config, m));
  c.enabled = true;
  return c;
}

}  // namespace turbine::efficiency
