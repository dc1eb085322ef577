// CPU memory: 64-byte aligned allocations, copies, fills and dtype casts.
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void* CpuBackend::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}

void CpuBackend::deallocate(void* ptr, size_t) { std::free(ptr); }

void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { copy(dst, src, bytes); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  copy(dst, src, bytes);
}

void CpuBackend::fill(float* x, size_t n, float value) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) x[i] = value;
}

namespace {
// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

void CpuBackend::convert_f32_to_bf16(const float* x, uint16_t* y, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}
void CpuBackend::convert_bf16_to_f32(const uint16_t* x, float* y, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}
void CpuBackend::convert_f32_to_f16(const float* x, uint16_t* y, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    const _Float16 h = static_cast<_Float16>(x[i]);
    std::memcpy(&y[i], &h, 2);
  }
}
void CpuBackend::convert_f16_to_f32(const uint16_t* x, float* y, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    _Float16 h;
    std::memcpy(&h, &x[i], 2);
    y[i] = static_cast<float>(h);
  }
}

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace turbine::kernels
