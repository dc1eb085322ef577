// Activation checkpointing: a recorded node whose backward recomputes.
#include "autograd/checkpoint.hpp"

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::autograd {

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& segment, const Tensor& x,
                  const std::vector<const Tensor*>& weights, const CheckpointOptions& options) {
  std::vector<const Tensor*> inputs{&x};
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  if (!needs_grad(inputs)) return segment(x);
  Tensor y;
  {
    NoGradGuard no_record;
    y = segment(x);
  }
  // A handle of its own on the output: the segment may return its input.
  y = y.view(y.shape());
  const Device device = x.device();
  const Tensor saved = options.offload_to_host && !device.is_cpu() ? x.to(Device::cpu()) : x;
  record(inputs, {&y}, [segment, saved, device](Node& n) {
    // The forward again, from a leaf copy of the input, recorded.
    Tensor input = saved.to(device);
    input = input.is_contiguous() ? input.view(input.shape()) : input.contiguous();
    input.set_requires_grad(true);
    EnableGradGuard record_again;
    const Tensor again = segment(input);
    TURBINE_CHECK(again.requires_grad(),
                  "activation checkpointing: the recomputed segment does not depend on its input "
                  "or weights");
    backward(again, n.grad_output(0));
    Tensor* slot = n.grad_input(0);
    if (slot && input.grad().defined()) {
      if (slot->defined())
        ops::scale_backward(input.grad(), 1.0f, slot);  // adds
      else
        *slot = input.grad();
    }
  });
  return y;
}

}  // namespace turbine::autograd
