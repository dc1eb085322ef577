// Embedding lookup and its scatter-add backward on CUDA. ids (n),
// table (vocab, dim), out / dout (n, dim).
// The backward is deterministic without float atomics: positions are sorted
// by id with CUB's stable radix sort, and one thread per (run of equal ids,
// column) adds the run's rows in position order onto the table's value. That
// is the CPU's order of additions too, so the result matches it bit for bit.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::load_pack;
using cuda::Pack;
using cuda::store_pack;

namespace {

// Block x = position i, block y = chunk of columns; V floats per thread.
template <int V>
__global__ void embedding_forward_kernel(const int64_t* __restrict__ ids,
                                         const float* __restrict__ table, float* __restrict__ out,
                                         int dim) {
  const size_t i = blockIdx.x;
  const int p = blockIdx.y * blockDim.x + threadIdx.x;
  if (p >= dim / V) return;
  const float* src = table + size_t(ids[i]) * dim;
  store_pack<V>(out + i * dim + p * V, load_pack<V>(src + p * V));
}

__global__ void iota_kernel(int* __restrict__ values, int n) {
  for (size_t i = cuda::grid_index(); i < size_t(n); i += cuda::grid_stride())
    values[i] = static_cast<int>(i);
}

// Block x = index j in id order, block y = chunk of columns. Only the block at
// the head of a run of equal ids works: it adds the run's dout rows, in
// increasing position (the sort is stable), to the table row.
__global__ void embedding_runs_kernel(const uint64_t* __restrict__ sorted_ids,
                                      const int* __restrict__ sorted_positions,
                                      const float* __restrict__ dout, float* __restrict__ dtable,
                                      int n, int dim) {
  const int j = blockIdx.x;
  const uint64_t id = sorted_ids[j];
  if (j > 0 && sorted_ids[j - 1] == id) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  float* dst = dtable + id * dim + c;
  float total = *dst;
  for (int k = j; k < n && sorted_ids[k] == id; ++k)
    total += dout[size_t(sorted_positions[k]) * dim + c];
  *dst = total;
}

// Byte offsets into scratch, each part 256-byte aligned (as CUB wants).
size_t aligned256(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

}  // namespace

void CudaBackend::embedding_forward(const int64_t* ids, const float* table, float* out, int n, int,
                                    int dim) {
  if (n <= 0 || dim <= 0) return;
  const bool vec4 = cuda::rows_aligned16(dim, table, out);
  const auto kernel = vec4 ? embedding_forward_kernel<4> : embedding_forward_kernel<1>;
  const cuda::RowGrid g = cuda::row_grid(n, vec4 ? dim / 4 : dim);
  kernel<<<g.grid, g.threads, 0, stream()>>>(ids, table, out, dim);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::embedding_backward(const int64_t* ids, const float* dout, float* dtable, int n,
                                     int vocab, int dim, bool accumulate) {
  if (vocab <= 0 || dim <= 0) return;
  if (!accumulate)
    TURBINE_CUDA_CHECK(cudaMemsetAsync(dtable, 0, sizeof(float) * size_t(vocab) * dim, stream()));
  if (n <= 0) return;

  // Ids lie in [0, vocab) (checked by the op), so the sort needs only the
  // low bits; as unsigned keys they sort the same.
  int end_bit = 1;
  while (end_bit < 64 && (uint64_t(1) << end_bit) < uint64_t(vocab)) ++end_bit;
  const auto* keys_in = reinterpret_cast<const uint64_t*>(ids);

  size_t sort_bytes = 0;
  TURBINE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, keys_in, static_cast<uint64_t*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n, 0, end_bit, stream()));
  const size_t keys_bytes = aligned256(sizeof(uint64_t) * n);
  const size_t values_bytes = aligned256(sizeof(int) * n);
  auto* base = static_cast<char*>(scratch(keys_bytes + 2 * values_bytes + sort_bytes));
  auto* sorted_ids = reinterpret_cast<uint64_t*>(base);
  auto* positions = reinterpret_cast<int*>(base + keys_bytes);
  auto* sorted_positions = reinterpret_cast<int*>(base + keys_bytes + values_bytes);
  void* sort_storage = base + keys_bytes + 2 * values_bytes;

  cuda::launch_elementwise(stream(), n, iota_kernel, positions, n);
  TURBINE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_storage, sort_bytes, keys_in, sorted_ids,
                                                     positions, sorted_positions, n, 0, end_bit,
                                                     stream()));
  const cuda::RowGrid g = cuda::row_grid(n, dim);
  embedding_runs_kernel<<<g.grid, g.threads, 0, stream()>>>(sorted_ids, sorted_positions, dout,
                                                            dtable, n, dim);
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace turbine::kernels
