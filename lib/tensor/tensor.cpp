// Tensor storage, views, copies and memory accounting.
#include "tensor/tensor.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <utility>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine {

// ---- devices and memory accounting ------------------------------------------

namespace {
constexpr int kMaxDevices = 17;  // cpu + 16 GPUs

int device_slot(Device device) {
  const int slot = device.is_cpu() ? 0 : 1 + device.index;
  TURBINE_CHECK(slot < kMaxDevices, "device {} is out of range", device.str());
  return slot;
}

std::array<kernels::Backend*, kMaxDevices> g_scoped_backends{};
}  // namespace

kernels::Backend& backend_for(Device device) {
  if (kernels::Backend* scoped = g_scoped_backends[device_slot(device)]) return *scoped;
  if (device.is_cpu()) return kernels::cpu_backend();
#ifdef TURBINE_HAVE_CUDA
  return kernels::cuda_backend(device.index);
#else
  TURBINE_FAIL(
      "device {} requested, but this build of Turbine has no CUDA backend: use device cpu, or "
      "rebuild with nvcc available (meson setup -Dcuda=enabled)",
      device.str());
#endif
}

ScopedBackend::ScopedBackend(Device device, kernels::Backend& backend) : device_(device) {
  kernels::Backend*& slot = g_scoped_backends[device_slot(device)];
  TURBINE_CHECK(slot == nullptr, "device {} already has a scoped backend", device.str());
  slot = &backend;
}

ScopedBackend::~ScopedBackend() {
  g_scoped_backends[device_slot(device_)] = nullptr;
}

namespace {
struct Counters {
  std::atomic<int64_t> current{0}, peak{0}, allocations{0};
};
std::array<Counters, kMaxDevices> g_counters;

Counters& counters(Device device) {
  return g_counters[device_slot(device)];
}
}  // namespace

MemoryStats memory_stats(Device device) {
  Counters& c = counters(device);
  return {c.current.load(), c.peak.load(), c.allocations.load()};
}

void reset_peak_memory(Device device) {
  Counters& c = counters(device);
  c.peak.store(c.current.load());
}

namespace {
thread_local std::shared_ptr<MemoryBudget> t_budget;
}  // namespace

MemoryBudget::MemoryBudget(int64_t cap_bytes, std::string owner)
    : cap_(cap_bytes), owner_(std::move(owner)) {
  TURBINE_CHECK(cap_bytes > 0, "{}: memory cap must be positive, got {} bytes", owner_, cap_bytes);
}

void MemoryBudget::charge(int64_t bytes) {
  const int64_t now = current_.fetch_add(bytes) + bytes;
  if (now > cap_) {
    current_.fetch_sub(bytes);
    throw OutOfMemory(fmt::format(
        "{}: out of memory: {:.1f} MiB more needed with {:.1f} MiB in use, over its cap of "
        "{:.1f} MiB",
        owner_, double(bytes) / (1 << 20), double(now - bytes) / (1 << 20),
        double(cap_) / (1 << 20)));
  }
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void MemoryBudget::refund(int64_t bytes) {
  current_.fetch_sub(bytes);
}

ScopedMemoryBudget::ScopedMemoryBudget(std::shared_ptr<MemoryBudget> budget)
    : previous_(std::exchange(t_budget, std::move(budget))) {}

ScopedMemoryBudget::~ScopedMemoryBudget() {
  t_budget = std::move(previous_);
}

Storage::Storage(Device device, size_t bytes) : device_(device), bytes_(bytes) {
  if (t_budget) {
    t_budget->charge(int64_t(bytes));
    budget_ = t_budget;
  }
  try {
    data_ = backend_for(device).allocate(bytes);
  } catch (...) {
    if (budget_) budget_->refund(int64_t(bytes));
    throw;
  }
  Counters& c = counters(device);
  const int64_t now = c.current.fetch_add(static_cast<int64_t>(bytes)) + int64_t(bytes);
  int64_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {
  }
  c.allocations.fetch_add(1);
}

Storage::~Storage() {
  backend_for(device_).deallocate(data_, bytes_);
  counters(device_).current.fetch_sub(static_cast<int64_t>(bytes_));
  if (budget_) budget_->refund(int64_t(bytes_));
}

// ---- shapes -------------------------------------------------------------------

std::string shape_str(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}
}  // namespace

// ---- tensor -------------------------------------------------------------------

struct Tensor::Impl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  std::vector<int64_t> strides;
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;
};

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    TURBINE_CHECK(d >= 0, "Tensor::empty: negative dimension in shape {}", shape_str(shape));
  Tensor t;
  t.impl_ = std::make_shared<Impl>();
  t.impl_->storage = std::make_shared<Storage>(device, shape_numel(shape) * dtype_size(dtype));
  t.impl_->shape = shape;
  t.impl_->strides = contiguous_strides(shape);
  t.impl_->dtype = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (dtype == DType::f32) {
    t.fill(0.0f);
  } else {
    std::vector<uint8_t> zero(t.nbytes(), 0);
    backend_for(device).copy_from_host(t.raw_data(), zero.data(), zero.size());
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::f32, device);
  t.fill(value);
  return t;
}

template <typename T>
Tensor Tensor::from_vector(const Shape& shape, std::span<const T> values, Device device) {
  TURBINE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
                "Tensor::from_vector: {} values do not fill shape {}", values.size(),
                shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>(), device);
  backend_for(device).copy_from_host(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from_vector<float>(const Shape&, std::span<const float>, Device);
template Tensor Tensor::from_vector<int32_t>(const Shape&, std::span<const int32_t>, Device);
template Tensor Tensor::from_vector<int64_t>(const Shape&, std::span<const int64_t>, Device);
template Tensor Tensor::from_vector<uint8_t>(const Shape&, std::span<const uint8_t>, Device);
template Tensor Tensor::from_vector<uint16_t>(const Shape&, std::span<const uint16_t>, Device);
template Tensor Tensor::from_vector<int8_t>(const Shape&, std::span<const int8_t>, Device);

Tensor Tensor::randn(const Shape& shape, uint64_t seed, uint64_t stream, float stddev,
                     Device device) {
  std::vector<float> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = stddev * philox_normal(seed, stream, 0, i);
  return from_vector<float>(shape, values, device);
}

const Shape& Tensor::shape() const {
  TURBINE_CHECK(defined(), "use of an undefined tensor");
  return impl_->shape;
}
const std::vector<int64_t>& Tensor::strides() const {
  return impl_->strides;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int index = i < 0 ? i + n : i;
  TURBINE_CHECK(index >= 0 && index < n, "dimension {} out of range for tensor {}", i, str());
  return impl_->shape[index];
}

int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  return impl_->dtype;
}
Device Tensor::device() const {
  return impl_->storage->device();
}

bool Tensor::is_contiguous() const {
  return impl_->strides == contiguous_strides(impl_->shape);
}

std::string Tensor::str() const {
  if (!defined()) return "undefined tensor";
  return fmt::format("{}{} on {}", dtype_name(dtype()), shape_str(shape()), device().str());
}

template <typename T>
T* Tensor::data() const {
  TURBINE_CHECK(defined(), "data() of an undefined tensor");
  TURBINE_CHECK(impl_->dtype == dtype_of<T>(), "data<{}>() of a tensor {}",
                dtype_name(dtype_of<T>()), str());
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;
template uint16_t* Tensor::data<uint16_t>() const;
template int8_t* Tensor::data<int8_t>() const;

void* Tensor::raw_data() const {
  return static_cast<uint8_t*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

Tensor Tensor::view(const Shape& new_shape) const {
  TURBINE_CHECK(is_contiguous(), "view of a non-contiguous tensor {}: call contiguous() first",
                str());
  Shape shape = new_shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      TURBINE_CHECK(infer < 0, "view: more than one -1 in {}", shape_str(new_shape));
      infer = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0 && known > 0) shape[infer] = numel() / known;
  TURBINE_CHECK(shape_numel(shape) == numel(), "view: cannot view {} as {}", str(),
                shape_str(new_shape));
  Tensor t;
  t.impl_ = std::make_shared<Impl>(*impl_);
  t.impl_->autograd.reset();
  t.impl_->shape = shape;
  t.impl_->strides = contiguous_strides(shape);
  return t;
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  const int axis = d < 0 ? d + ndim() : d;
  TURBINE_CHECK(axis >= 0 && axis < ndim(), "narrow: dimension {} out of range for {}", d, str());
  TURBINE_CHECK(start >= 0 && length >= 0 && start + length <= impl_->shape[axis],
                "narrow: range [{}, {}) out of bounds for dimension {} of {}", start,
                start + length, axis, str());
  Tensor t;
  t.impl_ = std::make_shared<Impl>(*impl_);
  t.impl_->autograd.reset();
  t.impl_->offset += start * impl_->strides[axis];
  t.impl_->shape[axis] = length;
  return t;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape(), dtype(), device());
  const int n = ndim();
  if (numel() == 0) return out;
  // f32 views whose last dim is contiguous (a narrow of any dim, a slice of a
  // preallocated KV cache) are copied as strided blocks, one kernel per block
  // rather than one copy per run: each block is `rows` runs of `cols`
  // contiguous values a fixed stride apart, where the trailing dims that are
  // contiguous together make the run and the dims before them that step
  // uniformly make the rows; any dims before those index the blocks.
  if (dtype() == DType::f32 && n >= 2 && impl_->strides[n - 1] == 1) {
    const auto& shape_ = impl_->shape;
    const auto& stride = impl_->strides;
    const auto together = [&](int i) { return stride[i] == stride[i + 1] * shape_[i + 1]; };
    int run_first = n - 1;  // dims [run_first, n) are one contiguous run
    while (run_first > 0 && together(run_first - 1)) --run_first;
    int rows_first = run_first - 1;  // dims [rows_first, run_first) step uniformly
    while (rows_first > 0 && together(rows_first - 1)) --rows_first;
    int64_t cols = 1, rows = 1, blocks = 1;
    for (int i = run_first; i < n; ++i) cols *= shape_[i];
    for (int i = rows_first; i < run_first; ++i) rows *= shape_[i];
    for (int i = 0; i < rows_first; ++i) blocks *= shape_[i];
    const float* base = static_cast<const float*>(impl_->storage->data()) + impl_->offset;
    float* dst = out.data<float>();
    kernels::Backend& backend = backend_for(device());
    std::vector<int64_t> index(rows_first, 0);
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t src = 0;
      for (int i = 0; i < rows_first; ++i) src += index[i] * stride[i];
      backend.copy_rows_strided(base + src, stride[run_first - 1], dst + b * rows * cols, cols,
                                rows, cols, false);
      for (int i = rows_first - 1; i >= 0; --i) {
        if (++index[i] < shape_[i]) break;
        index[i] = 0;
      }
    }
    return out;
  }
  // Otherwise run by run (or element by element when the last dim is strided).
  const size_t elem = dtype_size(dtype());
  const int64_t run = n == 0 ? 1 : impl_->shape[n - 1];
  const bool last_contiguous = n == 0 || impl_->strides[n - 1] == 1;
  std::vector<int64_t> index(n, 0);
  kernels::Backend& backend = backend_for(device());
  auto* src_base = static_cast<uint8_t*>(impl_->storage->data());
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  const int64_t total = numel();
  for (int64_t done = 0; done < total;) {
    int64_t src = impl_->offset;
    for (int i = 0; i < n; ++i) src += index[i] * impl_->strides[i];
    if (last_contiguous) {
      backend.copy(dst + done * elem, src_base + src * elem, run * elem);
      done += run;
      index[n - 1] = run - 1;
    } else {
      backend.copy(dst + done * elem, src_base + src * elem, elem);
      done += 1;
    }
    for (int i = n - 1; i >= 0; --i) {
      if (++index[i] < impl_->shape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  const Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), device);
  // Host <-> device directly; only device to another device goes through the host.
  if (src.device().is_cpu()) {
    backend_for(device).copy_from_host(out.raw_data(), src.raw_data(), nbytes());
  } else if (device.is_cpu()) {
    backend_for(src.device()).copy_to_host(out.raw_data(), src.raw_data(), nbytes());
  } else {
    std::vector<uint8_t> host(nbytes());
    backend_for(src.device()).copy_to_host(host.data(), src.raw_data(), host.size());
    backend_for(device).copy_from_host(out.raw_data(), host.data(), host.size());
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_from(*this);
  return out;
}

void Tensor::copy_from(const Tensor& src_any) {
  TURBINE_CHECK(src_any.shape() == shape(), "copy_from: shape {} into {}",
                shape_str(src_any.shape()), str());
  TURBINE_CHECK(is_contiguous(), "copy_from into a non-contiguous tensor {}", str());
  const Tensor src = src_any.to(device()).contiguous();
  kernels::Backend& backend = backend_for(device());
  const size_t n = static_cast<size_t>(numel());
  if (src.dtype() == dtype()) {
    backend.copy(raw_data(), src.raw_data(), nbytes());
    return;
  }
  auto* u16_dst = static_cast<uint16_t*>(raw_data());
  auto* u16_src = static_cast<const uint16_t*>(src.raw_data());
  if (src.dtype() == DType::f32 && dtype() == DType::bf16)
    return backend.convert_f32_to_bf16(src.data<float>(), u16_dst, n);
  if (src.dtype() == DType::bf16 && dtype() == DType::f32)
    return backend.convert_bf16_to_f32(u16_src, data<float>(), n);
  if (src.dtype() == DType::f32 && dtype() == DType::f16)
    return backend.convert_f32_to_f16(src.data<float>(), u16_dst, n);
  if (src.dtype() == DType::f16 && dtype() == DType::f32)
    return backend.convert_f16_to_f32(u16_src, data<float>(), n);
  // Integer conversions run on the host: they are for data, not hot paths.
  if (!device().is_cpu()) {
    Tensor host = empty(shape(), dtype(), Device::cpu());
    host.copy_from(src.to(Device::cpu()));
    backend.copy_from_host(raw_data(), host.raw_data(), nbytes());
    return;
  }
  auto read = [&](size_t i) -> int64_t {
    switch (src.dtype()) {
      case DType::i32:
        return src.data<int32_t>()[i];
      case DType::i64:
        return src.data<int64_t>()[i];
      case DType::u8:
        return src.data<uint8_t>()[i];
      case DType::u16:
        return src.data<uint16_t>()[i];
      case DType::i8:
        return src.data<int8_t>()[i];
      default:
        TURBINE_FAIL("copy_from: cannot convert {} to {}", src.str(), str());
    }
  };
  for (size_t i = 0; i < n; ++i) {
    const int64_t v = read(i);
    switch (dtype()) {
      case DType::i32:
        data<int32_t>()[i] = static_cast<int32_t>(v);
        break;
      case DType::i64:
        data<int64_t>()[i] = v;
        break;
      case DType::u8:
        data<uint8_t>()[i] = static_cast<uint8_t>(v);
        break;
      case DType::u16:
        data<uint16_t>()[i] = static_cast<uint16_t>(v);
        break;
      case DType::i8:
        data<int8_t>()[i] = static_cast<int8_t>(v);
        break;
      case DType::f32:
        data<float>()[i] = static_cast<float>(v);
        break;
      default:
        TURBINE_FAIL("copy_from: cannot convert {} to {}", src.str(), str());
    }
  }
}

void Tensor::fill(float value) {
  TURBINE_CHECK(dtype() == DType::f32 && is_contiguous(), "fill of {} (needs contiguous f32)",
                str());
  backend_for(device()).fill(data<float>(), numel(), value);
}

void Tensor::relocate_to(const Tensor& destination) {
  TURBINE_CHECK(destination.shape() == shape() && destination.dtype() == dtype() &&
                    destination.is_contiguous(),
                "relocate_to: {} cannot move into {}", str(), destination.str());
  const_cast<Tensor&>(destination).copy_from(*this);
  impl_->storage = destination.impl_->storage;
  impl_->offset = destination.impl_->offset;
  impl_->strides = destination.impl_->strides;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  TURBINE_CHECK(dtype() == dtype_of<T>(), "to_vector<{}> of {}", dtype_name(dtype_of<T>()), str());
  const Tensor src = contiguous();
  std::vector<T> out(numel());
  backend_for(device()).copy_to_host(out.data(), src.raw_data(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<uint16_t> Tensor::to_vector<uint16_t>() const;
template std::vector<int8_t> Tensor::to_vector<int8_t>() const;

float Tensor::item() const {
  TURBINE_CHECK(numel() == 1, "item() of {} (needs exactly one element)", str());
  return to_vector<float>()[0];
}

const std::shared_ptr<AutogradMeta>& Tensor::autograd_meta() const {
  TURBINE_CHECK(defined(), "autograd state of an undefined tensor");
  if (!impl_->autograd) impl_->autograd = std::make_shared<AutogradMeta>();
  return impl_->autograd;
}

bool Tensor::requires_grad() const {
  return defined() && impl_->autograd && impl_->autograd->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool enabled) {
  // Gradients have their tensor's float type (16-bit activations get 16-bit ones).
  TURBINE_CHECK(
      !enabled || dtype() == DType::f32 || dtype() == DType::bf16 || dtype() == DType::f16,
      "requires_grad on {} (gradients are f32, bf16 or f16)", str());
  autograd_meta()->requires_grad = enabled;
  return *this;
}

Tensor Tensor::grad() const {
  return impl_->autograd ? impl_->autograd->grad : Tensor();
}
void Tensor::set_grad(const Tensor& grad) const {
  autograd_meta()->grad = grad;
}

}  // namespace turbine
