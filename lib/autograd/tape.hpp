// Reverse-mode autograd as a tape: each differentiable call appends a node
// (its backward closure); backward(loss) seeds the loss gradient and runs the
// nodes the loss depends on in reverse, releasing each node's saved tensors
// once it has run.
// Gradients accumulate in the tensors' AutogradMeta::grad. The tape is per
// thread; NoGradGuard turns recording off (inference).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::autograd {

bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Turns recording on for a scope, also inside a backward pass (activation
// checkpointing re-runs a forward there, autograd/checkpoint.hpp).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

// True when recording is on and any input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<const Tensor*>& inputs);  // for a variable count (concat)

// What a node's backward receives: its outputs' gradients (undefined where an
// output did not reach the loss) and slots for its inputs' gradients.
class Node {
 public:
  using Backward = std::function<void(Node&)>;
  Node(std::vector<std::shared_ptr<AutogradMeta>> inputs,
       std::vector<std::shared_ptr<AutogradMeta>> outputs, Backward backward)
      : inputs_(std::move(inputs)), outputs_(std::move(outputs)), backward_(std::move(backward)) {}

  const Tensor& grad_output(size_t i) const { return outputs_[i]->grad; }
  // The gradient slot of input i, or nullptr when that input needs none.
  Tensor* grad_input(size_t i) const {
    return inputs_[i] && inputs_[i]->requires_grad ? &inputs_[i]->grad : nullptr;
  }
  bool any_output_grad() const;
  const std::vector<std::shared_ptr<AutogradMeta>>& inputs() const { return inputs_; }
  const std::vector<std::shared_ptr<AutogradMeta>>& outputs() const { return outputs_; }
  void run() { backward_(*this); }
  void release_outputs();  // frees non-leaf output gradients after the node ran

 private:
  std::vector<std::shared_ptr<AutogradMeta>> inputs_, outputs_;
  Backward backward_;
};

// Records a node. Outputs are marked as requiring grad (non-leaf).
void record(std::initializer_list<const Tensor*> inputs, std::initializer_list<Tensor*> outputs,
            Node::Backward backward);
void record(const std::vector<const Tensor*>& inputs, std::initializer_list<Tensor*> outputs,
            Node::Backward backward);

// Leaves whose gradients someone wants as soon as they are complete (data
// parallelism starts reducing a bucket while backward goes on): ready(i) is
// called once for leaf i, right after the last node that adds to its
// gradient has run (at the end for a leaf no node touches).
struct GradReadyWatch {
  std::vector<std::shared_ptr<AutogradMeta>> leaves;
  std::function<void(size_t)> ready;
};

// Runs backward from `loss` (seeded with ones, or with `seed`) through the
// recorded nodes on which it depends, and releases them; nodes of other
// graphs stay on the tape for their own backward (PPO records the actor's and
// the critic's losses in one forward and back-propagates them separately).
// Leaves shared by two losses sum both gradients; a non-leaf shared by two
// losses is refused at the second backward (its nodes are gone): add the
// losses first. Cost: one pass over the tape and hash sets of its tensors.
void backward(const Tensor& loss, const Tensor& seed = Tensor(),
              const GradReadyWatch* watch = nullptr);
// A backward may run inside a node's backward (activation checkpointing):
// the inner one runs only the nodes recorded since, which sit after every
// node of the outer pass on the tape, so the outer pass goes on unchanged.
// Drops the recorded nodes without running them (e.g. after an eval forward,
// or nodes that no loss reached: they stay on the tape until this call).
void clear_tape();
size_t tape_size();  // nodes recorded and not yet run or cleared

}  // namespace turbine::autograd
