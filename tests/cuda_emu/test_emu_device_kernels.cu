// Kernels for test_emu_device.cpp, in CUDA C++ as kernels/cuda writes it, so
// that they go through rewrite_cu.py too (launches with 2 to 4 configuration
// arguments, a template-id kernel on the line before its <<<, static, aligned
// and dynamic __shared__ declarations). "// site: NAME" marks a line that the
// emulator's report of a buggy kernel must name.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "tests/cuda_emu/test_emu_device_kernels.hpp"

namespace emu_test {

namespace {

constexpr unsigned kFull = 0xffffffffu;

template <bool kBarrier>
__global__ void rotate_kernel(float* out) {
  __shared__ float slots[1024];
  const unsigned t = threadIdx.x;
  slots[t] = float(t);
  if (kBarrier) __syncthreads();
  out[t] = slots[(t + 1) % blockDim.x];
}

__global__ void cross_warp_kernel(float* out) {
  __shared__ __align__(16) float tile[32];
  const unsigned lane = threadIdx.x % 32;
  if (threadIdx.x < 32)
    tile[lane] = float(lane);
  else
    out[lane] = tile[lane];
}

__global__ void votes_kernel(int* out, unsigned chosen) {
  const int p = threadIdx.x == chosen;
  const int any = __syncthreads_or(p);
  const int all = __syncthreads_and(p);
  const int count = __syncthreads_count(p);
  if (threadIdx.x == 0) {
    out[0] = any;
    out[1] = all;
    out[2] = count;
  }
}

__global__ void shuffle_kernel(int64_t* out) {
  const int lane = threadIdx.x % 32;
  int64_t* row = out + threadIdx.x * 8;
  int sum = lane;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFull, sum, offset);
  row[0] = sum;
  row[1] = __shfl_sync(kFull, lane * 10, 5);
  row[2] = __shfl_sync(kFull, lane, 3, 16);  // lane 3 of each half
  row[3] = __shfl_up_sync(kFull, lane, 2);
  row[4] = __shfl_down_sync(kFull, lane, 2);
  row[5] = int64_t(__shfl_xor_sync(kFull, double(lane) + 0.5, 1) * 2);
  row[6] = __shfl_sync(kFull, int64_t(lane) << 40, 31);
  row[7] = __ballot_sync(kFull, lane % 3 == 0);
}

__global__ void mark_kernel(int* out) {
  out[blockIdx.y * gridDim.x + blockIdx.x] += 1 + int(blockIdx.y * gridDim.x + blockIdx.x);
}

__global__ void unwritten_kernel(int* out, unsigned dynamic_words) {
  __shared__ float static_part[64];
  extern __shared__ __align__(16) unsigned char dynamic_part[];
  const unsigned t = threadIdx.x;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(dynamic_part);
  bool fresh = std::isnan(static_part[t % 64]);
  for (unsigned i = t; i < dynamic_words; i += blockDim.x) fresh = fresh && words[i] == 0xffffffffu;
  __syncthreads();
  static_part[t % 64] = 1.0f;
  for (unsigned i = t; i < dynamic_words; i += blockDim.x)
    reinterpret_cast<uint32_t*>(dynamic_part)[i] = 0;
  out[blockIdx.x * blockDim.x + t] = fresh;
}

template <bool kBf16>
__global__ void mma_kernel(float* d, const uint32_t* a, const uint32_t* b) {
  const unsigned lane = threadIdx.x;
  float acc[4] = {d[lane * 4], d[lane * 4 + 1], d[lane * 4 + 2], d[lane * 4 + 3]};
  const uint32_t af[4] = {a[lane * 4], a[lane * 4 + 1], a[lane * 4 + 2], a[lane * 4 + 3]};
  const uint32_t bf[2] = {b[lane * 2], b[lane * 2 + 1]};
  if (kBf16) {
    turbine_emu::mma_m16n8k16_bf16(acc, af, bf);
  } else {
    turbine_emu::mma_m16n8k16_f16(acc, af, bf);
  }
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

__global__ void flag_kernel(int* flag) {
  if (threadIdx.x == 0 && threadIdx.y == 0 && blockIdx.x == 0 && blockIdx.y == 0) *flag = 1;
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16) {
    __syncthreads();  // site: divergent-a
  } else {
    __syncthreads();  // site: divergent-b
  }
}

__global__ void barrier_after_return_kernel() {
  if (threadIdx.x == 7) return;
  __syncthreads();  // site: after-return
}

__global__ void returned_lane_kernel() {
  if (threadIdx.x == 3) return;
  (void)__shfl_xor_sync(kFull, 1.0f, 1);
}

__global__ void divergent_shuffle_kernel() {
  if (threadIdx.x % 2 == 0) {
    (void)__shfl_xor_sync(kFull, 1, 1);  // site: shuffle-a
  } else {
    (void)__shfl_xor_sync(kFull, 2, 1);  // site: shuffle-b
  }
}

__global__ void deadlock_kernel() {
  if (threadIdx.x == 0) (void)__shfl_sync(kFull, 1, 0);  // site: deadlock-shuffle
  __syncthreads();                                       // site: deadlock-barrier
}

__global__ void overflow_kernel() {
  __shared__ int small[8];  // site: overflow
  small[threadIdx.x] = 1;   // 16 threads
}

__global__ void outside_mask_kernel(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_sync(0x0000ffffu, int(threadIdx.x), 20);  // site: outside-mask
}

}  // namespace

// The kernel on the line before its <<<, as rewrite_cu.py must read it too.
// clang-format off
void rotate_through_shared(float* out, unsigned threads, bool barrier) {
  if (barrier) {
    rotate_kernel<true>
        <<<1, threads>>>(out);
  } else {
    rotate_kernel<false><<<1, threads, 0>>>(out);
  }
}
// clang-format on

void cross_warp_race(float* out) {
  cross_warp_kernel<<<1, 64, 0, nullptr>>>(out);
}

void barrier_votes(int* out, unsigned threads, unsigned chosen) {
  votes_kernel<<<1, threads>>>(out, chosen);
}

void shuffles(int64_t* out) {
  shuffle_kernel<<<1, 64>>>(out);
}

void mark_blocks(int* out, unsigned blocks_x, unsigned blocks_y) {
  mark_kernel<<<dim3(blocks_x, blocks_y), 1>>>(out);
}

void shared_starts_unwritten(int* out, unsigned blocks, unsigned threads, size_t dynamic_bytes) {
  unwritten_kernel<<<blocks, threads, dynamic_bytes>>>(out, unsigned(dynamic_bytes / 4));
}

void mma(bool bf16, float* d, const uint32_t* a, const uint32_t* b) {
  if (bf16) {
    mma_kernel<true><<<1, 32>>>(d, a, b);
  } else {
    mma_kernel<false><<<1, 32>>>(d, a, b);
  }
}

void set_flag(int* flag, unsigned grid_x, unsigned grid_y, unsigned block_x, unsigned block_y,
              size_t dynamic_bytes) {
  flag_kernel<<<dim3(grid_x, grid_y), dim3(block_x, block_y), dynamic_bytes>>>(flag);
}

void allow_dynamic_shared(size_t bytes) {
  cudaFuncSetAttribute(flag_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

void divergent_barrier() {
  divergent_barrier_kernel<<<1, 64>>>();
}
void barrier_after_return() {
  barrier_after_return_kernel<<<1, 64>>>();
}
void shuffle_with_returned_lane() {
  returned_lane_kernel<<<1, 32>>>();
}
void divergent_shuffle() {
  divergent_shuffle_kernel<<<1, 32>>>();
}
void deadlock_shuffle_against_barrier() {
  deadlock_kernel<<<1, 32>>>();
}
void shared_overflow() {
  overflow_kernel<<<1, 16>>>();
}
void shuffle_reads_lane_outside_mask() {
  int* out = nullptr;
  cudaMalloc(&out, 16 * sizeof(int));
  outside_mask_kernel<<<1, 32>>>(out);
}

}  // namespace emu_test
