// Input checks shared by the ops, and gradient slot preparation.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

void check_f32(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    TURBINE_CHECK(t->dtype() == DType::f32, "{}: expected f32, got {}", op, t->str());
    TURBINE_CHECK(t->is_contiguous(), "{}: expected a contiguous tensor, got a strided view {}",
                  op, t->str());
  }
  check_same_device(op, tensors);
}

void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) first = t;
    TURBINE_CHECK(t->device() == first->device(), "{}: tensors on different devices: {} and {}",
                  op, first->str(), t->str());
  }
}

bool prepare_grad(Tensor* grad, const Shape& shape, Device device) {
  if (grad->defined()) {
    TURBINE_CHECK(grad->shape() == shape && grad->device() == device,
                  "gradient {} does not match its tensor's shape {} on {}", grad->str(),
                  shape_str(shape), device.str());
    return true;
  }
  *grad = Tensor::empty(shape, DType::f32, device);
  return false;
}

}  // namespace turbine::ops
