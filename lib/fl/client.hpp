// A federated client's local training (fedsim, issue 17): a worker keeps
// ClientTrainers (a model of the task, its flat weight and gradient
// buffers; the task's data is shared) and reuses them for every client it
// runs, round after round: FedHC's persistent process with its model
// buffers kept. A client starts from the global weights, takes SGD steps
// (momentum, and FedProx's proximal term mu/2 ||w - w_global||^2) over its
// samples in a seeded order, and returns its new weights.
//
// Weights travel as one flat f32 vector: the model's parameters in
// parameters() order, then its buffers (BatchNorm's running statistics),
// which the clients' forward passes update and the server averages as
// Flower does with a state_dict.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "fl/task.hpp"
#include "optim/flat.hpp"

namespace turbine::fl {

struct LocalTraining {
  int64_t epochs = 1;     // passes over the client's samples
  int64_t max_steps = 0;  // > 0: stop after this many steps (FedHC's step budget)
  int64_t batch_size = 32;
  double lr = 0.05;
  double momentum = 0.0;     // SGD momentum, fresh for every client (a new optimizer per fit)
  double proximal_mu = 0.0;  // FedProx; 0: FedAvg's plain local SGD
  // > 0: before training, the received global model is evaluated on up to
  // this many of the client's samples (Flower's federated evaluation; the
  // loss is also QFedAvg's F_k(w^t)).
  int64_t eval_samples = 0;
};

struct LocalResult {
  std::vector<float> weights;  // the flat weights after training
  int64_t num_examples = 0;    // the client's samples (FedAvg's weight)
  int64_t steps = 0;
  double train_loss = 0;  // mean loss over the steps taken
  double seconds = 0;     // wall time of the training
  // The global model on the client's own samples before training
  // (eval_count 0 if not asked for).
  double eval_loss = 0, eval_accuracy = 0;
  int64_t eval_count = 0;
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t count = 0;
};

class ClientTrainer {
 public:
  ClientTrainer(const Task& task, Device device);
  // Elements of the flat weights (parameters, then buffers).
  int64_t numel() const { return flat_->numel(); }
  int64_t parameter_numel() const { return parameter_numel_; }
  // The model's current flat weights (its initialization before any client).
  std::vector<float> weights() const;
  void set_weights(std::span<const float> weights);
  // Trains from `global` on the task's training samples `indices`; the
  // order of each epoch is shuffled by `seed`. `after_step`, if given, runs
  // after every step (a budget's pacing).
  LocalResult train(std::span<const float> global, std::span<const int64_t> indices,
                    const LocalTraining& local, uint64_t seed,
                    const std::function<void()>& after_step = {});
  // Bytes the trainer holds between clients (flat weights and gradients):
  // what a device would hold before a client's first step.
  int64_t resident_bytes() const;
  // Mean loss and accuracy of `weights` on samples `rows` of the task's
  // training or test split; on the whole test split.
  EvalResult evaluate(std::span<const float> weights, bool test_split,
                      std::span<const int64_t> rows, int64_t batch_size);
  EvalResult evaluate_test(std::span<const float> weights, int64_t batch_size);
  TaskModel& model() { return *model_; }
  const Task& task() const { return task_; }

 private:
  const Task& task_;
  std::unique_ptr<TaskModel> model_;
  Device device_;
  int64_t parameter_numel_ = 0;
  std::unique_ptr<optim::FlatParameters> flat_;
};

}  // namespace turbine::fl
