// The arithmetic of cl-edge's regularization and replay strategies (issue
// 18), each as Avalanche (or Mammoth, for DER++) computes it, checked
// against PyTorch on fixed tensors (tools/make-golden-cl,
// tests/golden/cl_losses.h5).
//
//   A-GEM (Chaudhry et al. 2019, avalanche.training.plugins.AGEMPlugin):
//     g the current batch's gradient, r the memory batch's; when g.r < 0,
//     g <- g - (g.r / r.r) r. Then g.r >= 0 (up to rounding).
//   EWC, online (Schwarz et al. 2018, avalanche EWCPlugin mode "online"):
//     after a task, importance F = mean over the task's mini-batches of the
//     squared gradient of the batch's mean loss; online, F <- decay x F_old
//     + F_new; the anchor is the weights at the task's end. While learning
//     a later task the loss adds lambda x sum F (w - anchor)^2 (Avalanche
//     writes no 1/2), whose gradient is 2 lambda F (w - anchor).
//   LwF (Li & Hoiem 2017, avalanche LwFPlugin): the model's outputs and the
//     previous model's on the current batch, restricted to the classes seen
//     before the current task (the active units), both divided by the
//     temperature T: loss = alpha x KL(softmax(prev/T) || softmax(out/T))
//     averaged over the batch (torch's kl_div, reduction "batchmean").
//   DER++ (Buzzega et al. 2020, Mammoth's derpp.py): the memory keeps each
//     sample's logits when it was stored; loss = CE(current) + alpha x
//     mean((out(x1) - stored_logits(x1))^2) + beta x CE(out(x2), y2), x1 and
//     x2 two independent memory batches.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::cl {

// A-GEM's projection of `grad` (in place) against `reference`. Returns
// whether it projected (g.r < 0). Dot products are summed in double. A
// zero reference leaves `grad` as it is.
bool agem_project(std::span<float> grad, std::span<const float> reference);

// Online EWC's state over the flat parameters.
class EwcState {
 public:
  // decay: the online mode's decay of the old importance (Avalanche's
  // decay_factor); lambda: the penalty's weight (ewc_lambda).
  EwcState(int64_t numel, double lambda, double decay);
  // Adds one mini-batch's gradient (of its mean loss) to the task's
  // importance being computed.
  void accumulate(std::span<const float> grad);
  // Ends the task: F <- decay x F + (sum of squares / mini-batches), the
  // anchor <- `weights`. Needs at least one accumulate() since the last.
  void finish_task(std::span<const float> weights);
  bool active() const { return tasks_ > 0; }  // a task finished: the penalty applies
  // lambda x sum F (w - anchor)^2 (0 before the first task ends), summed in double.
  double penalty(std::span<const float> weights) const;
  // grad += 2 lambda F (w - anchor); nothing before the first task ends.
  void add_penalty_gradient(std::span<const float> weights, std::span<float> grad) const;

  const std::vector<float>& importance() const { return importance_; }
  const std::vector<float>& anchor() const { return anchor_; }
  int64_t tasks() const { return tasks_; }
  // For a checkpoint: importance, anchor, tasks (no batch in progress).
  void restore(std::vector<float> importance, std::vector<float> anchor, int64_t tasks);

 private:
  double lambda_, decay_;
  std::vector<float> importance_, anchor_;
  std::vector<double> batch_sum_;  // sum of squared gradients of the task so far
  int64_t batches_ = 0, tasks_ = 0;
};

// LwF's distillation term (times alpha is the caller's): logits `out` (N, C)
// recorded for backward, `previous` (N, C) the old model's (no gradient),
// `active` the columns that take part (the classes seen before; all when
// empty), temperature T > 0. Returns a (1) tensor with its gradient to `out`.
Tensor lwf_distillation(const Tensor& out, const Tensor& previous, std::span<const int32_t> active,
                        double temperature);

// Mean squared error over all elements of `out` (N, C, recorded) against
// `target` (N, C, no gradient): DER's logit matching. A (1) tensor.
Tensor mse(const Tensor& out, const Tensor& target);

}  // namespace turbine::cl
