// Curriculum learning: each schedule against its formula and against numbers
// from DeepSpeed's own scheduler; config errors with their key; the
// vocabularyrarity metric against a direct computation; the difficulty index
// round trip and its refusal of stale data; the sampler's eligibility,
// determinism and exact resumption; the seqlen transforms.
#define BOOST_TEST_MODULE curriculum
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "core/error.hpp"
#include "data/loader.hpp"
#include "data/token_dataset.hpp"
#include "dist/communicator.hpp"
#include "efficiency/curriculum.hpp"
#include "efficiency/curriculum_sampler.hpp"
#include "efficiency/data_analyzer.hpp"
#include "efficiency/difficulty_index.hpp"
#include "io/config.hpp"

#include "test_util.hpp"

using namespace turbine;
using testing::contains;
using testing::error_of;
using testing::TempDir;
using namespace turbine::efficiency;
namespace fs = std::filesystem;

namespace {

struct MpiFixture {
  int argc = boost::unit_test::framework::master_test_suite().argc;
  char** argv = boost::unit_test::framework::master_test_suite().argv;
  dist::MpiSession session{&argc, &argv};
};


// ------------------------------------------------------------------ schedules

// The fixed_root formula as the issue states it, in doubles.
int64_t root_formula(int64_t step, int64_t total, double root, int64_t min, int64_t max,
                     int64_t difficulty_step) {
  const double x = std::pow(double(step) / double(total), 1.0 / root);
  int64_t d = int64_t(std::floor(x * double(max - min) + double(min)));
  d -= d % difficulty_step;
  return std::min(d, max);
}

ScheduleSettings fixed(ScheduleType type, int64_t min, int64_t max, int64_t total,
                       int64_t difficulty_step, double root = 1) {
  ScheduleSettings s;
  s.type = type;
  s.min_difficulty = min;
  s.max_difficulty = max;
  s.total_curriculum_step = total;
  s.difficulty_step = difficulty_step;
  s.root_degree = root;
  return s;
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

BOOST_AUTO_TEST_CASE(fixed_linear_is_the_formula_and_deepspeeds_numbers) {
  const CurriculumSchedule linear(fixed(ScheduleType::fixed_linear, 8, 128, 100, 8));
  for (int64_t step : {1, 2, 3, 7, 13, 50, 77, 99, 100, 101, 1000}) {
    BOOST_TEST(linear.difficulty_at(step) == root_formula(step, 100, 1, 8, 128, 8));
  }
  // From a transcription of DeepSpeed's CurriculumScheduler, stepped 1, 2, ...
  const std::map<int64_t, int64_t> deepspeed = {{1, 8},    {2, 8},     {7, 16},    {50, 64},
                                                {99, 120}, {100, 128}, {101, 128}, {150, 128}};
  for (const auto& [step, d] : deepspeed) BOOST_TEST(linear.difficulty_at(step) == d);
  // Megatron-DeepSpeed's GPT-3 seqlen recipe: 80 -> 2048 over 110000 steps in 8s.
  const CurriculumSchedule gpt(fixed(ScheduleType::fixed_linear, 80, 2048, 110000, 8));
  const std::map<int64_t, int64_t> gpt_deepspeed = {{1, 80},       {1000, 96},     {36667, 736},
                                                    {55000, 1064}, {109999, 2040}, {110000, 2048},
                                                    {200000, 2048}};
  for (const auto& [step, d] : gpt_deepspeed) BOOST_TEST(gpt.difficulty_at(step) == d);
  // Before the first step: min_difficulty, DeepSpeed's initial difficulty.
  BOOST_TEST(linear.difficulty_at(0) == 8);
  BOOST_TEST(linear.lowest_difficulty() == 8);
}

BOOST_AUTO_TEST_CASE(fixed_root_is_the_formula_and_deepspeeds_numbers) {
  // DeepSpeed's GPT-3 vocabularyrarity recipe: percentiles 1 -> 100, square root.
  const CurriculumSchedule voc(fixed(ScheduleType::fixed_root, 1, 100, 110000, 1, 2));
  const std::map<int64_t, int64_t> deepspeed = {{1, 1},       {10, 1},       {100, 3},
                                                {1000, 10},   {27500, 50},   {55000, 71},
                                                {109999, 99}, {110000, 100}, {110001, 100}};
  for (const auto& [step, d] : deepspeed) BOOST_TEST(voc.difficulty_at(step) == d);
  const CurriculumSchedule cube(fixed(ScheduleType::fixed_root, 64, 1000, 777, 16, 3));
  const std::map<int64_t, int64_t> cube_deepspeed = {{1, 160},   {2, 192},    {3, 208},
                                                     {50, 432},  {400, 800},  {776, 992},
                                                     {777, 992}, {800, 1000}, {900, 1000}};
  for (const auto& [step, d] : cube_deepspeed) {
    BOOST_TEST(cube.difficulty_at(step) == d);
    BOOST_TEST(cube.difficulty_at(step) == root_formula(step, 777, 3, 64, 1000, 16));
  }
  // Never decreasing, so the lowest difficulty is step 1's.
  for (int64_t step = 1; step < 1000; ++step) {
    BOOST_TEST(cube.difficulty_at(step + 1) >= cube.difficulty_at(step));
  }
  BOOST_TEST(cube.lowest_difficulty() == 160);
}

BOOST_AUTO_TEST_CASE(a_max_that_is_not_a_multiple_of_the_step_is_reached_late) {
  // DeepSpeed rounds before it caps: at total_curriculum_step the difficulty is
  // 96 (100 rounded down to 8s) and max_difficulty 100 comes one step later.
  const CurriculumSchedule s(fixed(ScheduleType::fixed_linear, 0, 100, 10, 8));
  const std::map<int64_t, int64_t> deepspeed = {{1, 8},    {9, 88},   {10, 96},
                                                {11, 100}, {12, 100}, {20, 100}};
  for (const auto& [step, d] : deepspeed) BOOST_TEST(s.difficulty_at(step) == d);
}

BOOST_AUTO_TEST_CASE(fixed_discrete_follows_max_step_and_stops_at_max) {
  ScheduleSettings s;
  s.type = ScheduleType::fixed_discrete;
  s.min_difficulty = 1;
  s.max_difficulty = 3;
  s.difficulty = {1, 2, 3};
  s.max_step = {5, 10};
  const CurriculumSchedule discrete(s);
  const std::map<int64_t, int64_t> deepspeed = {{1, 1},  {5, 1},  {6, 2},
                                                {10, 2}, {11, 3}, {1000, 3}};
  for (const auto& [step, d] : deepspeed) BOOST_TEST(discrete.difficulty_at(step) == d);
  // DeepSpeed stops updating once max_difficulty is reached: [2, 5, 3] stays at 5.
  s.max_difficulty = 5;
  s.difficulty = {2, 5, 3};
  const CurriculumSchedule latched(s);
  const std::map<int64_t, int64_t> latched_deepspeed = {{1, 2},  {5, 2},  {6, 5},
                                                        {10, 5}, {11, 5}, {1000, 5}};
  for (const auto& [step, d] : latched_deepspeed) BOOST_TEST(latched.difficulty_at(step) == d);
  BOOST_TEST(latched.lowest_difficulty() == 2);
}

BOOST_AUTO_TEST_CASE(custom_schedule_is_piecewise_constant_from_a_file) {
  TempDir dir("curriculum");
  const std::string path = dir.file("schedule.txt");
  std::ofstream(path) << "# step difficulty\n10 16\n\n100 32   # halfway\n200 24\n300 64\n";
  ScheduleSettings s;
  s.type = ScheduleType::custom;
  s.min_difficulty = 8;
  s.max_difficulty = 64;
  s.table = read_custom_schedule(path, "file");
  BOOST_TEST(s.table.size() == 4u);
  const CurriculumSchedule custom(s);
  const std::map<int64_t, int64_t> expected = {
      {1, 8}, {9, 8}, {10, 16}, {99, 16}, {100, 32}, {199, 32}, {200, 24}, {300, 64}, {5000, 64}};
  for (const auto& [step, d] : expected) BOOST_TEST(custom.difficulty_at(step) == d);
  BOOST_TEST(custom.lowest_difficulty() == 8);

  std::ofstream(dir.file("bad.txt")) << "1 8\nten 16\n";
  const std::string bad = error_of([&] { read_custom_schedule(dir.file("bad.txt"), "KEY"); });
  BOOST_TEST(contains(bad, "bad.txt:2: expected 'step difficulty'"), bad);
  BOOST_TEST(contains(bad, "KEY"), bad);
  std::ofstream(dir.file("order.txt")) << "10 8\n5 16\n";
  const std::string order = error_of([&] { read_custom_schedule(dir.file("order.txt"), "KEY"); });
  BOOST_TEST(contains(order, "order.txt:2: step 5 does not come after"), order);
}

BOOST_AUTO_TEST_CASE(bad_schedule_settings_name_their_key) {
  const auto problem = [](const ScheduleSettings& s) {
    const auto p = schedule_problem(s);
    return p ? p->key + " " + p->text : std::string("(none)");
  };
  BOOST_TEST(contains(problem(fixed(ScheduleType::fixed_linear, 200, 100, 10, 1)),
                      "min_difficulty 200 is above max_difficulty 100"));
  BOOST_TEST(contains(problem(fixed(ScheduleType::fixed_linear, 5, 100, 10, 8)),
                      "min_difficulty 5 is not a multiple of schedule_config.difficulty_step 8"));
  BOOST_TEST(contains(problem(fixed(ScheduleType::fixed_linear, 8, 100, 0, 8)),
                      "schedule_config.total_curriculum_step is 0"));
  BOOST_TEST(contains(problem(fixed(ScheduleType::fixed_root, 8, 100, 10, 8, 0)),
                      "schedule_config.root_degree is 0"));
  ScheduleSettings d;
  d.type = ScheduleType::fixed_discrete;
  d.min_difficulty = 1;
  d.max_difficulty = 3;
  d.difficulty = {1, 2, 3};
  d.max_step = {5};
  BOOST_TEST(contains(problem(d), "schedule_config.max_step has 1 entries for 3 difficulties"));
  d.max_step = {5, 5};
  BOOST_TEST(contains(problem(d), "schedule_config.max_step is not increasing (5 after 5)"));
  d.max_step = {5, 10};
  d.difficulty = {1, 2, 4};
  BOOST_TEST(contains(problem(d), "schedule_config.difficulty holds 4, outside"));
  BOOST_CHECK_THROW(CurriculumSchedule(fixed(ScheduleType::fixed_linear, 9, 8, 10, 1)), Error);
}

// ------------------------------------------------------------------ config

namespace {

io::ConfigSchema schema() {
  io::ConfigSchema s;
  s.integer("data.seq_len", 64, "tokens per training sequence").at_least(1);
  declare_curriculum_config(s);
  return s;
}

const char* kConfig = R"(data:
  seq_len: 64
data_efficiency:
  enabled: true
  seed: 7
  data_sampling:
    enabled: true
    curriculum_learning:
      enabled: true
      curriculum_metrics:
        seqlen_truncate:
          min_difficulty: 8
          max_difficulty: 64
          schedule_type: fixed_linear
          schedule_config:
            total_curriculum_step: 100
            difficulty_step: 8
        vocabularyrarity:
          difficulty_type: percentile
          clustering_type: schedule_based
          min_difficulty: 1
          max_difficulty: 100
          schedule_type: fixed_root
          schedule_config:
            total_curriculum_step: 110000
            difficulty_step: 1
            root_degree: 2
)";

const std::string kMetrics =
    "data_efficiency.data_sampling.curriculum_learning.curriculum_metrics.";
const std::string kTruncate = kMetrics + "seqlen_truncate.";
const std::string kReshape = kMetrics + "seqlen_reshape.";
const std::string kRarity = kMetrics + "vocabularyrarity.";

CurriculumConfig parse(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  return curriculum_from(io::Config::from_string(yaml, "cl.yaml", schema(), sets));
}

std::string parse_error(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  return error_of([&] { parse(yaml, sets); });
}

}  // namespace

BOOST_AUTO_TEST_CASE(config_reads_deepspeeds_tree) {
  const CurriculumConfig c = parse(kConfig);
  BOOST_TEST(c.enabled);
  BOOST_TEST(c.seed == 7u);
  BOOST_TEST(c.metrics.size() == 2u);
  BOOST_REQUIRE(c.seqlen_metric() && c.sample_metric());
  BOOST_TEST((c.seqlen_metric()->metric == Metric::seqlen_truncate));
  BOOST_TEST((c.seqlen_metric()->difficulty_type == DifficultyType::value));
  BOOST_TEST((c.seqlen_metric()->clustering_type == ClusteringType::single_cluster));
  BOOST_TEST(c.seqlen_metric()->schedule.difficulty_at(50) == 32);
  BOOST_TEST((c.sample_metric()->difficulty_type == DifficultyType::percentile));
  BOOST_TEST((c.sample_metric()->schedule.type() == ScheduleType::fixed_root));
  BOOST_TEST(c.sample_metric()->schedule.difficulty_at(27500) == 50);

  // The resolved config (every key written out) names the same metrics.
  const io::Config config = io::Config::from_string(kConfig, "cl.yaml", schema());
  const CurriculumConfig again = curriculum_from(
      io::Config::from_string(config.to_yaml(), "resolved.yaml", schema(), c.resolved_overrides));
  BOOST_TEST(again.metrics.size() == 2u);
  BOOST_TEST(!again.metrics.empty());
  BOOST_TEST(again.seqlen_metric()->schedule.difficulty_at(50) == 32);

  // enabled: false turns a named metric off; any master switch off turns all off.
  const CurriculumConfig no_rarity = parse(kConfig, {kRarity + "enabled=false"});
  BOOST_TEST(no_rarity.metrics.size() == 1u);
  BOOST_TEST(!no_rarity.sample_metric());
  const CurriculumConfig off = parse(kConfig, {"data_efficiency.enabled=false"});
  BOOST_TEST(!off.enabled);
  BOOST_TEST(off.metrics.empty());
  // Nothing configured: off, and the defaults pass.
  BOOST_TEST(!parse("{}").enabled);
}

BOOST_AUTO_TEST_CASE(config_errors_name_the_key) {
  // An unknown metric: the config layer's did-you-mean.
  std::string yaml = kConfig;
  yaml.replace(yaml.find("vocabularyrarity:"), 17, "vocabulary_rarity:");
  const std::string unknown = parse_error(yaml);
  BOOST_TEST(contains(unknown,
                      "unknown key data_efficiency.data_sampling.curriculum_learning."
                      "curriculum_metrics.vocabulary_rarity: did you mean "
                      "vocabularyrarity?"),
             unknown);
  const std::string above = parse_error(kConfig, {kTruncate + "min_difficulty=128"});
  BOOST_TEST(contains(above, kTruncate + "min_difficulty 128 is above max_difficulty 64"), above);
  BOOST_TEST(contains(above, "--set"), above);

  const std::string discrete = kTruncate + "schedule_type=fixed_discrete";
  const std::string lengths =
      parse_error(kConfig, {discrete, kTruncate + "schedule_config.difficulty=[8,16,32]",
                            kTruncate + "schedule_config.max_step=[10,20,30]"});
  BOOST_TEST(contains(lengths, kTruncate + "schedule_config.max_step has 3 entries for 3"),
             lengths);
  const std::string order =
      parse_error(kConfig, {discrete, kTruncate + "schedule_config.difficulty=[8,16,32]",
                            kTruncate + "schedule_config.max_step=[20,10]"});
  BOOST_TEST(contains(order, "max_step is not increasing (10 after 20)"), order);
  const std::string no_max_step =
      parse_error(kConfig, {discrete, kTruncate + "schedule_config.difficulty=[8,16,32]"});
  BOOST_TEST(contains(no_max_step, kTruncate + "schedule_config.max_step is not set: "
                                               "schedule_type fixed_discrete needs it"),
             no_max_step);

  const std::string missing = parse_error(
      kConfig, {kTruncate + "schedule_type=custom", kTruncate + "schedule_config.file=nope.txt"});
  BOOST_TEST(contains(missing, kTruncate + "schedule_config.file: custom schedule 'nope.txt' "
                                           "not found"),
             missing);

  const std::string root = parse_error(kConfig, {kTruncate + "schedule_type=fixed_root"});
  BOOST_TEST(contains(root, kTruncate + "schedule_config.root_degree is not set"), root);

  // Combinations that make no sense.
  const std::string percentile = parse_error(kConfig, {kTruncate + "difficulty_type=percentile"});
  BOOST_TEST(contains(percentile, "a length in tokens: use difficulty_type: value"), percentile);
  const std::string cluster = parse_error(kConfig, {kRarity + "clustering_type=single_cluster"});
  BOOST_TEST(contains(cluster, "vocabularyrarity would change nothing"), cluster);
  const std::string long_seq = parse_error(kConfig, {"data.seq_len=32"});
  BOOST_TEST(contains(long_seq, kTruncate + "max_difficulty is 64, above data.seq_len 32"),
             long_seq);
  const std::string both = parse_error(kConfig, {kReshape + "max_difficulty=64"});
  BOOST_TEST(contains(both, "seqlen_truncate and seqlen_reshape both set the sequence length"),
             both);
  const std::string none =
      parse_error(kConfig, {kTruncate + "enabled=false", kRarity + "enabled=false"});
  BOOST_TEST(contains(none, "no metric is named under curriculum_metrics"), none);
  const std::string required = parse_error(
      "data_efficiency: {enabled: true, data_sampling: {enabled: true, "
      "curriculum_learning: {enabled: true, curriculum_metrics: {seqlen_truncate: "
      "{max_difficulty: 64}}}}}");
  BOOST_TEST(contains(required, kTruncate + "min_difficulty is not set"), required);
}

// ------------------------------------------------------------------ metric and index

namespace {

constexpr int64_t kVocab = 40;

// Documents whose token frequencies differ a lot (a Zipf-like draw), so that
// windows differ in rarity; about a tenth go to the valid split.
std::vector<std::vector<int32_t>> write_dataset(const std::string& path, uint32_t seed,
                                                int documents) {
  std::mt19937 rng(seed);
  std::vector<double> weights;
  for (int64_t v = 0; v < kVocab; ++v) weights.push_back(1.0 / double(v + 1));
  std::discrete_distribution<int32_t> token(weights.begin(), weights.end());
  data::TokenDatasetWriter writer(path, kVocab, "{}", "test-tokenizer-1", true);
  std::vector<std::vector<int32_t>> train;
  for (int d = 0; d < documents; ++d) {
    std::vector<int32_t> doc(5 + rng() % 60);
    for (int32_t& t : doc) t = token(rng);
    const bool valid = data::is_valid_document(seed, d, 0.1);
    writer.add_document(doc, valid);
    if (!valid) train.push_back(doc);
  }
  writer.finish();
  return train;
}

AnalyzeOptions analyze_options(const std::string& dataset, int64_t seq_len) {
  AnalyzeOptions o;
  o.dataset = dataset;
  o.seq_len = seq_len;
  o.progress = false;
  return o;
}

// A data set in `dir` (seed, documents) with its vocabularyrarity index at seq_len T.
std::string indexed_dataset(const TempDir& dir, uint32_t seed, int documents, int64_t T) {
  const std::string path = dir.file("data.h5");
  write_dataset(path, seed, documents);
  dist::Communicator world = dist::Communicator::world();
  analyze_data(analyze_options(path, T), world);
  return path;
}

}  // namespace

BOOST_AUTO_TEST_CASE(vocabularyrarity_is_the_mean_negative_log_frequency) {
  TempDir dir("curriculum");
  const std::string path = dir.file("data.h5");
  const auto docs = write_dataset(path, 3, 60);
  std::vector<int32_t> tokens;
  for (const auto& doc : docs) tokens.insert(tokens.end(), doc.begin(), doc.end());
  std::vector<int64_t> counts(kVocab, 0);
  for (int32_t t : tokens) ++counts[size_t(t)];

  const int64_t T = 8, windows = (int64_t(tokens.size()) - 1) / T;
  dist::Communicator world = dist::Communicator::world();
  const AnalyzeResult result = analyze_data(analyze_options(path, T), world);
  BOOST_TEST(result.windows == windows);
  const data::TokenDataset dataset = data::TokenDataset::open(path);
  const DifficultyIndex index = DifficultyIndex::open_for(dataset, Metric::vocabularyrarity, T);
  BOOST_REQUIRE(index.windows() == windows);
  double lowest = INFINITY, highest = -INFINITY;
  for (int64_t w = 0; w < windows; ++w) {
    double sum = 0;
    for (int64_t t = w * T; t <= w * T + T; ++t) {
      sum -= std::log(double(counts[size_t(tokens[size_t(t)])]) / double(tokens.size()));
    }
    const double expected = sum / double(T + 1);
    BOOST_TEST(index.values()[size_t(w)] == expected, boost::test_tools::tolerance(1e-6));
    lowest = std::min(lowest, expected);
    highest = std::max(highest, expected);
  }
  BOOST_TEST(highest > lowest + 0.5);  // the windows do differ
  BOOST_TEST(result.min == lowest, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(result.max == highest, boost::test_tools::tolerance(1e-6));

  // The map-reduce building blocks over three uneven shares give the whole.
  const std::vector<double> whole_counts =
      token_counts(dataset, data::Split::train, 0, int64_t(tokens.size()));
  std::vector<double> summed(kVocab, 0.0);
  const int64_t cuts[] = {0, 7, 200, int64_t(tokens.size())};
  for (int i = 0; i < 3; ++i) {
    const auto part = token_counts(dataset, data::Split::train, cuts[i], cuts[i + 1]);
    for (int64_t v = 0; v < kVocab; ++v) summed[size_t(v)] += part[size_t(v)];
  }
  BOOST_TEST(summed == whole_counts, boost::test_tools::per_element());
  for (int64_t v = 0; v < kVocab; ++v) BOOST_TEST(whole_counts[size_t(v)] == counts[size_t(v)]);
  const auto nll = negative_log_frequencies(whole_counts);
  const auto all = vocabulary_rarity(dataset, nll, T, 0, windows);
  std::vector<double> joined = vocabulary_rarity(dataset, nll, T, 0, 5);
  const auto rest = vocabulary_rarity(dataset, nll, T, 5, windows);
  joined.insert(joined.end(), rest.begin(), rest.end());
  BOOST_TEST(joined == all, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(index_round_trip_queries_and_stale_refusal) {
  TempDir dir("curriculum");
  const std::string path = dir.file("data.h5");
  write_dataset(path, 5, 80);
  dist::Communicator world = dist::Communicator::world();
  const int64_t T = 16;
  const AnalyzeResult result = analyze_data(analyze_options(path, T), world);
  BOOST_TEST(result.path == dir.file("data.vocabularyrarity.seq16.index.h5"));
  BOOST_TEST(!fs::exists(result.path + ".tmp"));
  const std::string again = error_of([&] { analyze_data(analyze_options(path, T), world); });
  BOOST_TEST(contains(again, "pass --force"), again);

  const data::TokenDataset dataset = data::TokenDataset::open(path);
  const DifficultyIndex index = DifficultyIndex::open_for(dataset, Metric::vocabularyrarity, T);
  BOOST_TEST((index.identity() == index_identity(dataset, Metric::vocabularyrarity, T)));
  // Round trip: saved and loaded again, the same values and order.
  const std::string copy = dir.file("copy.h5");
  index.save(copy);
  const DifficultyIndex loaded = DifficultyIndex::load(copy, dataset, Metric::vocabularyrarity, T);
  const auto a = index.values(), b = loaded.values();
  BOOST_TEST(std::vector<float>(a.begin(), a.end()) == std::vector<float>(b.begin(), b.end()),
             boost::test_tools::per_element());
  const int64_t W = index.windows();
  std::set<int64_t> seen;
  for (int64_t k = 0; k < W; ++k) {
    BOOST_TEST(loaded.window_at(k) == index.window_at(k));
    seen.insert(index.window_at(k));
    if (k > 0) BOOST_TEST(index.sorted_value(k - 1) <= index.sorted_value(k));
    BOOST_TEST(index.sorted_value(k) == index.values()[size_t(index.window_at(k))]);
  }
  BOOST_TEST(int64_t(seen.size()) == W);  // a permutation of the windows

  // count_at_most against a scan, at every stored value and between them.
  for (int64_t k = 0; k < W; k += 3) {
    for (double d : {double(index.sorted_value(k)), double(index.sorted_value(k)) - 1e-4}) {
      const auto scan = std::count_if(a.begin(), a.end(), [&](float v) { return v <= d; });
      BOOST_TEST(index.count_at_most(d) == scan);
    }
  }
  BOOST_TEST(index.count_at_most(index.min_value() - 1) == 0);
  BOOST_TEST(index.count_at_most(index.max_value()) == W);
  // Percentiles: floor(W p / max), all from max on.
  BOOST_TEST(index.count_at_percentile(50, 100) == W * 50 / 100);
  BOOST_TEST(index.count_at_percentile(1, 100) == W / 100);
  BOOST_TEST(index.count_at_percentile(100, 100) == W);
  BOOST_TEST(index.count_at_percentile(37, 40) == W * 37 / 40);
  BOOST_TEST(index.value_at_percentile(100, 100) == index.max_value());

  // Stale: other seq_len, other data under the same name, a missing index.
  fs::copy_file(result.path, DifficultyIndex::path_for(path, Metric::vocabularyrarity, 8));
  const std::string seq =
      error_of([&] { DifficultyIndex::open_for(dataset, Metric::vocabularyrarity, 8); });
  BOOST_TEST(contains(seq, "is stale or belongs to other data"), seq);
  BOOST_TEST(contains(seq, "tools/analyze-data --metric vocabularyrarity --seq-len 8 --force"),
             seq);
  write_dataset(path, 6, 80);  // re-prepared: same tokenizer, other text
  const data::TokenDataset changed = data::TokenDataset::open(path);
  const std::string stale =
      error_of([&] { DifficultyIndex::open_for(changed, Metric::vocabularyrarity, T); });
  BOOST_TEST(contains(stale, "is stale or belongs to other data"), stale);
  const std::string missing =
      error_of([&] { DifficultyIndex::open_for(changed, Metric::vocabularyrarity, 32); });
  BOOST_TEST(contains(missing, "not found): create it with tools/analyze-data"), missing);
}

// ------------------------------------------------------------------ sampler

BOOST_AUTO_TEST_CASE(sampler_draws_eligible_windows_deterministically_and_resumes) {
  TempDir dir("curriculum");
  const int64_t T = 8;
  const data::TokenDataset dataset = data::TokenDataset::open(indexed_dataset(dir, 9, 120, T));
  const auto open = [&] { return DifficultyIndex::open_for(dataset, Metric::vocabularyrarity, T); };
  const DifficultyIndex index = open();
  const int64_t W = index.windows();
  BOOST_REQUIRE(W > 100);

  data::WindowLoader loader(dataset, data::Split::train, T, 11, true);
  CurriculumSampler by_value(loader, 42, open(), DifficultyType::value, 100);
  // Every draw at difficulty d is a window whose value is <= d.
  for (int64_t d : {int64_t(std::ceil(index.min_value())), int64_t(index.median_value()),
                    int64_t(index.median_value()) + 1}) {
    const int64_t n = by_value.eligible_windows(d);
    BOOST_TEST(n == index.count_at_most(double(d)));
    if (n == 0) continue;
    for (int64_t sample = 0; sample < 300; ++sample) {
      const int64_t w = by_value.window_of(sample, n);
      BOOST_TEST(index.values()[size_t(w)] <= double(d));
    }
  }
  // The 10 easiest windows: each drawn, none other.
  std::set<int64_t> easiest, drawn;
  for (int64_t k = 0; k < 10; ++k) easiest.insert(index.window_at(k));
  for (int64_t sample = 0; sample < 400; ++sample) drawn.insert(by_value.window_of(sample, 10));
  BOOST_TEST((drawn == easiest));

  // Deterministic, and a sampler started at sample N continues the straight run.
  CurriculumSampler by_percentile(loader, 42, open(), DifficultyType::percentile, 100);
  const auto eligible_at = [&](int64_t sample) {
    return by_percentile.eligible_windows(1 + sample / 16);
  };  // grows as it goes
  std::vector<int64_t> straight;
  for (int64_t s = 0; s < 1600; ++s) straight.push_back(by_percentile.window_of(s, eligible_at(s)));
  data::WindowLoader fresh_loader(dataset, data::Split::train, T, 11, true);
  CurriculumSampler resumed(fresh_loader, 42, open(), DifficultyType::percentile, 100);
  for (int64_t s = 1000; s < 1600; ++s) {
    BOOST_TEST(resumed.window_of(s, eligible_at(s)) == straight[size_t(s)]);
  }
  // Another seed draws otherwise.
  CurriculumSampler other(loader, 43, open(), DifficultyType::percentile, 100);
  int64_t same = 0;
  for (int64_t s = 0; s < 200; ++s) same += other.window_of(s, W / 2) == straight[size_t(s)];
  BOOST_TEST(same < 50);
  // With every window eligible, the baseline loader's windows.
  data::WindowLoader baseline(dataset, data::Split::train, T, 11, true);
  for (int64_t s = 0; s < 2 * W + 5; ++s) {
    BOOST_TEST(by_percentile.window_of(s, W) == baseline.window_of(s));
  }
  CurriculumSampler everything(loader, 42);
  BOOST_TEST(everything.eligible_windows(1) == W);
  BOOST_TEST(everything.window_of(7, W) == baseline.window_of(7));
}

BOOST_AUTO_TEST_CASE(curriculum_loader_reads_eligible_windows_at_the_scheduled_length) {
  TempDir dir("curriculum");
  const int64_t T = 16;
  const data::TokenDataset dataset = data::TokenDataset::open(indexed_dataset(dir, 12, 120, T));
  const DifficultyIndex index = DifficultyIndex::open_for(dataset, Metric::vocabularyrarity, T);

  // seqlen_truncate 4 -> 16 in 4s over 30 steps; vocabularyrarity 10% -> 100% over 30 steps.
  std::string yaml = kConfig;
  const CurriculumConfig config = parse(
      yaml, {"data.seq_len=16", kTruncate + "min_difficulty=4", kTruncate + "max_difficulty=16",
             kTruncate + "schedule_config.difficulty_step=4",
             kTruncate + "schedule_config.total_curriculum_step=30", kRarity + "min_difficulty=10",
             kRarity + "schedule_config.total_curriculum_step=30",
             kRarity + "schedule_type=fixed_linear"});
  data::WindowLoader loader(dataset, data::Split::train, T, 1, true);
  CurriculumLoader curriculum(config, dataset, loader);
  const CurriculumStep first = curriculum.at(1);
  BOOST_TEST(first.seq_len == 4);
  BOOST_TEST(first.sample_difficulty == 13);  // floor(1/30 x 90 + 10)
  BOOST_TEST(first.eligible_windows == index.count_at_percentile(13, 100));
  BOOST_TEST(contains(curriculum.describe(first), "seqlen_truncate 4"), curriculum.describe(first));
  const CurriculumStep last = curriculum.at(30);
  BOOST_TEST(last.seq_len == 16);
  BOOST_TEST(last.eligible_windows == index.windows());

  // A batch at step 1: (B, 4), each row the start of one of the easiest 10%.
  const data::Batch batch = curriculum.read(24, 6, first);
  BOOST_TEST((batch.ids.shape() == Shape{6, 4}));
  std::set<int64_t> eligible;
  for (int64_t k = 0; k < first.eligible_windows; ++k) eligible.insert(index.window_at(k));
  std::vector<int32_t> window(size_t(T + 1));
  for (int64_t b = 0; b < 6; ++b) {
    bool found = false;
    for (int64_t w : eligible) {
      dataset.read(data::Split::train, w * T, T + 1, window.data());
      bool same = true;
      for (int64_t t = 0; t < 4; ++t) {
        same = same && batch.ids.data<int64_t>()[b * 4 + t] == window[size_t(t)] &&
               batch.targets.data<int64_t>()[b * 4 + t] == window[size_t(t + 1)];
      }
      found = found || same;
    }
    BOOST_TEST(found, "row " << b << " is no eligible window's start");
  }
  // Resumed: a new loader reads the same batch for the same samples and step.
  data::WindowLoader loader2(dataset, data::Split::train, T, 1, true);
  CurriculumLoader resumed(config, dataset, loader2);
  const data::Batch again = resumed.read(24, 6, resumed.at(1));
  BOOST_TEST(std::vector<int64_t>(again.ids.data<int64_t>(), again.ids.data<int64_t>() + 24) ==
                 std::vector<int64_t>(batch.ids.data<int64_t>(), batch.ids.data<int64_t>() + 24),
             boost::test_tools::per_element());

  // A schedule that starts below every window is refused before training.
  const CurriculumConfig too_easy = parse(
      yaml, {"data.seq_len=16", kTruncate + "enabled=false", kRarity + "difficulty_type=value",
             kRarity + "min_difficulty=0", kRarity + "max_difficulty=1"});
  const std::string refused = error_of([&] { CurriculumLoader unused(too_easy, dataset, loader); });
  BOOST_TEST(contains(refused, kRarity + "min_difficulty: the schedule starts at difficulty 0, "
                                         "which selects no training window"),
             refused);
}

BOOST_AUTO_TEST_CASE(seqlen_truncate_and_reshape) {
  // (2, 10) with ids 100 b + t and targets 100 b + t + 1.
  std::vector<int64_t> ids, targets;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 10; ++t) {
      ids.push_back(100 * b + t);
      targets.push_back(100 * b + t + 1);
    }
  }
  const data::Batch batch{Tensor::from_vector<int64_t>({2, 10}, ids),
                          Tensor::from_vector<int64_t>({2, 10}, targets)};
  const auto rows = [](const Tensor& t) {
    return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  };
  const data::Batch truncated = truncate_batch(batch, 3);
  BOOST_TEST((truncated.ids.shape() == Shape{2, 3}));
  BOOST_TEST(rows(truncated.ids) == (std::vector<int64_t>{0, 1, 2, 100, 101, 102}),
             boost::test_tools::per_element());
  BOOST_TEST(rows(truncated.targets) == (std::vector<int64_t>{1, 2, 3, 101, 102, 103}),
             boost::test_tools::per_element());
  // 5 divides 10: two pieces a sample.
  const data::Batch halves = reshape_batch(batch, 5);
  BOOST_TEST((halves.ids.shape() == Shape{4, 5}));
  BOOST_TEST(
      rows(halves.ids) == (std::vector<int64_t>{0,   1,   2,   3,   4,   5,   6,   7,   8,   9,
                                                100, 101, 102, 103, 104, 105, 106, 107, 108, 109}),
      boost::test_tools::per_element());
  // 4 does not divide 10: pieces at 0, 4 and the last 4 positions (6..9).
  const data::Batch fours = apply_seqlen(Metric::seqlen_reshape, batch, 4);
  BOOST_TEST((fours.ids.shape() == Shape{6, 4}));
  BOOST_TEST(rows(fours.targets) ==
                 (std::vector<int64_t>{1,   2,   3,   4,   5,   6,   7,   8,   7,   8,   9,   10,
                                       101, 102, 103, 104, 105, 106, 107, 108, 107, 108, 109, 110}),
             boost::test_tools::per_element());
  // The full length leaves the batch as it is.
  BOOST_TEST((apply_seqlen(Metric::seqlen_truncate, batch, 10).ids.shape() == Shape{2, 10}));
  BOOST_TEST((reshape_batch(batch, 12).ids.shape() == Shape{2, 10}));
}
