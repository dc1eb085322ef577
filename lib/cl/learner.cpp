// The learner of learner.hpp.
#include "cl/learner.hpp"

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "train/classify.hpp"

namespace turbine::cl {

Learner::Learner(const Stream& stream, const LearnerConfig& config)
    : stream_(stream), config_(config) {
  nn::ParameterList all;
  if (stream.text()) {
    bloom_ = std::make_unique<nn::Bloom>(config_.bloom, config_.seed, config_.device);
    all = bloom_->parameters();
    for (const nn::Parameter& p : all) parameter_numel_ += p.tensor.numel();
  } else {
    config_.vision.seed = config_.seed;
    vision_ = std::make_unique<nn::ImageClassifier>(config_.vision, config_.device);
    all = vision_->parameters();
    for (const nn::Parameter& p : all) parameter_numel_ += p.tensor.numel();
    const nn::ParameterList buffers = vision_->buffers();
    all.insert(all.end(), buffers.begin(), buffers.end());
  }
  flat_ = std::make_unique<optim::FlatParameters>(all);
  state_list_ = all;  // relocated into the flat buffer: the handles see it
}

Learner::~Learner() = default;

std::unique_ptr<Learner> Learner::copy() const {
  auto other = std::make_unique<Learner>(stream_, config_);
  other->set_weights(weights());
  return other;
}

Tensor Learner::logits(const Batch& batch, bool training, uint64_t step) {
  Tensor out;
  if (bloom_) {
    bloom_->set_training(training);
    bloom_->set_dropout_step(step);
    const Tensor l = bloom_->logits(batch.inputs);
    out = ag::reshape(l, {l.dim(0) * l.dim(1), l.dim(2)});
  } else {
    out = vision_->forward(batch.inputs, training, step);
  }
  if (batch.mask.defined()) out = ag::add(out, batch.mask);
  return out;
}

std::vector<float> Learner::gradient() const {
  return flat_->grads().narrow(0, 0, parameter_numel_).to(Device::cpu()).to_vector<float>();
}

void Learner::set_gradient(std::span<const float> grad) {
  TURBINE_CHECK(int64_t(grad.size()) == parameter_numel_, "learner: a gradient of {}, not {}",
                grad.size(), parameter_numel_);
  const Tensor host = Tensor::from_vector<float>({parameter_numel_}, grad);
  flat_->grads().narrow(0, 0, parameter_numel_).copy_from(host.to(config_.device));
}

void Learner::step() {
  std::vector<float> w = parameters();
  const std::vector<float> g = gradient();
  if (velocity_.empty()) velocity_.assign(g.size(), 0.0f);
  const auto lr = float(config_.lr), momentum = float(config_.momentum);
  for (size_t i = 0; i < g.size(); ++i) {
    velocity_[i] = momentum * velocity_[i] + g[i];
    w[i] -= lr * velocity_[i];
  }
  const Tensor host = Tensor::from_vector<float>({parameter_numel_}, w);
  flat_->values().narrow(0, 0, parameter_numel_).copy_from(host.to(config_.device));
}

void Learner::reset_optimizer() {
  velocity_.clear();
}

void Learner::set_velocity(std::vector<float> velocity) {
  TURBINE_CHECK(velocity.empty() || int64_t(velocity.size()) == parameter_numel_,
                "learner: a momentum of {}, not {}", velocity.size(), parameter_numel_);
  velocity_ = std::move(velocity);
}

std::vector<float> Learner::weights() const {
  return flat_->values().narrow(0, 0, flat_->numel()).to(Device::cpu()).to_vector<float>();
}

std::vector<float> Learner::parameters() const {
  return flat_->values().narrow(0, 0, parameter_numel_).to(Device::cpu()).to_vector<float>();
}

void Learner::set_weights(std::span<const float> weights) {
  TURBINE_CHECK(int64_t(weights.size()) == flat_->numel(), "learner: {} weights, not {}",
                weights.size(), flat_->numel());
  const Tensor host = Tensor::from_vector<float>({flat_->numel()}, weights);
  flat_->values().narrow(0, 0, flat_->numel()).copy_from(host.to(config_.device));
}

TaskAccuracy Learner::evaluate(int64_t task) {
  autograd::NoGradGuard no_grad;
  const std::vector<int64_t>& rows = stream_.test_rows(task);
  // A text window's logits are seq_len x vocab floats: a few at a time.
  const int64_t step =
      stream_.text() ? std::min<int64_t>(config_.eval_batch, 8) : config_.eval_batch;
  double loss = 0, correct = 0, count = 0;
  for (size_t first = 0; first < rows.size(); first += size_t(step)) {
    const auto some =
        std::span<const int64_t>(rows).subspan(first, std::min(rows.size() - first, size_t(step)));
    const Batch b = stream_.test_batch(task, some, config_.device);
    const Tensor out = logits(b, false, 0);
    const auto n = double(b.targets.numel());
    loss += ag::cross_entropy(out, b.targets).to(Device::cpu()).item() * n;
    correct += double(train::count_correct(out, b.targets));
    count += n;
  }
  TaskAccuracy r;
  r.count = int64_t(count);
  r.accuracy = count > 0 ? correct / count : 0;
  r.loss = count > 0 ? loss / count : 0;
  return r;
}

}  // namespace turbine::cl
