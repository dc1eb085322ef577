// The paged KV cache's kernels on CUDA, twins of kernels/cpu/paged_attention.cpp
// (layouts in kernels/backend.hpp, PagedAttentionShape).
//   paged_kv_write:  one thread per element of the step's keys and values.
//   paged_attention: one block of 128 threads per (new token, head), as
//                    vLLM's first PagedAttention kernel: the token's sequence
//                    is found by binary search over seq_info, q sits in
//                    shared memory, and the block walks the visible keys in
//                    tiles of 128 (one key per thread, read through the block
//                    table) with an online softmax; the output's head_dim
//                    columns are spread over the threads. f32 throughout.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

namespace {

constexpr int kThreads = 128;              // keys per tile, one per thread
constexpr int kMaxHeadDim = 2 * kThreads;  // two output columns per thread at most

__global__ void paged_kv_write_kernel(const float* __restrict__ k, const float* __restrict__ v,
                                      float* __restrict__ k_pool, float* __restrict__ v_pool,
                                      const int32_t* __restrict__ slots, int tokens, int heads,
                                      int head_dim, int block_size) {
  const size_t n = size_t(heads) * tokens * head_dim;
  for (size_t i = cuda::grid_index(); i < n; i += cuda::grid_stride()) {
    const int d = int(i % head_dim);
    const int t = int((i / head_dim) % tokens);
    const int h = int(i / (size_t(head_dim) * tokens));
    const int64_t slot = slots[t], block = slot / block_size, offset = slot % block_size;
    const size_t dst = size_t(((block * heads + h) * block_size + offset) * head_dim + d);
    k_pool[dst] = k[i];
    v_pool[dst] = v[i];
  }
}

__device__ float block_max(float v, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

struct PagedArgs {
  PagedAttentionShape s;
  const float* q;
  const float* k_pool;
  const float* v_pool;
  const int32_t* block_tables;
  const int32_t* seq_info;
  const float* alibi;  // device (heads), or null
  float* out;
};

__global__ void paged_attention_kernel(PagedArgs a) {
  __shared__ float q_row[kMaxHeadDim];
  __shared__ float p_tile[kThreads];
  __shared__ float reduce[32];
  const PagedAttentionShape& s = a.s;
  const int token = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, D = s.head_dim;
  // The sequence whose tokens include this one: the last whose first <= token.
  int lo = 0, hi = s.sequences - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.seq_info[mid * 3] <= token)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int first = a.seq_info[lo * 3], q_len = a.seq_info[lo * 3 + 1],
            context = a.seq_info[lo * 3 + 2];
  const int position = context - q_len + (token - first);
  const int32_t* table = a.block_tables + size_t(lo) * s.max_blocks;
  const float slope = a.alibi ? a.alibi[h] : 0.0f;
  const size_t row = (size_t(h) * s.tokens + token) * D;
  for (int d = tid; d < D; d += kThreads) q_row[d] = a.q[row + d];
  __syncthreads();

  float top = -INFINITY, total = 0, acc0 = 0, acc1 = 0;
  for (int tile = 0; tile <= position; tile += kThreads) {
    const int j = tile + tid;
    float score = -INFINITY;
    if (j <= position) {
      const float* kj = a.k_pool + ((size_t(table[j / s.block_size]) * s.heads + h) * s.block_size +
                                    size_t(j % s.block_size)) *
                                       D;
      float dot = 0;
      for (int d = 0; d < D; ++d) dot += q_row[d] * kj[d];
      score = s.scale * dot - slope * float(position - j);
    }
    const float new_top = fmaxf(top, block_max(score, reduce));
    const float correction = top == -INFINITY ? 0.0f : expf(top - new_top);
    const float p = j <= position ? expf(score - new_top) : 0.0f;
    p_tile[tid] = p;
    total = total * correction + cuda::block_sum(p, reduce);  // its barriers publish p_tile
    acc0 *= correction;
    acc1 *= correction;
    const int keys = min(kThreads, position + 1 - tile);
    for (int jj = 0; jj < keys; ++jj) {
      const int key = tile + jj;
      const float* vj =
          a.v_pool + ((size_t(table[key / s.block_size]) * s.heads + h) * s.block_size +
                      size_t(key % s.block_size)) *
                         D;
      if (tid < D) acc0 += p_tile[jj] * vj[tid];
      if (tid + kThreads < D) acc1 += p_tile[jj] * vj[tid + kThreads];
    }
    top = new_top;
    __syncthreads();  // p_tile is rewritten by the next tile
  }
  const float inv = 1.0f / total;
  if (tid < D) a.out[row + tid] = acc0 * inv;
  if (tid + kThreads < D) a.out[row + tid + kThreads] = acc1 * inv;
}

}  // namespace

void CudaBackend::paged_kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                                 const int32_t* slots, int tokens, int heads, int head_dim,
                                 int block_size) {
  cuda::launch_elementwise(stream(), size_t(heads) * tokens * head_dim, paged_kv_write_kernel, k, v,
                           k_pool, v_pool, slots, tokens, heads, head_dim, block_size);
}

void CudaBackend::paged_attention(const PagedAttentionShape& s, const float* q, const float* k_pool,
                                  const float* v_pool, const int32_t* block_tables,
                                  const int32_t* seq_info, float* out) {
  TURBINE_CUDA_REQUIRE(s.head_dim <= kMaxHeadDim, "paged_attention: head_dim %d above %d",
                       s.head_dim, kMaxHeadDim);
  if (s.tokens == 0 || s.heads == 0) return;
  const PagedArgs args{
      s, q, k_pool, v_pool, block_tables, seq_info, stage_alibi(s.alibi_slopes, s.heads), out};
  paged_attention_kernel<<<dim3(unsigned(s.tokens), unsigned(s.heads)), kThreads, 0, stream()>>>(
      args);
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace turbine::kernels
