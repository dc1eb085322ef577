// The strategies' arithmetic of losses.hpp.
#include "cl/losses.hpp"

#include <cmath>

#include "autograd/functions.hpp"
#include "core/error.hpp"

namespace turbine::cl {

bool agem_project(std::span<float> grad, std::span<const float> reference) {
  TURBINE_CHECK(grad.size() == reference.size(), "A-GEM: a gradient of {} and a reference of {}",
                grad.size(), reference.size());
  double dot = 0, ref_norm = 0;
  for (size_t i = 0; i < grad.size(); ++i) {
    dot += double(grad[i]) * double(reference[i]);
    ref_norm += double(reference[i]) * double(reference[i]);
  }
  if (!(dot < 0) || ref_norm == 0) return false;
  const double factor = dot / ref_norm;
  for (size_t i = 0; i < grad.size(); ++i)
    grad[i] = float(double(grad[i]) - factor * double(reference[i]));
  return true;
}

EwcState::EwcState(int64_t numel, double lambda, double decay)
    : lambda_(lambda), decay_(decay), batch_sum_(size_t(numel), 0.0) {
  TURBINE_CHECK(numel >= 1 && lambda >= 0 && decay >= 0 && decay <= 1,
                "EWC: {} weights, lambda {} (>= 0), decay {} (in [0, 1])", numel, lambda, decay);
}

void EwcState::accumulate(std::span<const float> grad) {
  TURBINE_CHECK(grad.size() == batch_sum_.size(), "EWC: a gradient of {} for {} weights",
                grad.size(), batch_sum_.size());
  for (size_t i = 0; i < grad.size(); ++i) batch_sum_[i] += double(grad[i]) * double(grad[i]);
  ++batches_;
}

void EwcState::finish_task(std::span<const float> weights) {
  TURBINE_CHECK(batches_ > 0, "EWC: a task ended without an importance batch");
  TURBINE_CHECK(weights.size() == batch_sum_.size(), "EWC: {} weights, expected {}", weights.size(),
                batch_sum_.size());
  if (importance_.empty()) importance_.assign(batch_sum_.size(), 0.0f);
  for (size_t i = 0; i < batch_sum_.size(); ++i) {
    importance_[i] = float(decay_ * double(importance_[i]) + batch_sum_[i] / double(batches_));
    batch_sum_[i] = 0;
  }
  anchor_.assign(weights.begin(), weights.end());
  batches_ = 0;
  ++tasks_;
}

double EwcState::penalty(std::span<const float> weights) const {
  if (!active()) return 0;
  TURBINE_CHECK(weights.size() == anchor_.size(), "EWC: {} weights, expected {}", weights.size(),
                anchor_.size());
  double sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double d = double(weights[i]) - double(anchor_[i]);
    sum += double(importance_[i]) * d * d;
  }
  return lambda_ * sum;
}

void EwcState::add_penalty_gradient(std::span<const float> weights, std::span<float> grad) const {
  if (!active()) return;
  TURBINE_CHECK(weights.size() == anchor_.size() && grad.size() == anchor_.size(),
                "EWC: {} weights and {} gradients, expected {}", weights.size(), grad.size(),
                anchor_.size());
  for (size_t i = 0; i < grad.size(); ++i)
    grad[i] = float(double(grad[i]) + 2.0 * lambda_ * double(importance_[i]) *
                                          (double(weights[i]) - double(anchor_[i])));
}

void EwcState::restore(std::vector<float> importance, std::vector<float> anchor, int64_t tasks) {
  TURBINE_CHECK(tasks >= 0 && (tasks == 0 || (importance.size() == batch_sum_.size() &&
                                              anchor.size() == batch_sum_.size())),
                "EWC: a checkpoint of {} importances and {} anchor weights after {} tasks, for "
                "a model of {} weights",
                importance.size(), anchor.size(), tasks, batch_sum_.size());
  importance_ = std::move(importance);
  anchor_ = std::move(anchor);
  tasks_ = tasks;
  batches_ = 0;
  std::fill(batch_sum_.begin(), batch_sum_.end(), 0.0);
}

Tensor lwf_distillation(const Tensor& out, const Tensor& previous, std::span<const int32_t> active,
                        double temperature) {
  TURBINE_CHECK(out.ndim() == 2 && previous.shape() == out.shape(),
                "LwF: outputs {} and previous outputs {} must be the same (N, C)",
                shape_str(out.shape()), shape_str(previous.shape()));
  TURBINE_CHECK(temperature > 0, "LwF: temperature {} must be positive", temperature);
  const int64_t n = out.dim(0), c = out.dim(1);
  std::vector<char> on(size_t(c), active.empty() ? 1 : 0);
  for (const int32_t k : active) {
    TURBINE_CHECK(k >= 0 && k < c, "LwF: active unit {} of {} outputs", k, c);
    on[size_t(k)] = 1;
  }
  // q = softmax(previous / T) over the active columns, in double on the
  // host; its entropy term sum q log q is a constant of the loss.
  const std::vector<float> prev = previous.contiguous().to(Device::cpu()).to_vector<float>();
  std::vector<float> q(size_t(n * c), 0.0f), mask(size_t(n * c), 0.0f);
  double entropy = 0;
  for (int64_t r = 0; r < n; ++r) {
    double top = -INFINITY, total = 0;
    for (int64_t k = 0; k < c; ++k)
      if (on[size_t(k)]) top = std::max(top, double(prev[size_t(r * c + k)]) / temperature);
    std::vector<double> e(size_t(c), 0.0);
    for (int64_t k = 0; k < c; ++k)
      if (on[size_t(k)])
        total += e[size_t(k)] = std::exp(double(prev[size_t(r * c + k)]) / temperature - top);
    for (int64_t k = 0; k < c; ++k) {
      if (!on[size_t(k)]) {
        mask[size_t(r * c + k)] = -1e30f;  // out of log_softmax's normalization
        continue;
      }
      const double qk = e[size_t(k)] / total;
      q[size_t(r * c + k)] = float(qk);
      if (qk > 0) entropy += qk * std::log(qk);
    }
  }
  const Device device = out.device();
  const Tensor log_p = ag::log_softmax(ag::add(ag::scale(out, float(1.0 / temperature)),
                                               Tensor::from_vector<float>({n, c}, mask, device)));
  const Tensor cross = ag::sum(ag::mul(log_p, Tensor::from_vector<float>({n, c}, q, device)));
  // KL = (sum q log q - sum q log p) / N.
  const Tensor constant = Tensor::full({1}, float(entropy / double(n)), device);
  return ag::add(ag::scale(cross, float(-1.0 / double(n))), constant);
}

Tensor mse(const Tensor& out, const Tensor& target) {
  TURBINE_CHECK(out.shape() == target.shape(), "MSE: outputs {} and targets {} differ in shape",
                shape_str(out.shape()), shape_str(target.shape()));
  const Tensor diff = ag::add(out, ag::scale(target, -1.0f));
  return ag::mean(ag::mul(diff, diff));
}

}  // namespace turbine::cl
