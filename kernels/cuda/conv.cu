// Sliding-window CUDA kernels of the image models, NCHW: im2col / col2im for
// conv2d and max / average pooling. One thread per output element (forward)
// or per input pixel (backward: a gather over the windows that cover it, in
// the CPU's order, kernels/window2d.hpp), so no atomics and no races.
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"
#include "kernels/pointwise_math.hpp"
#include "kernels/window2d.hpp"

namespace turbine::kernels {

using cuda::grid_index;
using cuda::grid_stride;

namespace {

// cols (N, C*kh*kw, OH*OW): one element per thread.
__global__ void im2col_kernel(Window2d w, const float* __restrict__ x, float* __restrict__ cols) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t plane_out = size_t(oh_n) * ow_n, rows = size_t(w.channels) * w.kernel_h * w.kernel_w;
  const size_t n_total = w.batch * rows * plane_out;
  for (size_t e = grid_index(); e < n_total; e += grid_stride()) {
    const size_t unit = e / plane_out, col = e % plane_out;
    const int n = int(unit / rows), row = int(unit % rows);
    const int c = row / (w.kernel_h * w.kernel_w), i = row / w.kernel_w % w.kernel_h,
              j = row % w.kernel_w;
    const int oh = int(col / ow_n), ow = int(col % ow_n);
    const int ih = oh * w.stride_h - w.pad_h + i, iw = ow * w.stride_w - w.pad_w + j;
    const bool inside = ih >= 0 && ih < w.height && iw >= 0 && iw < w.width;
    cols[e] = inside ? x[((size_t(n) * w.channels + c) * w.height + ih) * w.width + iw] : 0.0f;
  }
}

// dx pixel (n, c, ih, iw) per thread.
__global__ void col2im_kernel(Window2d w, const float* __restrict__ cols, float* __restrict__ dx,
                              bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t plane_out = size_t(oh_n) * ow_n, rows = size_t(w.channels) * w.kernel_h * w.kernel_w;
  const size_t pixels = size_t(w.batch) * w.channels * w.height * w.width;
  for (size_t e = grid_index(); e < pixels; e += grid_stride()) {
    const int iw = int(e % w.width), ih = int(e / w.width % w.height);
    const size_t nc = e / (size_t(w.width) * w.height);
    const int c = int(nc % w.channels), n = int(nc / w.channels);
    const CoverRange cover = cover_range(w, ih, iw);
    float total = 0.0f;
    for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
      for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow) {
        const int i = cover.h - oh * w.stride_h, j = cover.x - ow * w.stride_w;
        const size_t row = (size_t(c) * w.kernel_h + i) * w.kernel_w + j;
        total += cols[(n * rows + row) * plane_out + size_t(oh) * ow_n + ow];
      }
    store(dx + e, total, accumulate);
  }
}

__global__ void max_pool_forward_kernel(Window2d w, const float* __restrict__ x,
                                        float* __restrict__ y, int32_t* __restrict__ argmax) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t outputs = size_t(w.batch) * w.channels * oh_n * ow_n;
  for (size_t o = grid_index(); o < outputs; o += grid_stride()) {
    const int ow = int(o % ow_n), oh = int(o / ow_n % oh_n);
    const size_t nc = o / (size_t(ow_n) * oh_n);
    const WindowMax m = window_max(w, x + nc * w.height * w.width, oh, ow);
    y[o] = m.value;
    argmax[o] = m.index;
  }
}

__global__ void max_pool_backward_kernel(Window2d w, const int32_t* __restrict__ argmax,
                                         const float* __restrict__ dy, float* __restrict__ dx,
                                         bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t pixels = size_t(w.batch) * w.channels * w.height * w.width;
  for (size_t e = grid_index(); e < pixels; e += grid_stride()) {
    const int iw = int(e % w.width), ih = int(e / w.width % w.height);
    const size_t nc = e / (size_t(w.width) * w.height), out_base = nc * oh_n * ow_n;
    const int32_t self = ih * w.width + iw;
    const CoverRange cover = cover_range(w, ih, iw);
    float total = 0.0f;
    for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
      for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow) {
        const size_t o = out_base + size_t(oh) * ow_n + ow;
        if (argmax[o] == self) total += dy[o];
      }
    store(dx + e, total, accumulate);
  }
}

__global__ void avg_pool_forward_kernel(Window2d w, const float* __restrict__ x,
                                        float* __restrict__ y) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t outputs = size_t(w.batch) * w.channels * oh_n * ow_n;
  const float inv = 1.0f / float(w.kernel_h * w.kernel_w);
  for (size_t o = grid_index(); o < outputs; o += grid_stride()) {
    const int ow = int(o % ow_n), oh = int(o / ow_n % oh_n);
    const size_t nc = o / (size_t(ow_n) * oh_n);
    y[o] = window_sum(w, x + nc * w.height * w.width, oh, ow) * inv;
  }
}

__global__ void avg_pool_backward_kernel(Window2d w, const float* __restrict__ dy,
                                         float* __restrict__ dx, bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const size_t pixels = size_t(w.batch) * w.channels * w.height * w.width;
  const float inv = 1.0f / float(w.kernel_h * w.kernel_w);
  for (size_t e = grid_index(); e < pixels; e += grid_stride()) {
    const int iw = int(e % w.width), ih = int(e / w.width % w.height);
    const size_t nc = e / (size_t(w.width) * w.height);
    const float* grad = dy + nc * oh_n * ow_n;
    const CoverRange cover = cover_range(w, ih, iw);
    float total = 0.0f;
    for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
      for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow)
        total += grad[size_t(oh) * ow_n + ow];
    store(dx + e, total * inv, accumulate);
  }
}

size_t pixels_of(const Window2d& w) {
  return size_t(w.batch) * w.channels * w.height * w.width;
}
size_t outputs_of(const Window2d& w) {
  return size_t(w.batch) * w.channels * w.out_h() * w.out_w();
}

}  // namespace

void CudaBackend::im2col(const Window2d& w, const float* x, float* cols) {
  const size_t n = size_t(w.channels) * w.kernel_h * w.kernel_w * w.batch * w.out_h() * w.out_w();
  cuda::launch_elementwise(stream(), n, im2col_kernel, w, x, cols);
}

void CudaBackend::col2im(const Window2d& w, const float* cols, float* dx, bool accumulate) {
  cuda::launch_elementwise(stream(), pixels_of(w), col2im_kernel, w, cols, dx, accumulate);
}

void CudaBackend::max_pool2d_forward(const Window2d& w, const float* x, float* y, int32_t* argmax) {
  cuda::launch_elementwise(stream(), outputs_of(w), max_pool_forward_kernel, w, x, y, argmax);
}

void CudaBackend::max_pool2d_backward(const Window2d& w, const int32_t* argmax, const float* dy,
                                      float* dx, bool accumulate) {
  cuda::launch_elementwise(stream(), pixels_of(w), max_pool_backward_kernel, w, argmax, dy, dx,
                           accumulate);
}

void CudaBackend::avg_pool2d_forward(const Window2d& w, const float* x, float* y) {
  cuda::launch_elementwise(stream(), outputs_of(w), avg_pool_forward_kernel, w, x, y);
}

void CudaBackend::avg_pool2d_backward(const Window2d& w, const float* dy, float* dx,
                                      bool accumulate) {
  cuda::launch_elementwise(stream(), pixels_of(w), avg_pool_backward_kernel, w, dy, dx, accumulate);
}

}  // namespace turbine::kernels
