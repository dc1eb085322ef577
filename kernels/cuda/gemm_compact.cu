// y = x W^T with W stored in bf16, f16 or int8 with group scales, on CUDA
// (Backend::gemm_compact; the CPU's kernels/cpu/gemm_compact.cpp is the
// reference). Few rows of x (decoding): one warp per W row, lanes reading
// consecutive weights (coalesced) and widening them in registers, each
// weight used for every x row; reading W is the cost. Many rows: a panel of
// W rows widened into the backend's scratch buffer, then the f32 GEMM
// (cuBLASLt) in f32 math whatever the thread's mode, as on the CPU. The
// group is checked by ops::linear_compact.
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::grid_index;
using cuda::grid_stride;
using cuda::warp_sum;

namespace {

constexpr int kInlineRows = 4;  // as the CPU: up to this many x rows, widen in registers
constexpr size_t kPanelFloats = size_t(1) << 22;  // 16 MiB of widened W rows

__device__ inline float widen(const CompactWeight& w, int K, size_t row, int k) {
  const size_t at = row * K + k;
  switch (w.type) {
    case WeightType::bf16:
      return __uint_as_float(uint32_t(static_cast<const uint16_t*>(w.data)[at]) << 16);
    case WeightType::f16:
      return __half2float(__ushort_as_half(static_cast<const uint16_t*>(w.data)[at]));
    default:
      return float(static_cast<const int8_t*>(w.data)[at]) *
             w.scales[row * (K / w.group) + k / w.group];
  }
}

__global__ void gemv_compact_kernel(int M, int N, int K, const float* __restrict__ x, int ldx,
                                    CompactWeight w, float* __restrict__ y, int ldy,
                                    bool accumulate) {
  const unsigned row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (row >= unsigned(N)) return;  // whole warps: N is counted in warps
  float acc[kInlineRows] = {};
  for (int k = lane; k < K; k += 32) {
    const float wk = widen(w, K, row, k);
    for (int m = 0; m < kInlineRows; ++m)
      if (m < M) acc[m] += x[size_t(m) * ldx + k] * wk;
  }
  for (int m = 0; m < kInlineRows; ++m) {
    if (m >= M) break;
    const float sum = warp_sum(acc[m]);
    if (lane == 0) {
      float& out = y[size_t(m) * ldy + row];
      out = accumulate ? out + sum : sum;
    }
  }
}

__global__ void widen_rows_kernel(CompactWeight w, int K, int first_row, int rows,
                                  float* __restrict__ out) {
  const size_t n = size_t(rows) * K;
  for (size_t i = grid_index(); i < n; i += grid_stride())
    out[i] = widen(w, K, first_row + i / K, int(i % K));
}

}  // namespace

void CudaBackend::gemm_compact(int M, int N, int K, const float* x, int ldx,
                               const CompactWeight& w, float* y, int ldy, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (M <= kInlineRows) {
    constexpr unsigned threads = 256, rows_per_block = threads / 32;
    const unsigned blocks = (unsigned(N) + rows_per_block - 1) / rows_per_block;
    gemv_compact_kernel<<<blocks, threads, 0, stream()>>>(M, N, K, x, ldx, w, y, ldy, accumulate);
    TURBINE_CUDA_LAUNCH_CHECK();
    return;
  }
  const int panel_rows = int(std::clamp<size_t>(kPanelFloats / std::max(K, 1), 16, size_t(N)));
  float* panel = static_cast<float*>(scratch(sizeof(float) * size_t(panel_rows) * K));
  MathModeGuard f32(*this, MathMode::f32);
  for (int n0 = 0; n0 < N; n0 += panel_rows) {
    const int rows = std::min(panel_rows, N - n0);
    cuda::launch_elementwise(stream(), size_t(rows) * K, widen_rows_kernel, w, K, n0, rows, panel);
    gemm(false, true, M, rows, K, 1.0f, x, ldx, panel, K, accumulate ? 1.0f : 0.0f, y + n0, ldy);
  }
}

}  // namespace turbine::kernels
