// Tensor: a shape, strides and dtype over shared storage on a device. Views
// (view, narrow) share storage; every allocation is counted per device
// (current and peak bytes). Autograd state (requires_grad, grad) lives in an
// AutogradMeta that the tape in lib/autograd reads and writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "tensor/dtype.hpp"

namespace turbine {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);

// The kernel backend for a device; a clear error if this build lacks it.
kernels::Backend& backend_for(Device device);

// Routes backend_for(device) to `backend` while this object lives: a wrapper
// that forwards to the device's own backend (kernels::ProfilingBackend). One
// at a time per device; not for use while other threads run ops.
class ScopedBackend {
 public:
  ScopedBackend(Device device, kernels::Backend& backend);
  ~ScopedBackend();
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  Device device_;
};

struct MemoryStats {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;
};
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);

// A memory cap for the allocations of one piece of work (a federated client
// running as a device with `cap` bytes): every Storage created on a thread
// while a ScopedMemoryBudget is active there is charged to it, on any device,
// and refunded when that Storage is freed, whichever thread frees it. An
// allocation that would pass the cap throws OutOfMemory before anything is
// allocated, as the device would fail.
class MemoryBudget {
 public:
  MemoryBudget(int64_t cap_bytes, std::string owner);
  // Counts `bytes` against the cap (throws OutOfMemory past it); refund gives them back.
  void charge(int64_t bytes);
  void refund(int64_t bytes);
  int64_t cap_bytes() const { return cap_; }
  int64_t current_bytes() const { return current_.load(); }
  int64_t peak_bytes() const { return peak_.load(); }

 private:
  int64_t cap_;
  std::string owner_;
  std::atomic<int64_t> current_{0}, peak_{0};
};

class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// Charges this thread's allocations to `budget` while it lives (nests: the
// inner one wins until it ends).
class ScopedMemoryBudget {
 public:
  explicit ScopedMemoryBudget(std::shared_ptr<MemoryBudget> budget);
  ~ScopedMemoryBudget();
  ScopedMemoryBudget(const ScopedMemoryBudget&) = delete;
  ScopedMemoryBudget& operator=(const ScopedMemoryBudget&) = delete;

 private:
  std::shared_ptr<MemoryBudget> previous_;
};

class Storage {
 public:
  Storage(Device device, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  size_t bytes_;
  void* data_;
  std::shared_ptr<MemoryBudget> budget_;  // charged for bytes_, if any
};

class Tensor;
struct AutogradMeta;

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  // Copies host values in; T's dtype becomes the tensor's.
  template <typename T>
  static Tensor from_vector(const Shape& shape, std::span<const T> values,
                            Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const Shape& shape, const std::vector<T>& values,
                            Device device = Device::cpu()) {
    return from_vector<T>(shape, std::span<const T>(values), device);
  }
  // Normal(0, stddev) from the counter-based RNG at (seed, stream).
  static Tensor randn(const Shape& shape, uint64_t seed, uint64_t stream, float stddev = 1.0f,
                      Device device = Device::cpu());

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const std::vector<int64_t>& strides() const;
  int ndim() const { return static_cast<int>(shape().size()); }
  int64_t dim(int i) const;  // negative counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const;
  std::string str() const;  // "f32[2, 3] on cpu"

  // Typed pointer to the first element; checks the dtype.
  template <typename T>
  T* data() const;
  void* raw_data() const;

  Tensor view(const Shape& shape) const;  // contiguous tensors only; one -1 is inferred
  Tensor narrow(int dim, int64_t start, int64_t length) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  void copy_from(const Tensor& src);  // same shape; converts dtype where supported
  void fill(float value);             // f32 only
  // Copies this tensor's values into `destination` (same shape and dtype, a
  // contiguous view) and from then on makes this tensor, and every handle
  // sharing it, refer to destination's memory. Used to lay parameters out in
  // one flat buffer that collectives and the optimizer treat as one array.
  void relocate_to(const Tensor& destination);

  template <typename T>
  std::vector<T> to_vector() const;
  float item() const;  // one-element f32 tensor

  // Autograd state (meaningful on f32 tensors).
  bool requires_grad() const;
  Tensor& set_requires_grad(bool enabled);
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<AutogradMeta>& autograd_meta() const;
  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

struct AutogradMeta {
  Tensor grad;
  bool requires_grad = false;
};

}  // namespace turbine
