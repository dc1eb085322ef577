// Input checks shared by the ops, and gradient slot preparation.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

void check_f32(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    TURBINE_CHECK(t->dtype() == DType::f32, "{}: expected f32, got {}", op, t->str());
    TURBINE_CHECK(t->is_contiguous(), "{}: expected a contiguous tensor, got a strided view {}", op,
                  t->str());
  }
  check_same_device(op, tensors);
}

void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) first = t;
    TURBINE_CHECK(t->device() == first->device(), "{}: tensors on different devices: {} and {}", op,
                  first->str(), t->str());
  }
}

bool prepare_grad(Tensor* grad, const Shape& shape, Device device, DType dtype) {
  if (grad->defined()) {
    TURBINE_CHECK(grad->shape() == shape && grad->device() == device && grad->dtype() == dtype,
                  "gradient {} does not match its tensor's shape {} ({}) on {}", grad->str(),
                  shape_str(shape), dtype_name(dtype), device.str());
    return true;
  }
  *grad = Tensor::empty(shape, dtype, device);
  return false;
}

bool is_float_type(DType dtype) {
  return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16;
}

kernels::FloatType float_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return kernels::FloatType::f32;
    case DType::bf16:
      return kernels::FloatType::bf16;
    case DType::f16:
      return kernels::FloatType::f16;
    default:
      TURBINE_FAIL("{} is not a float type (f32, bf16 or f16)", dtype_name(dtype));
  }
}

DType dtype_of(kernels::FloatType type) {
  switch (type) {
    case kernels::FloatType::f32:
      return DType::f32;
    case kernels::FloatType::bf16:
      return DType::bf16;
    default:
      return DType::f16;
  }
}

kernels::FloatType check_activations(const char* op,
                                     std::initializer_list<const Tensor*> activations,
                                     std::initializer_list<const Tensor*> params) {
  const Tensor* first = nullptr;
  for (const Tensor* t : activations) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) first = t;
    TURBINE_CHECK(is_float_type(t->dtype()), "{}: expected f32, bf16 or f16 activations, got {}",
                  op, t->str());
    TURBINE_CHECK(t->dtype() == first->dtype(), "{}: activations of different types: {} and {}", op,
                  first->str(), t->str());
    TURBINE_CHECK(t->is_contiguous(), "{}: expected a contiguous tensor, got a strided view {}", op,
                  t->str());
  }
  check_f32(op, params);
  check_same_device(op, activations);
  if (first != nullptr)
    for (const Tensor* p : params)
      if (p != nullptr && p->defined())
        TURBINE_CHECK(p->device() == first->device(), "{}: tensors on different devices: {} and {}",
                      op, first->str(), p->str());
  return first ? float_type(first->dtype()) : kernels::FloatType::f32;
}

}  // namespace turbine::ops
