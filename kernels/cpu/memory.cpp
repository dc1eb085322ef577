// CPU memory: 64-byte aligned allocations with a cache of freed large
// blocks, copies, fills and dtype casts.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"

namespace turbine::kernels {

namespace {

// Training allocates the same activation sizes every step. Large blocks come
// from mmap and cost a page fault per 4 KiB on first touch, so freed blocks
// of 256 KiB and more are kept by size and handed out again (up to a cap).
class BlockCache {
 public:
  static constexpr size_t kMinBytes = 256 << 10;
  static constexpr size_t kMaxCachedBytes = size_t(4) << 30;

  static size_t rounded(size_t bytes) {
    if (bytes < kMinBytes) return bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    return (bytes + 4095) / 4096 * 4096;
  }
  void* take(size_t size) {
    if (size < kMinBytes) return nullptr;
    std::lock_guard lock(mutex_);
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* ptr = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    return ptr;
  }
  bool give(void* ptr, size_t size) {
    if (size < kMinBytes) return false;
    std::lock_guard lock(mutex_);
    if (cached_ + size > kMaxCachedBytes) return false;
    free_[size].push_back(ptr);
    cached_ += size;
    return true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* ptr : blocks) std::free(ptr);
    free_.clear();
    cached_ = 0;
  }
  ~BlockCache() { release(); }

 private:
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

BlockCache& block_cache() {
  static BlockCache cache;
  return cache;
}

}  // namespace

void* CpuBackend::allocate(size_t bytes) {
  const size_t size = BlockCache::rounded(bytes);
  if (void* cached = block_cache().take(size)) return cached;
  void* ptr = std::aligned_alloc(64, size);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}

void CpuBackend::deallocate(void* ptr, size_t bytes) {
  if (!block_cache().give(ptr, BlockCache::rounded(bytes))) std::free(ptr);
}

void CpuBackend::release_cached() {
  block_cache().release();
#ifdef __GLIBC__
  malloc_trim(0);  // freed heap blocks too (glibc keeps blocks below its mmap threshold)
#endif
}

int64_t CpuBackend::available_bytes() const {
  // MemAvailable: what the kernel can give without swapping.
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

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

bool CpuBackend::unscale_and_check(float* x, size_t n, float alpha) {
  bool finite = true;
#pragma omp parallel for simd schedule(static) reduction(&& : finite) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    finite = finite && std::isfinite(x[i]);
    x[i] *= alpha;
  }
  return finite;
}

const char* math_mode_name(MathMode mode) {
  switch (mode) {
    case MathMode::bf16: return "bf16";
    case MathMode::f16: return "f16";
    default: return "f32";
  }
}

// The defaults: the CPU's (host memory is the backend's own; copies are done
// when they return).
void* Backend::allocate_host(size_t bytes) {
  return ::operator new(std::max<size_t>(bytes, 1), std::align_val_t(64));
}
void Backend::deallocate_host(void* ptr, size_t) { ::operator delete(ptr, std::align_val_t(64)); }
void Backend::copy_from_host_async(void* dst, const void* host_src, size_t bytes) {
  copy_from_host(dst, host_src, bytes);
}
void Backend::copy_to_host_async(void* host_dst, const void* src, size_t bytes) {
  copy_to_host(host_dst, src, bytes);
}

const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::bf16: return "bf16";
    case WeightType::f16: return "f16";
    default: return "i8";
  }
}

#ifndef TURBINE_HAVE_CUDA
int cuda_device_count() { return 0; }
std::string cuda_device_uuid(int device) {
  TURBINE_FAIL("cuda_device_uuid({}): this build has no CUDA backend", device);
}
#endif

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace turbine::kernels
