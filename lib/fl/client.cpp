// The federated client's local training of client.hpp.
#include "fl/client.hpp"

#include <algorithm>
#include <chrono>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "ops/ops.hpp"
#include "train/classify.hpp"

namespace turbine::fl {

namespace {

// The model's parameters followed by its buffers, as one list to flatten.
nn::ParameterList all_weights(TaskModel& model) {
  nn::ParameterList list = model.parameters();
  const nn::ParameterList buffers = model.buffers();
  list.insert(list.end(), buffers.begin(), buffers.end());
  return list;
}

}  // namespace

ClientTrainer::ClientTrainer(const Task& task, Device device)
    : task_(task), model_(task.make_model(device)), device_(device) {
  for (const nn::Parameter& p : model_->parameters()) parameter_numel_ += p.tensor.numel();
  flat_ = std::make_unique<optim::FlatParameters>(all_weights(*model_));
}

std::vector<float> ClientTrainer::weights() const {
  return flat_->values().narrow(0, 0, flat_->numel()).to(Device::cpu()).to_vector<float>();
}

void ClientTrainer::set_weights(std::span<const float> weights) {
  TURBINE_CHECK(int64_t(weights.size()) == flat_->numel(),
                "client: {} weights for a model of {} ({})", weights.size(), flat_->numel(),
                task_.describe());
  const Tensor host = Tensor::from_vector<float>(
      {flat_->numel()}, std::vector<float>(weights.begin(), weights.end()));
  flat_->values().narrow(0, 0, flat_->numel()).copy_from(host.to(device_));
}

LocalResult ClientTrainer::train(std::span<const float> global, std::span<const int64_t> indices,
                                 const LocalTraining& local, uint64_t seed,
                                 const std::function<void()>& after_step) {
  TURBINE_CHECK(!indices.empty(), "client: no samples to train on");
  TURBINE_CHECK(local.batch_size >= 1 && local.lr > 0 && local.epochs >= 1,
                "client: batch_size {}, lr {} and epochs {} must be positive", local.batch_size,
                local.lr, local.epochs);
  const auto start = std::chrono::steady_clock::now();
  set_weights(global);
  LocalResult result;
  if (local.eval_samples > 0) {  // federated evaluation of the model received
    const auto first = indices.first(size_t(std::min(int64_t(indices.size()), local.eval_samples)));
    const train::EvalSums sums =
        model_->evaluate(false, first, std::max<int64_t>(local.batch_size, 64));
    result.eval_count = int64_t(sums.count);
    result.eval_loss = sums.loss / sums.count;
    result.eval_accuracy = sums.correct / sums.count;
    if (after_step) after_step();
  }
  const int64_t n = parameter_numel_;
  Tensor params = flat_->values().narrow(0, 0, n), grads = flat_->grads().narrow(0, 0, n);
  const Tensor anchor = params.clone();  // w_global, for FedProx
  Tensor velocity;
  const int64_t count = int64_t(indices.size());
  const int64_t per_epoch = (count + local.batch_size - 1) / local.batch_size;
  int64_t total = per_epoch * local.epochs;
  if (local.max_steps > 0) total = std::min(total, local.max_steps);
  std::vector<int64_t> order(indices.begin(), indices.end());
  for (int64_t step = 0; step < total; ++step) {
    const int64_t epoch = step / per_epoch, first = (step % per_epoch) * local.batch_size;
    if (first == 0) {  // a new epoch's order: Fisher-Yates by (seed, epoch)
      std::copy(indices.begin(), indices.end(), order.begin());
      for (int64_t i = count - 1; i > 0; --i) {
        const auto r = philox4x32(seed, 0xc11e + uint64_t(epoch), uint64_t(i));
        std::swap(order[size_t(i)], order[size_t(r[0] % uint64_t(i + 1))]);
      }
    }
    const std::span<const int64_t> rows(order.data() + first,
                                        size_t(std::min(local.batch_size, count - first)));
    flat_->zero_grads();
    const Tensor loss = model_->train_loss(rows, seed * 1000003 + uint64_t(step));
    autograd::backward(loss);
    result.train_loss += loss.to(Device::cpu()).item();
    // g += mu (w - w_global); v = momentum v + g; w -= lr v.
    Tensor g = grads;
    if (local.proximal_mu > 0)
      g = ops::add(g, ops::add(params, anchor, 1.0f, -1.0f), 1.0f, float(local.proximal_mu));
    if (local.momentum > 0) {
      velocity =
          velocity.defined() ? ops::add(velocity, g, float(local.momentum), 1.0f) : g.clone();
      g = velocity;
    }
    params.copy_from(ops::add(params, g, 1.0f, -float(local.lr)));
    if (after_step) after_step();
  }
  result.steps = total;
  result.train_loss /= double(total);
  result.num_examples = count;
  result.weights = weights();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

int64_t ClientTrainer::resident_bytes() const {
  return int64_t(flat_->values().nbytes() + flat_->grads().nbytes());
}

EvalResult ClientTrainer::evaluate_test(std::span<const float> weights, int64_t batch_size) {
  std::vector<int64_t> rows(static_cast<size_t>(task_.test_count()));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i);
  return evaluate(weights, true, rows, batch_size);
}

EvalResult ClientTrainer::evaluate(std::span<const float> weights, bool test_split,
                                   std::span<const int64_t> rows, int64_t batch_size) {
  set_weights(weights);
  const train::EvalSums sums = model_->evaluate(test_split, rows, batch_size);
  EvalResult r;
  r.count = int64_t(sums.count);
  r.loss = r.count > 0 ? sums.loss / sums.count : 0;
  r.accuracy = r.count > 0 ? sums.correct / sums.count : 0;
  return r;
}

}  // namespace turbine::fl
