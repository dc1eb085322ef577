// Activation checkpointing (Chen et al. 2016; DeepSpeed's
// activation_checkpointing): a segment of the forward runs without recording
// and keeps only its input; its backward runs the segment again with
// recording on and back-propagates through that fresh graph. Memory: one
// input per segment plus one segment's activations, for a second forward.
#pragma once

#include <functional>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::autograd {

struct CheckpointOptions {
  // Keep the saved input in host memory until backward (DeepSpeed's
  // cpu_checkpointing); the CPU keeps it where it is.
  bool offload_to_host = false;
};

// y = segment(x), recorded as one node with inputs x and `weights` (every
// leaf the segment reads that may need a gradient, so that gradient
// reductions waiting on them see the node). The segment must compute the
// same function when run again: its randomness must come from counters
// (dropout's seeds), not from state that moves. Without recording (no grad
// needed) it is just segment(x).
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& segment, const Tensor& x,
                  const std::vector<const Tensor*>& weights, const CheckpointOptions& options = {});

}  // namespace turbine::autograd
