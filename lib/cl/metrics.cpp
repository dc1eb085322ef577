// The continual-learning metrics of metrics.hpp.
#include "cl/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace turbine::cl {

namespace {

bool is_accuracy(double v) {
  return v >= 0 && v <= 1;
}  // false for NaN

void check_rows(const AccuracyRows& r) {
  TURBINE_CHECK(!r.empty(),
                "accuracy matrix: no tasks (R must be T x T with T >= 1, R[i][j] the accuracy "
                "on task j after training on tasks 0..i)");
  for (size_t i = 0; i < r.size(); ++i) {
    TURBINE_CHECK(r[i].size() == r.size(),
                  "accuracy matrix: row {} has {} values for {} tasks (R must be square: R[i][j] "
                  "is the accuracy on task j after training on tasks 0..i)",
                  i, r[i].size(), r.size());
    for (size_t j = 0; j < r.size(); ++j)
      TURBINE_CHECK(is_accuracy(r[i][j]),
                    "accuracy matrix: R[{}][{}] = {} is not an accuracy in [0, 1]", i, j, r[i][j]);
  }
}

void check_random_init(std::span<const double> b, size_t tasks) {
  TURBINE_CHECK(b.size() == tasks,
                "random-init accuracies: {} values for {} tasks (b[j] is the accuracy on task j "
                "of the model at random initialization)",
                b.size(), tasks);
  for (size_t j = 0; j < b.size(); ++j)
    TURBINE_CHECK(is_accuracy(b[j]), "random-init accuracies: b[{}] = {} is not in [0, 1]", j,
                  b[j]);
}

}  // namespace

nlohmann::ordered_json StreamMetrics::to_json() const {
  return {{"tasks", tasks},
          {"acc", accuracy},
          {"bwt", backward_transfer},
          {"fwt", forward_transfer ? nlohmann::ordered_json(*forward_transfer) : nullptr},
          {"forgetting", forgetting},
          {"task_forgetting", task_forgetting}};
}

double average_accuracy(const AccuracyRows& r) {
  check_rows(r);
  double sum = 0;
  for (double v : r.back()) sum += v;
  return sum / double(r.size());
}

double backward_transfer(const AccuracyRows& r) {
  check_rows(r);
  const size_t last = r.size() - 1;
  if (last == 0) return 0;
  double sum = 0;
  for (size_t j = 0; j < last; ++j) sum += r[last][j] - r[j][j];
  return sum / double(last);
}

double forward_transfer(const AccuracyRows& r, std::span<const double> b) {
  check_rows(r);
  check_random_init(b, r.size());
  const size_t last = r.size() - 1;
  if (last == 0) return 0;
  double sum = 0;
  for (size_t j = 1; j <= last; ++j) sum += r[j - 1][j] - b[j];
  return sum / double(last);
}

std::vector<double> task_forgetting(const AccuracyRows& r) {
  check_rows(r);
  const size_t last = r.size() - 1;
  std::vector<double> f(last);
  for (size_t j = 0; j < last; ++j) {
    double best = r[j][j];
    for (size_t l = j + 1; l < last; ++l) best = std::max(best, r[l][j]);
    f[j] = best - r[last][j];
  }
  return f;
}

double average_forgetting(const AccuracyRows& r) {
  const std::vector<double> f = task_forgetting(r);
  if (f.empty()) return 0;
  double sum = 0;
  for (double v : f) sum += v;
  return sum / double(f.size());
}

StreamMetrics stream_metrics(const AccuracyRows& r, std::span<const double> b) {
  StreamMetrics m;
  m.tasks = int64_t(r.size());
  m.accuracy = average_accuracy(r);
  m.backward_transfer = backward_transfer(r);
  if (!b.empty()) m.forward_transfer = forward_transfer(r, b);
  m.task_forgetting = task_forgetting(r);
  m.forgetting = average_forgetting(r);
  return m;
}

AccuracyRows rows_after(const AccuracyRows& r, int64_t task) {
  check_rows(r);
  TURBINE_CHECK(task >= 0 && task < int64_t(r.size()),
                "metrics after task {}: the stream has tasks 0..{}", task, r.size() - 1);
  const size_t n = size_t(task) + 1;
  AccuracyRows leading(n);
  for (size_t i = 0; i < n; ++i) leading[i].assign(r[i].begin(), r[i].begin() + int64_t(n));
  return leading;
}

StreamMetrics stream_metrics_after(const AccuracyRows& r, int64_t task, std::span<const double> b) {
  const AccuracyRows leading = rows_after(r, task);
  if (b.empty()) return stream_metrics(leading);
  check_random_init(b, r.size());
  return stream_metrics(leading, b.first(leading.size()));
}

AccuracyMatrix::AccuracyMatrix(int64_t tasks, std::vector<double> random_init)
    : tasks_(tasks), random_init_(std::move(random_init)) {
  TURBINE_CHECK(tasks >= 1, "accuracy matrix: {} tasks (a stream has at least one)", tasks);
  if (!random_init_.empty()) check_random_init(random_init_, size_t(tasks));
  values_.assign(size_t(tasks * tasks), std::numeric_limits<double>::quiet_NaN());
}

void AccuracyMatrix::check_entry(int64_t trained, int64_t evaluated) const {
  TURBINE_CHECK(trained >= 0 && trained < tasks_ && evaluated >= 0 && evaluated < tasks_,
                "accuracy matrix: R[{}][{}] is outside a stream of tasks 0..{}", trained, evaluated,
                tasks_ - 1);
}

void AccuracyMatrix::set(int64_t trained, int64_t evaluated, double accuracy) {
  check_entry(trained, evaluated);
  TURBINE_CHECK(is_accuracy(accuracy),
                "accuracy matrix: R[{}][{}] = {} is not an accuracy in [0, 1]", trained, evaluated,
                accuracy);
  values_[size_t(trained * tasks_ + evaluated)] = accuracy;
}

bool AccuracyMatrix::is_set(int64_t trained, int64_t evaluated) const {
  check_entry(trained, evaluated);
  return !std::isnan(values_[size_t(trained * tasks_ + evaluated)]);
}

double AccuracyMatrix::at(int64_t trained, int64_t evaluated) const {
  TURBINE_CHECK(is_set(trained, evaluated),
                "accuracy matrix: R[{}][{}] (the accuracy on task {} after training on task {}) "
                "is not set",
                trained, evaluated, evaluated, trained);
  return values_[size_t(trained * tasks_ + evaluated)];
}

int64_t AccuracyMatrix::rows_filled() const {
  int64_t k = 0;
  // The block grows by row k and column k together.
  while (k < tasks_) {
    for (int64_t i = 0; i <= k; ++i)
      if (!is_set(k, i) || !is_set(i, k)) return k;
    ++k;
  }
  return k;
}

StreamMetrics AccuracyMatrix::metrics_after(int64_t task) const {
  TURBINE_CHECK(task >= 0 && task < tasks_, "metrics after task {}: the stream has tasks 0..{}",
                task, tasks_ - 1);
  const size_t n = size_t(task) + 1;
  AccuracyRows r(n, std::vector<double>(n));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) r[i][j] = at(int64_t(i), int64_t(j));
  if (random_init_.empty()) return stream_metrics(r);
  return stream_metrics(r, std::span<const double>(random_init_).first(n));
}

StreamMetrics AccuracyMatrix::metrics() const {
  const int64_t filled = rows_filled();
  TURBINE_CHECK(filled > 0, "accuracy matrix: R[0][0] is not set, so no metrics yet");
  return metrics_after(filled - 1);
}

nlohmann::ordered_json AccuracyMatrix::to_json() const {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < tasks_; ++i) {
    nlohmann::ordered_json row = nlohmann::ordered_json::array();
    for (int64_t j = 0; j < tasks_; ++j)
      row.push_back(is_set(i, j) ? nlohmann::ordered_json(at(i, j)) : nullptr);
    rows.push_back(std::move(row));
  }
  nlohmann::ordered_json json = {{"tasks", tasks_}, {"accuracy", std::move(rows)}};
  if (!random_init_.empty()) json["random_init"] = random_init_;
  return json;
}

AccuracyMatrix AccuracyMatrix::from_json(const nlohmann::ordered_json& json) {
  TURBINE_CHECK(json.is_object() && json.contains("tasks") && json["tasks"].is_number_integer(),
                "accuracy matrix JSON: an object with an integer \"tasks\" expected, got {}",
                json.dump());
  std::vector<double> random_init;
  if (json.contains("random_init")) {
    TURBINE_CHECK(json["random_init"].is_array(),
                  "accuracy matrix JSON: \"random_init\" must be an array of numbers");
    for (const auto& v : json["random_init"]) {
      TURBINE_CHECK(v.is_number(), "accuracy matrix JSON: random_init holds {}, not a number",
                    v.dump());
      random_init.push_back(v.get<double>());
    }
  }
  AccuracyMatrix m(json["tasks"].get<int64_t>(), std::move(random_init));
  const auto& rows = json.contains("accuracy") ? json["accuracy"] : nlohmann::ordered_json();
  TURBINE_CHECK(rows.is_array() && int64_t(rows.size()) == m.tasks_,
                "accuracy matrix JSON: \"accuracy\" must hold {} rows", m.tasks_);
  for (int64_t i = 0; i < m.tasks_; ++i) {
    const auto& row = rows[size_t(i)];
    TURBINE_CHECK(row.is_array() && int64_t(row.size()) == m.tasks_,
                  "accuracy matrix JSON: row {} must hold {} values (null where unset)", i,
                  m.tasks_);
    for (int64_t j = 0; j < m.tasks_; ++j) {
      const auto& v = row[size_t(j)];
      if (v.is_null()) continue;
      TURBINE_CHECK(v.is_number(), "accuracy matrix JSON: R[{}][{}] holds {}, not a number", i, j,
                    v.dump());
      m.set(i, j, v.get<double>());
    }
  }
  return m;
}

}  // namespace turbine::cl
