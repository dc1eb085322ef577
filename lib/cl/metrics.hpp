// Continual-learning metrics of cl-edge (issue 18) over the accuracy matrix
// R of a stream of T tasks: R[i][j] is the accuracy on task j's test data
// after training on tasks 0..i, and b[j] (optional) the accuracy on task j of
// the model at its random initialization. The definitions are GEM's
// (Lopez-Paz & Ranzato 2017) and Avalanche's names:
//
//   ACC = 1/T     sum_{j}        R[T-1][j]
//   BWT = 1/(T-1) sum_{j<T-1}   (R[T-1][j] - R[j][j])
//   FWT = 1/(T-1) sum_{j>=1}    (R[j-1][j] - b[j])
//   f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]   for j < T-1
//   forgetting = 1/(T-1) sum_{j<T-1} f_j
//
// Forgetting is Chaudhry et al. 2018's (Riemannian Walk): the drop from the
// best accuracy a task ever had before the last one. Avalanche's
// StreamForgetting drops from the accuracy right after training on the task,
// R[j][j], instead; its average is -BWT, so forgetting >= -BWT always. f_j
// is negative when the task's accuracy rose after training on it.
//
// A 1-task stream has no earlier task to forget or to transfer to: its BWT,
// FWT and forgetting are 0, and its per-task forgetting is empty.
//
// "After task i" is the same metrics over the first i+1 rows and columns
// (and the first i+1 entries of b): what a stream reports as it goes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

namespace turbine::cl {

// R: T rows of T accuracies in [0, 1].
using AccuracyRows = std::vector<std::vector<double>>;

struct StreamMetrics {
  int64_t tasks = 0;                       // T: the tasks trained on so far
  double accuracy = 0;                     // ACC
  double backward_transfer = 0;            // BWT
  std::optional<double> forward_transfer;  // FWT; none without b
  double forgetting = 0;                   // average forgetting
  std::vector<double> task_forgetting;     // f_j for j < T-1
  // {"tasks", "acc", "bwt", "fwt" (null without b), "forgetting", "task_forgetting"}
  nlohmann::ordered_json to_json() const;
};

// Each checks R (square, T >= 1, values in [0, 1]) and b (T values in
// [0, 1]) and throws turbine::Error naming the bad entry.
double average_accuracy(const AccuracyRows& r);
double backward_transfer(const AccuracyRows& r);
double forward_transfer(const AccuracyRows& r, std::span<const double> b);
std::vector<double> task_forgetting(const AccuracyRows& r);
double average_forgetting(const AccuracyRows& r);

// All of the above; FWT only when b is given.
StreamMetrics stream_metrics(const AccuracyRows& r, std::span<const double> b = {});
// The first task+1 rows and columns of R: the stream as it was after `task`.
AccuracyRows rows_after(const AccuracyRows& r, int64_t task);
StreamMetrics stream_metrics_after(const AccuracyRows& r, int64_t task,
                                   std::span<const double> b = {});

// R filled in as a stream goes: after training on task i, set(i, j, ...) for
// the tasks evaluated (Avalanche evaluates the whole test stream; the metrics
// after task i need task i's row on tasks 0..i, and FWT needs R[i-1][i]).
class AccuracyMatrix {
 public:
  // A stream of `tasks` tasks; random_init: b, empty or one value a task.
  explicit AccuracyMatrix(int64_t tasks, std::vector<double> random_init = {});
  int64_t tasks() const { return tasks_; }
  const std::vector<double>& random_init() const { return random_init_; }
  void set(int64_t trained, int64_t evaluated, double accuracy);
  bool is_set(int64_t trained, int64_t evaluated) const;
  double at(int64_t trained, int64_t evaluated) const;  // throws if unset
  // k such that the leading k x k block of R is set: the metrics are known
  // after tasks 0..k-1.
  int64_t rows_filled() const;
  StreamMetrics metrics_after(int64_t task) const;  // throws naming an unset entry
  StreamMetrics metrics() const;                    // after task rows_filled() - 1
  // {"tasks", "accuracy": T rows with null where unset, "random_init" when given}
  nlohmann::ordered_json to_json() const;
  static AccuracyMatrix from_json(const nlohmann::ordered_json& json);

 private:
  int64_t tasks_;
  std::vector<double> random_init_;
  std::vector<double> values_;  // row-major T x T; NaN where unset
  void check_entry(int64_t trained, int64_t evaluated) const;
};

}  // namespace turbine::cl
