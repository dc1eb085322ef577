// cl-edge's continual-learning metrics (lib/cl/metrics.hpp): ACC, BWT, FWT,
// average and per-task forgetting on fixed 3x3 and 4x4 accuracy matrices
// against hand-computed values (the arithmetic is in the comments), the
// same metrics after each task of a stream, the AccuracyMatrix filled as a
// stream goes and its JSON, and the errors of bad input.
#define BOOST_TEST_MODULE cl_metrics
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <vector>

#include "cl/metrics.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

constexpr double kTolerance = 1e-12;

bool near(double a, double b) {
  return std::abs(a - b) < kTolerance;
}

bool near(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!near(a[i], b[i])) return false;
  return true;
}

// A 3-task stream whose best accuracy on each task is right after training on it.
const cl::AccuracyRows kThree = {
    {0.90, 0.10, 0.20},
    {0.70, 0.80, 0.15},
    {0.60, 0.75, 0.95},
};
const std::vector<double> kThreeInit = {0.12, 0.08, 0.10};

// A 4-task stream where task 0 and task 1 improve after their own training
// (so forgetting's max is off the diagonal) and then drop.
const cl::AccuracyRows kFour = {
    {0.80, 0.05, 0.10, 0.20},
    {0.85, 0.70, 0.15, 0.05},
    {0.60, 0.90, 0.75, 0.30},
    {0.50, 0.65, 0.70, 0.90},
};
const std::vector<double> kFourInit = {0.10, 0.10, 0.10, 0.25};

}  // namespace

BOOST_AUTO_TEST_CASE(three_tasks_by_hand) {
  // ACC = (0.60 + 0.75 + 0.95) / 3 = 2.30 / 3
  BOOST_TEST(near(cl::average_accuracy(kThree), 2.30 / 3));
  // BWT = ((0.60 - 0.90) + (0.75 - 0.80)) / 2 = (-0.30 - 0.05) / 2 = -0.175
  BOOST_TEST(near(cl::backward_transfer(kThree), -0.175));
  // FWT = ((R[0][1] - b[1]) + (R[1][2] - b[2])) / 2 = ((0.10 - 0.08) + (0.15 - 0.10)) / 2
  //     = (0.02 + 0.05) / 2 = 0.035
  BOOST_TEST(near(cl::forward_transfer(kThree, kThreeInit), 0.035));
  // f_0 = max(0.90, 0.70) - 0.60 = 0.30; f_1 = 0.80 - 0.75 = 0.05; mean 0.175 (= -BWT:
  // every maximum is on the diagonal).
  BOOST_TEST(near(cl::task_forgetting(kThree), {0.30, 0.05}));
  BOOST_TEST(near(cl::average_forgetting(kThree), 0.175));
}

BOOST_AUTO_TEST_CASE(four_tasks_by_hand) {
  // ACC = (0.50 + 0.65 + 0.70 + 0.90) / 4 = 2.75 / 4 = 0.6875
  BOOST_TEST(near(cl::average_accuracy(kFour), 0.6875));
  // BWT = ((0.50 - 0.80) + (0.65 - 0.70) + (0.70 - 0.75)) / 3 = -0.40 / 3
  BOOST_TEST(near(cl::backward_transfer(kFour), -0.40 / 3));
  // FWT = ((0.05 - 0.10) + (0.15 - 0.10) + (0.30 - 0.25)) / 3 = 0.05 / 3
  BOOST_TEST(near(cl::forward_transfer(kFour, kFourInit), 0.05 / 3));
  // f_0 = max(0.80, 0.85, 0.60) - 0.50 = 0.35
  // f_1 = max(0.70, 0.90) - 0.65 = 0.25
  // f_2 = 0.75 - 0.70 = 0.05
  // forgetting = 0.65 / 3, above -BWT = 0.40 / 3 (Avalanche's, from R[j][j]).
  BOOST_TEST(near(cl::task_forgetting(kFour), {0.35, 0.25, 0.05}));
  BOOST_TEST(near(cl::average_forgetting(kFour), 0.65 / 3));
  BOOST_TEST(cl::average_forgetting(kFour) >= -cl::backward_transfer(kFour));

  const cl::StreamMetrics m = cl::stream_metrics(kFour, kFourInit);
  BOOST_TEST(m.tasks == 4);
  BOOST_TEST(near(m.accuracy, 0.6875));
  BOOST_TEST(near(m.backward_transfer, -0.40 / 3));
  BOOST_TEST_REQUIRE(m.forward_transfer.has_value());
  BOOST_TEST(near(*m.forward_transfer, 0.05 / 3));
  BOOST_TEST(near(m.forgetting, 0.65 / 3));
  BOOST_TEST(near(m.task_forgetting, {0.35, 0.25, 0.05}));
  BOOST_TEST(!cl::stream_metrics(kFour).forward_transfer.has_value());  // no b, no FWT
}

BOOST_AUTO_TEST_CASE(metrics_after_each_task_use_the_leading_rows_and_columns) {
  // After task 0: R = [[0.80]]: ACC 0.80, and nothing to transfer or forget.
  const cl::StreamMetrics m0 = cl::stream_metrics_after(kFour, 0, kFourInit);
  BOOST_TEST(m0.tasks == 1);
  BOOST_TEST(near(m0.accuracy, 0.80));
  BOOST_TEST(m0.backward_transfer == 0.0);
  BOOST_TEST(*m0.forward_transfer == 0.0);
  BOOST_TEST(m0.forgetting == 0.0);
  BOOST_TEST(m0.task_forgetting.empty());
  // After task 1: R = [[0.80, 0.05], [0.85, 0.70]], b = [0.10, 0.10].
  // ACC = (0.85 + 0.70) / 2 = 0.775; BWT = 0.85 - 0.80 = 0.05; FWT = 0.05 - 0.10 = -0.05;
  // f_0 = 0.80 - 0.85 = -0.05 (task 0 improved).
  const cl::StreamMetrics m1 = cl::stream_metrics_after(kFour, 1, kFourInit);
  BOOST_TEST(m1.tasks == 2);
  BOOST_TEST(near(m1.accuracy, 0.775));
  BOOST_TEST(near(m1.backward_transfer, 0.05));
  BOOST_TEST(near(*m1.forward_transfer, -0.05));
  BOOST_TEST(near(m1.task_forgetting, {-0.05}));
  BOOST_TEST(near(m1.forgetting, -0.05));
  // After task 2: ACC = (0.60 + 0.90 + 0.75) / 3 = 0.75;
  // BWT = ((0.60 - 0.80) + (0.90 - 0.70)) / 2 = 0; FWT = ((0.05 - 0.10) + (0.15 - 0.10)) / 2 = 0;
  // f_0 = max(0.80, 0.85) - 0.60 = 0.25, f_1 = 0.70 - 0.90 = -0.20, forgetting = 0.025.
  const cl::StreamMetrics m2 = cl::stream_metrics_after(kFour, 2, kFourInit);
  BOOST_TEST(near(m2.accuracy, 0.75));
  BOOST_TEST(near(m2.backward_transfer, 0.0));
  BOOST_TEST(near(*m2.forward_transfer, 0.0));
  BOOST_TEST(near(m2.task_forgetting, {0.25, -0.20}));
  BOOST_TEST(near(m2.forgetting, 0.025));
  // After the last task: the whole stream's.
  const cl::StreamMetrics m3 = cl::stream_metrics_after(kFour, 3, kFourInit);
  BOOST_TEST(m3.to_json() == cl::stream_metrics(kFour, kFourInit).to_json());
  BOOST_TEST(cl::rows_after(kFour, 1) == (cl::AccuracyRows{{0.80, 0.05}, {0.85, 0.70}}));
}

BOOST_AUTO_TEST_CASE(one_task_streams_transfer_and_forget_nothing) {
  const cl::AccuracyRows one = {{0.42}};
  BOOST_TEST(near(cl::average_accuracy(one), 0.42));
  BOOST_TEST(cl::backward_transfer(one) == 0.0);
  BOOST_TEST(cl::forward_transfer(one, std::vector<double>{0.1}) == 0.0);
  BOOST_TEST(cl::average_forgetting(one) == 0.0);
  BOOST_TEST(cl::task_forgetting(one).empty());
}

BOOST_AUTO_TEST_CASE(an_accuracy_matrix_reports_as_the_stream_goes) {
  cl::AccuracyMatrix r(4, kFourInit);
  BOOST_TEST(r.rows_filled() == 0);
  BOOST_TEST(contains(error_of([&] { r.metrics(); }), "R[0][0] is not set"));
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t j = 0; j < 4; ++j) r.set(i, j, kFour[size_t(i)][size_t(j)]);
    BOOST_TEST(r.rows_filled() == i + 1);
    BOOST_TEST(r.metrics().to_json() == cl::stream_metrics_after(kFour, i, kFourInit).to_json());
  }
  // A row on the tasks seen so far only is enough for the metrics after it.
  cl::AccuracyMatrix seen_only(3);
  seen_only.set(0, 0, 0.9);
  seen_only.set(1, 0, 0.7);
  BOOST_TEST(seen_only.rows_filled() == 1);
  BOOST_TEST(contains(error_of([&] { seen_only.metrics_after(1); }),
                      "R[0][1] (the accuracy on task 1 after training on task 0) is not set"));
  seen_only.set(0, 1, 0.1);
  seen_only.set(1, 1, 0.8);
  BOOST_TEST(seen_only.rows_filled() == 2);
  BOOST_TEST(near(seen_only.metrics().backward_transfer, 0.7 - 0.9));
  BOOST_TEST(!seen_only.metrics().forward_transfer.has_value());

  // JSON: null where unset, and back.
  const auto json = seen_only.to_json();
  BOOST_TEST(json["tasks"] == 3);
  BOOST_TEST(json["accuracy"][0][2].is_null());
  BOOST_TEST(json["accuracy"][1][0] == 0.7);
  BOOST_TEST(!json.contains("random_init"));
  BOOST_TEST(cl::AccuracyMatrix::from_json(json).to_json() == json);
  BOOST_TEST(cl::AccuracyMatrix::from_json(r.to_json()).to_json() == r.to_json());
  BOOST_TEST(r.to_json()["random_init"].size() == 4u);
  const auto m = r.metrics().to_json();
  BOOST_TEST(m["acc"] == 0.6875);
  BOOST_TEST(m["task_forgetting"].size() == 3u);
  BOOST_TEST(cl::stream_metrics(kFour).to_json()["fwt"].is_null());
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused_with_the_entry_named) {
  BOOST_TEST(contains(error_of([] { cl::average_accuracy({}); }), "no tasks"));
  BOOST_TEST(contains(error_of([] {
                        cl::backward_transfer({{0.5, 0.5}, {0.5}});
                      }),
                      "row 1 has 1 values for 2 tasks (R must be square"));
  BOOST_TEST(contains(error_of([] {
                        cl::backward_transfer({{0.5, 0.5}});
                      }),
                      "row 0 has 2 values for 1 tasks"));
  BOOST_TEST(contains(error_of([] {
                        cl::average_forgetting({{0.5, 1.5}, {0.5, 0.5}});
                      }),
                      "R[0][1] = 1.5 is not an accuracy in [0, 1]"));
  BOOST_TEST(contains(error_of([] { cl::average_accuracy({{-0.1}}); }), "R[0][0] = -0.1"));
  BOOST_TEST(contains(error_of([] { cl::average_accuracy({{std::nan("")}}); }),
                      "is not an accuracy in [0, 1]"));
  BOOST_TEST(contains(error_of([] { cl::forward_transfer(kThree, std::vector<double>{0.1}); }),
                      "random-init accuracies: 1 values for 3 tasks"));
  BOOST_TEST(contains(error_of([] { cl::forward_transfer(kThree, {}); }), "0 values for 3 tasks"));
  BOOST_TEST(contains(error_of([] {
                        cl::stream_metrics(kThree, std::vector<double>{0, 2, 0});
                      }),
                      "b[1] = 2 is not in [0, 1]"));
  BOOST_TEST(contains(error_of([] { cl::stream_metrics_after(kThree, 3); }),
                      "metrics after task 3: the stream has tasks 0..2"));
  BOOST_TEST(contains(error_of([] { cl::stream_metrics_after(kThree, -1); }), "after task -1"));
  BOOST_TEST(contains(error_of([] { cl::AccuracyMatrix(0); }), "0 tasks"));
  BOOST_TEST(contains(error_of([] { cl::AccuracyMatrix(2, {0.1}); }), "1 values for 2 tasks"));
  cl::AccuracyMatrix r(2);
  BOOST_TEST(contains(error_of([&] { r.set(2, 0, 0.5); }), "R[2][0] is outside"));
  BOOST_TEST(contains(error_of([&] { r.set(0, 0, 1.01); }), "R[0][0] = 1.01"));
  BOOST_TEST(contains(error_of([] {
                        cl::AccuracyMatrix::from_json({{"tasks", "two"}});
                      }),
                      "an integer \"tasks\""));
  BOOST_TEST(contains(error_of([] {
                        cl::AccuracyMatrix::from_json({{"tasks", 1}, {"accuracy", {{"x"}}}});
                      }),
                      "R[0][0] holds \"x\", not a number"));
}
