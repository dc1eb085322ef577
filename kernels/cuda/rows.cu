// Row gather/scatter within each batch (token dropping) and the head layout
// permutes of attention on CUDA: BLOOM's fused (B,T,H,3,D) QKV and (B,H,T,D).
// Layouts as kernels/cpu/rows.cpp. Every op copies (or adds) whole rows of
// `width` floats from one row numbering to another, so one kernel serves all
// of them: block x = row unit u, block y = chunk of the row, and a pair of
// small maps giving where unit u's row starts in the source and destination.
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::F32Storage;
using cuda::load_pack_as;
using cuda::Pack;
using cuda::store_pack_as;

namespace {

// Row u of a dense array of rows spaced `stride` apart, from `offset`.
struct DenseRow {
  size_t stride, offset;
  __device__ size_t operator()(unsigned u) const { return u * stride + offset; }
};

// Unit u = b * picked + k is row index[u] of batch b in (batch, rows, width).
struct PickedRow {
  const int64_t* index;
  unsigned rows, picked, width;
  __device__ size_t operator()(unsigned u) const {
    return (size_t(u / picked) * rows + size_t(index[u])) * width;
  }
};

// Unit u = (b * seq + t) * heads + h is row (b, h, t) of (B, H, T, D).
struct HeadMajorRow {
  unsigned seq, heads, head_dim;
  __device__ size_t operator()(unsigned u) const {
    const unsigned h = u % heads, bt = u / heads;
    const unsigned t = bt % seq, b = bt / seq;
    return ((size_t(b) * heads + h) * seq + t) * head_dim;
  }
};

// dst row dst_row(u) (+)= src row src_row(u), V floats per thread. Rows of
// different units never overlap (the ops check that picked rows are
// distinct), so threads never race. Rows are in storage S (device.cuh): a
// 16-bit copy moves the bits, an accumulation adds in f32 and rounds once.
template <int V, typename S, typename SrcRow, typename DstRow>
__global__ void copy_rows_kernel(const typename S::type* __restrict__ src, SrcRow src_row,
                                 typename S::type* __restrict__ dst, DstRow dst_row, int width,
                                 bool accumulate) {
  const int p = blockIdx.y * blockDim.x + threadIdx.x;
  if (p >= width / V) return;
  const unsigned u = blockIdx.x;
  const typename S::type* in = src + src_row(u) + p * V;
  typename S::type* out = dst + dst_row(u) + p * V;
  if (accumulate) {
    const Pack<V> s = load_pack_as<V, S>(in);
    Pack<V> d = load_pack_as<V, S>(out);
    for (int j = 0; j < V; ++j) d.v[j] += s.v[j];
    store_pack_as<V, S>(out, d);
  } else if constexpr (std::is_same_v<S, F32Storage>) {
    store_pack_as<V, S>(out, load_pack_as<V, S>(in));
  } else {
    for (int j = 0; j < V; ++j) out[j] = in[j];  // the bits, NaN payloads included
  }
}

template <typename S>
__global__ void zero_rows_kernel(typename S::type* __restrict__ y, PickedRow row, int width) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c < width) y[row(blockIdx.x) + c] = typename S::type(0);  // +0 in every format
}

// Launches copy_rows_kernel over `units` rows of `width`, with float4 when
// width is a multiple of 4 and both base pointers are 16-byte aligned (every
// row offset of the maps is a multiple of width, so each row is aligned too).
// 16-bit rows go one value per thread.
template <typename S = F32Storage, typename SrcRow, typename DstRow>
void copy_rows(cudaStream_t stream, const typename S::type* src, SrcRow src_row,
               typename S::type* dst, DstRow dst_row, size_t units, int width, bool accumulate) {
  if (units == 0 || width <= 0) return;
  bool vec4 = false;
  auto kernel = copy_rows_kernel<1, S, SrcRow, DstRow>;
  if constexpr (std::is_same_v<S, F32Storage>) {
    vec4 = cuda::rows_aligned16(width, src, dst);
    if (vec4) kernel = copy_rows_kernel<4, S, SrcRow, DstRow>;
  }
  const cuda::RowGrid g = cuda::row_grid(units, vec4 ? width / 4 : width);
  kernel<<<g.grid, g.threads, 0, stream>>>(src, src_row, dst, dst_row, width, accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::gather_rows(const float* x, const int64_t* index, float* y, int batch, int rows,
                              int picked, int cols, bool accumulate) {
  const PickedRow src_row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  copy_rows(stream(), x, src_row, y, DenseRow{size_t(cols), 0}, size_t(batch) * picked, cols,
            accumulate);
}

void CudaBackend::scatter_rows(const float* src, const int64_t* index, float* y, int batch,
                               int rows, int picked, int cols, bool accumulate) {
  const PickedRow dst_row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  copy_rows(stream(), src, DenseRow{size_t(cols), 0}, y, dst_row, size_t(batch) * picked, cols,
            accumulate);
}

void CudaBackend::zero_rows(float* y, const int64_t* index, int batch, int rows, int picked,
                            int cols) {
  const size_t units = size_t(batch) * picked;
  if (units == 0 || cols <= 0) return;
  const cuda::RowGrid g = cuda::row_grid(units, cols);
  const PickedRow row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  zero_rows_kernel<F32Storage><<<g.grid, g.threads, 0, stream()>>>(y, row, cols);
  TURBINE_CUDA_LAUNCH_CHECK();
}

// q, k and v are parts 0, 1, 2 of each (b, t, h) triple: one launch per part.
void CudaBackend::split_qkv(const float* qkv, float* q, float* k, float* v, int batch, int seq,
                            int heads, int head_dim) {
  const size_t units = size_t(batch) * seq * heads;
  const HeadMajorRow dst_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  float* parts[3] = {q, k, v};
  for (int part = 0; part < 3; ++part)
    copy_rows(stream(), qkv, DenseRow{3 * size_t(head_dim), size_t(part) * head_dim}, parts[part],
              dst_row, units, head_dim, false);
}

void CudaBackend::merge_qkv(const float* dq, const float* dk, const float* dv, float* dqkv,
                            int batch, int seq, int heads, int head_dim, bool accumulate) {
  const size_t units = size_t(batch) * seq * heads;
  const HeadMajorRow src_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  const float* parts[3] = {dq, dk, dv};
  for (int part = 0; part < 3; ++part)
    copy_rows(stream(), parts[part], src_row, dqkv,
              DenseRow{3 * size_t(head_dim), size_t(part) * head_dim}, units, head_dim, accumulate);
}

// (B,H,T,D) -> (B,T,H*D): row (b, t, h) of the output is row (b, h, t) of x.
void CudaBackend::merge_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                              bool accumulate) {
  const HeadMajorRow src_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  copy_rows(stream(), x, src_row, y, DenseRow{size_t(head_dim), 0}, size_t(batch) * seq * heads,
            head_dim, accumulate);
}

void CudaBackend::split_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                              bool accumulate) {
  const HeadMajorRow dst_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  copy_rows(stream(), x, DenseRow{size_t(head_dim), 0}, y, dst_row, size_t(batch) * seq * heads,
            head_dim, accumulate);
}

// ---- 16-bit activations: the same maps over 16-bit rows.

void CudaBackend::gather_rows16(FloatType t, const uint16_t* x, const int64_t* index, uint16_t* y,
                                int batch, int rows, int picked, int cols, bool accumulate) {
  const PickedRow src_row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  cuda::with_half_storage(t, [&](auto s) {
    copy_rows<decltype(s)>(stream(), x, src_row, y, DenseRow{size_t(cols), 0},
                           size_t(batch) * picked, cols, accumulate);
  });
}

void CudaBackend::scatter_rows16(FloatType t, const uint16_t* src, const int64_t* index,
                                 uint16_t* y, int batch, int rows, int picked, int cols,
                                 bool accumulate) {
  const PickedRow dst_row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  cuda::with_half_storage(t, [&](auto s) {
    copy_rows<decltype(s)>(stream(), src, DenseRow{size_t(cols), 0}, y, dst_row,
                           size_t(batch) * picked, cols, accumulate);
  });
}

void CudaBackend::zero_rows16(FloatType, uint16_t* y, const int64_t* index, int batch, int rows,
                              int picked, int cols) {
  const size_t units = size_t(batch) * picked;
  if (units == 0 || cols <= 0) return;
  const cuda::RowGrid g = cuda::row_grid(units, cols);
  const PickedRow row{index, unsigned(rows), unsigned(picked), unsigned(cols)};
  zero_rows_kernel<cuda::BF16Storage><<<g.grid, g.threads, 0, stream()>>>(y, row, cols);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::split_qkv16(FloatType t, const uint16_t* qkv, uint16_t* q, uint16_t* k,
                              uint16_t* v, int batch, int seq, int heads, int head_dim) {
  const size_t units = size_t(batch) * seq * heads;
  const HeadMajorRow dst_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  uint16_t* parts[3] = {q, k, v};
  cuda::with_half_storage(t, [&](auto s) {
    for (int part = 0; part < 3; ++part)
      copy_rows<decltype(s)>(stream(), qkv, DenseRow{3 * size_t(head_dim), size_t(part) * head_dim},
                             parts[part], dst_row, units, head_dim, false);
  });
}

void CudaBackend::merge_qkv16(FloatType t, const uint16_t* dq, const uint16_t* dk,
                              const uint16_t* dv, uint16_t* dqkv, int batch, int seq, int heads,
                              int head_dim, bool accumulate) {
  const size_t units = size_t(batch) * seq * heads;
  const HeadMajorRow src_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  const uint16_t* parts[3] = {dq, dk, dv};
  cuda::with_half_storage(t, [&](auto s) {
    for (int part = 0; part < 3; ++part)
      copy_rows<decltype(s)>(stream(), parts[part], src_row, dqkv,
                             DenseRow{3 * size_t(head_dim), size_t(part) * head_dim}, units,
                             head_dim, accumulate);
  });
}

void CudaBackend::merge_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                                int seq, int head_dim, bool accumulate) {
  const HeadMajorRow src_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  cuda::with_half_storage(t, [&](auto s) {
    copy_rows<decltype(s)>(stream(), x, src_row, y, DenseRow{size_t(head_dim), 0},
                           size_t(batch) * seq * heads, head_dim, accumulate);
  });
}

void CudaBackend::split_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                                int seq, int head_dim, bool accumulate) {
  const HeadMajorRow dst_row{unsigned(seq), unsigned(heads), unsigned(head_dim)};
  cuda::with_half_storage(t, [&](auto s) {
    copy_rows<decltype(s)>(stream(), x, DenseRow{size_t(head_dim), 0}, y, dst_row,
                           size_t(batch) * seq * heads, head_dim, accumulate);
  });
}

}  // namespace turbine::kernels
