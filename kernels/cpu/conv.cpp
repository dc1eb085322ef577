// Sliding-window kernels of the image models, NCHW: conv2d's im2col and its
// transpose col2im, and max / average pooling. Every backward is written as a
// gather (each input pixel sums the windows that cover it), the same order on
// the CPU and CUDA, so no two threads write one pixel.
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/pointwise_math.hpp"
#include "kernels/window2d.hpp"

namespace turbine::kernels {

// cols (N, C*kh*kw, OH*OW): row (c, i, j), column (oh, ow) of each image.
void CpuBackend::im2col(const Window2d& w, const float* x, float* cols) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t plane_out = int64_t(oh_n) * ow_n;
  const int rows = w.channels * w.kernel_h * w.kernel_w;
  const int64_t units = int64_t(w.batch) * rows;
#pragma omp parallel for schedule(static) if (size_t(units) * plane_out > kParallelGrain)
  for (int64_t unit = 0; unit < units; ++unit) {
    const int n = int(unit / rows), row = int(unit % rows);
    const int c = row / (w.kernel_h * w.kernel_w), i = row / w.kernel_w % w.kernel_h,
              j = row % w.kernel_w;
    const float* plane = x + (size_t(n) * w.channels + c) * w.height * w.width;
    float* out = cols + size_t(unit) * plane_out;
    for (int oh = 0; oh < oh_n; ++oh) {
      const int ih = oh * w.stride_h - w.pad_h + i;
      for (int ow = 0; ow < ow_n; ++ow) {
        const int iw = ow * w.stride_w - w.pad_w + j;
        const bool inside = ih >= 0 && ih < w.height && iw >= 0 && iw < w.width;
        out[oh * ow_n + ow] = inside ? plane[ih * w.width + iw] : 0.0f;
      }
    }
  }
}

void CpuBackend::col2im(const Window2d& w, const float* cols, float* dx, bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t plane_out = int64_t(oh_n) * ow_n;
  const int rows = w.channels * w.kernel_h * w.kernel_w;
  const int64_t planes = int64_t(w.batch) * w.channels;
#pragma omp parallel for schedule(static) if (size_t(planes) * w.height * w.width > kParallelGrain)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const int n = int(nc / w.channels), c = int(nc % w.channels);
    float* plane = dx + size_t(nc) * w.height * w.width;
    for (int ih = 0; ih < w.height; ++ih)
      for (int iw = 0; iw < w.width; ++iw) {
        const CoverRange cover = cover_range(w, ih, iw);
        float total = 0.0f;
        for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
          for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow) {
            const int i = cover.h - oh * w.stride_h, j = cover.x - ow * w.stride_w;
            const int row = (c * w.kernel_h + i) * w.kernel_w + j;
            total += cols[(size_t(n) * rows + row) * plane_out + oh * ow_n + ow];
          }
        store(plane + ih * w.width + iw, total, accumulate);
      }
  }
}

void CpuBackend::max_pool2d_forward(const Window2d& w, const float* x, float* y, int32_t* argmax) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t planes = int64_t(w.batch) * w.channels;
#pragma omp parallel for schedule(static) if (size_t(planes) * oh_n * ow_n > kParallelGrain)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const float* plane = x + size_t(nc) * w.height * w.width;
    for (int oh = 0; oh < oh_n; ++oh)
      for (int ow = 0; ow < ow_n; ++ow) {
        const WindowMax m = window_max(w, plane, oh, ow);
        const size_t o = (size_t(nc) * oh_n + oh) * ow_n + ow;
        y[o] = m.value;
        argmax[o] = m.index;
      }
  }
}

void CpuBackend::max_pool2d_backward(const Window2d& w, const int32_t* argmax, const float* dy,
                                     float* dx, bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t planes = int64_t(w.batch) * w.channels;
#pragma omp parallel for schedule(static) if (size_t(planes) * w.height * w.width > kParallelGrain)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const size_t out_base = size_t(nc) * oh_n * ow_n;
    float* plane = dx + size_t(nc) * w.height * w.width;
    for (int ih = 0; ih < w.height; ++ih)
      for (int iw = 0; iw < w.width; ++iw) {
        const int32_t self = ih * w.width + iw;
        const CoverRange cover = cover_range(w, ih, iw);
        float total = 0.0f;
        for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
          for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow) {
            const size_t o = out_base + oh * ow_n + ow;
            if (argmax[o] == self) total += dy[o];
          }
        store(plane + self, total, accumulate);
      }
  }
}

void CpuBackend::avg_pool2d_forward(const Window2d& w, const float* x, float* y) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t planes = int64_t(w.batch) * w.channels;
  const float inv = 1.0f / float(w.kernel_h * w.kernel_w);
#pragma omp parallel for schedule(static) if (size_t(planes) * oh_n * ow_n > kParallelGrain)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const float* plane = x + size_t(nc) * w.height * w.width;
    for (int oh = 0; oh < oh_n; ++oh)
      for (int ow = 0; ow < ow_n; ++ow)
        y[(size_t(nc) * oh_n + oh) * ow_n + ow] = window_sum(w, plane, oh, ow) * inv;
  }
}

void CpuBackend::avg_pool2d_backward(const Window2d& w, const float* dy, float* dx,
                                     bool accumulate) {
  const int oh_n = w.out_h(), ow_n = w.out_w();
  const int64_t planes = int64_t(w.batch) * w.channels;
  const float inv = 1.0f / float(w.kernel_h * w.kernel_w);
#pragma omp parallel for schedule(static) if (size_t(planes) * w.height * w.width > kParallelGrain)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const float* grad = dy + size_t(nc) * oh_n * ow_n;
    float* plane = dx + size_t(nc) * w.height * w.width;
    for (int ih = 0; ih < w.height; ++ih)
      for (int iw = 0; iw < w.width; ++iw) {
        const CoverRange cover = cover_range(w, ih, iw);
        float total = 0.0f;
        for (int oh = cover.oh_first; oh <= cover.oh_last; ++oh)
          for (int ow = cover.ow_first; ow <= cover.ow_last; ++ow) total += grad[oh * ow_n + ow];
        store(plane + ih * w.width + iw, total * inv, accumulate);
      }
  }
}

}  // namespace turbine::kernels
