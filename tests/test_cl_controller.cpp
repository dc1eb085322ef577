// Miro's configuration choice (lib/cl/controller.hpp): the candidates are the
// grid in rb, st, ratio order, and a sample of it is a subset of the grid in
// grid order, of the size asked, the same for the same seed, and uniform
// (inclusion frequencies over 2000 seeds within 5 binomial standard
// deviations); the choice keeps the cutline's most accurate and picks the
// best accuracy per joule among them, never a better one outside; cutline 1
// picks the most accurate; ties go to less energy, then the lower index;
// the JSON report names the chosen and kept rows; bad input is refused with
// a message naming it.
#define BOOST_TEST_MODULE cl_controller
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "cl/controller.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

cl::ProfiledConfiguration row(int64_t rb_size, double accuracy, double energy_j) {
  cl::ProfiledConfiguration r;
  r.config.rb_size = rb_size;
  r.config.st_size = 10 * rb_size;
  r.config.swap_ratio = 0.1;
  r.accuracy = accuracy;
  r.energy_j = energy_j;
  r.seconds = energy_j / 10;
  return r;
}

// Accuracy grows with the memory, energy mostly too. Accuracy per joule:
// 0.005, 0.00175, 0.00133, 0.0017, 0.00086: the best two overall (0 and 1)
// are the least accurate.
std::vector<cl::ProfiledConfiguration> synthetic_table() {
  return {row(100, 0.50, 100), row(500, 0.70, 400), row(1000, 0.80, 600), row(2000, 0.85, 500),
          row(4000, 0.86, 1000)};
}

std::vector<size_t> indices(std::initializer_list<size_t> values) {
  return values;
}

const std::vector<int64_t> kRb = {100, 200, 400};
const std::vector<int64_t> kSt = {0, 1000, 5000, 20000};
const std::vector<double> kRatios = {0.0, 0.05, 0.1, 0.25, 0.5};

std::string candidates_error(std::vector<int64_t> rb, std::vector<int64_t> st,
                             std::vector<double> ratios, int64_t sample = 0) {
  return error_of([&] { cl::candidate_configurations(rb, st, ratios, sample, 1); });
}

}  // namespace

BOOST_AUTO_TEST_CASE(best_per_joule_outside_the_cutline_is_not_chosen) {
  const auto table = synthetic_table();
  const cl::ConfigurationChoice choice = cl::choose_configuration(table, 3);
  BOOST_TEST(choice.kept == indices({4, 3, 2}), boost::test_tools::per_element());
  BOOST_TEST(choice.chosen == 3u);  // 0.0017 /J; 0 (0.005) and 1 (0.00175) are below the cutline
}

BOOST_AUTO_TEST_CASE(cutline_one_picks_the_most_accurate_and_a_large_one_keeps_all) {
  const auto table = synthetic_table();
  const cl::ConfigurationChoice one = cl::choose_configuration(table, 1);
  BOOST_TEST(one.kept == indices({4}), boost::test_tools::per_element());
  BOOST_TEST(one.chosen == 4u);
  const cl::ConfigurationChoice all = cl::choose_configuration(table, 100);
  BOOST_TEST(all.kept == indices({4, 3, 2, 1, 0}), boost::test_tools::per_element());
  BOOST_TEST(all.chosen == 0u);
  const cl::ConfigurationChoice four = cl::choose_configuration(table, 4);
  BOOST_TEST(four.chosen == 1u);  // 0.00175 /J beats 3's 0.0017 once inside
}

BOOST_AUTO_TEST_CASE(ties_go_to_less_energy_then_the_lower_index) {
  // Equal accuracy: less energy is kept first, equal energy the lower index.
  const std::vector<cl::ProfiledConfiguration> table = {row(1, 0.8, 200), row(2, 0.9, 300),
                                                        row(3, 0.9, 250), row(4, 0.9, 250)};
  const cl::ConfigurationChoice two = cl::choose_configuration(table, 2);
  BOOST_TEST(two.kept == indices({2, 3}), boost::test_tools::per_element());
  BOOST_TEST(two.chosen == 2u);
  const cl::ConfigurationChoice three = cl::choose_configuration(table, 3);
  BOOST_TEST(three.kept == indices({2, 3, 1}), boost::test_tools::per_element());
  BOOST_TEST(three.chosen == 2u);

  // Equal accuracy per joule (exactly: 0.25/100 == 0.5/200): the lower
  // index, though it is kept second.
  const std::vector<cl::ProfiledConfiguration> per_joule = {row(1, 0.25, 100), row(2, 0.5, 200)};
  const cl::ConfigurationChoice tie = cl::choose_configuration(per_joule, 2);
  BOOST_TEST(tie.kept == indices({1, 0}), boost::test_tools::per_element());
  BOOST_TEST(tie.chosen == 0u);
}

BOOST_AUTO_TEST_CASE(choice_as_json) {
  const auto table = synthetic_table();
  const cl::ConfigurationChoice choice = cl::choose_configuration(table, 3);
  const auto json = choice.to_json(table);
  BOOST_TEST(json["chosen"]["index"].get<size_t>() == 3u);
  BOOST_TEST(json["chosen"]["rb_size"].get<int64_t>() == 2000);
  BOOST_TEST(json["chosen"]["st_size"].get<int64_t>() == 20000);
  BOOST_TEST(json["chosen"]["accuracy_per_j"].get<double>() == 0.85 / 500);
  BOOST_TEST(json["kept"].size() == 3u);
  BOOST_TEST(json["kept"][0]["index"].get<size_t>() == 4u);
  const std::string error = error_of([&] { choice.to_json(std::span(table).first(2)); });
  BOOST_TEST(contains(error, "index 3 is beyond the table of 2"), error);
}

BOOST_AUTO_TEST_CASE(grid_is_in_rb_st_ratio_order) {
  const std::vector<int64_t> rb = {10, 20}, st = {0, 100};
  const std::vector<double> ratios = {0.1, 0.5};
  const auto grid = cl::candidate_configurations(rb, st, ratios, 0, 7);
  const std::vector<cl::MemoryConfiguration> expected = {
      {10, 0, 0.1}, {10, 0, 0.5}, {10, 100, 0.1}, {10, 100, 0.5},
      {20, 0, 0.1}, {20, 0, 0.5}, {20, 100, 0.1}, {20, 100, 0.5}};
  BOOST_TEST_REQUIRE(grid.size() == expected.size());
  for (size_t i = 0; i < grid.size(); ++i) BOOST_TEST((grid[i] == expected[i]), i);
  BOOST_TEST(grid[2].describe() == "rb_size 10, st_size 100, swap_ratio 0.1");
  // A sample as large as the grid or larger is the grid.
  BOOST_TEST((cl::candidate_configurations(rb, st, ratios, 8, 7) == grid));
  BOOST_TEST((cl::candidate_configurations(rb, st, ratios, 50, 7) == grid));
}

BOOST_AUTO_TEST_CASE(samples_are_reproducible_subsets_in_grid_order) {
  const auto grid = cl::candidate_configurations(kRb, kSt, kRatios, 0, 0);
  BOOST_TEST_REQUIRE(grid.size() == 60u);
  const auto position = [&](const cl::MemoryConfiguration& c) {
    return size_t(std::find(grid.begin(), grid.end(), c) - grid.begin());
  };
  std::vector<std::vector<cl::MemoryConfiguration>> samples;
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const auto sample = cl::candidate_configurations(kRb, kSt, kRatios, 7, seed);
    BOOST_TEST_REQUIRE(sample.size() == 7u);
    for (size_t i = 0; i < sample.size(); ++i) {
      BOOST_TEST(position(sample[i]) < grid.size());
      if (i > 0) BOOST_TEST(position(sample[i - 1]) < position(sample[i]));  // distinct, in order
    }
    BOOST_TEST((cl::candidate_configurations(kRb, kSt, kRatios, 7, seed) == sample));
    samples.push_back(sample);
  }
  size_t distinct = 0;
  for (size_t i = 1; i < samples.size(); ++i) distinct += samples[i] != samples[0];
  BOOST_TEST(distinct > 0u);
}

BOOST_AUTO_TEST_CASE(samples_are_uniform) {
  constexpr int kSeeds = 2000;
  constexpr int kSample = 5;
  const auto grid = cl::candidate_configurations(kRb, kSt, kRatios, 0, 0);
  std::vector<int> counts(grid.size(), 0);
  for (uint64_t seed = 0; seed < kSeeds; ++seed)
    for (const auto& c : cl::candidate_configurations(kRb, kSt, kRatios, kSample, seed))
      ++counts[size_t(std::find(grid.begin(), grid.end(), c) - grid.begin())];
  const double p = double(kSample) / double(grid.size());
  const double sd = std::sqrt(kSeeds * p * (1 - p));
  for (size_t i = 0; i < counts.size(); ++i)
    BOOST_TEST(std::abs(counts[i] - kSeeds * p) < 5 * sd, grid[i].describe() << ": " << counts[i]);
}

BOOST_AUTO_TEST_CASE(bad_candidates_are_refused) {
  BOOST_TEST(contains(candidates_error({}, kSt, kRatios), "rb_sizes is empty"));
  BOOST_TEST(contains(candidates_error(kRb, {}, kRatios), "st_sizes is empty"));
  BOOST_TEST(contains(candidates_error(kRb, kSt, {}), "swap_ratios is empty"));
  BOOST_TEST(contains(candidates_error({100, 0}, kSt, kRatios), "rb_size 0 must be >= 1"));
  BOOST_TEST(contains(candidates_error(kRb, {-5}, kRatios), "st_size -5 must be >= 0"));
  BOOST_TEST(contains(candidates_error(kRb, kSt, {0.5, 1.5}), "swap_ratio 1.5 must be in [0, 1]"));
  BOOST_TEST(contains(candidates_error(kRb, kSt, {std::nan("")}), "must be in [0, 1]"));
  BOOST_TEST(contains(candidates_error(kRb, kSt, kRatios, -1), "sample -1 must be >= 0"));
  BOOST_TEST(contains(candidates_error({100, 200, 100}, kSt, kRatios), "rb_sizes lists 100 twice"));
  // No storage tier and the extremes of the ratio are valid.
  BOOST_TEST(cl::candidate_configurations(kRb, std::vector<int64_t>{0},
                                          std::vector<double>{0.0, 1.0}, 0, 1)
                 .size() == 6u);
}

BOOST_AUTO_TEST_CASE(bad_tables_are_refused) {
  const auto table = synthetic_table();
  const auto choose_error = [](std::vector<cl::ProfiledConfiguration> t, int64_t cutline) {
    return error_of([&] { cl::choose_configuration(t, cutline); });
  };
  BOOST_TEST(contains(choose_error({}, 3), "no profiled configurations"));
  BOOST_TEST(contains(choose_error(table, 0), "cutline 0 must be >= 1"));
  auto zero = table;
  zero[2].energy_j = 0;
  const std::string zero_error = choose_error(zero, 3);
  BOOST_TEST(
      contains(zero_error, "row 2 (rb_size 1000, st_size 10000, swap_ratio 0.1) has energy 0 J"),
      zero_error);
  auto negative = table;
  negative[1].energy_j = -4;
  BOOST_TEST(contains(choose_error(negative, 3), "has energy -4 J; it must be > 0"));
  auto nan = table;
  nan[0].accuracy = std::numeric_limits<double>::quiet_NaN();
  BOOST_TEST(contains(choose_error(nan, 3), "has accuracy nan"));
}
