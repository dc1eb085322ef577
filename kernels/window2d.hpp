// Window arithmetic that the CPU and CUDA conv/pooling kernels share, so both
// visit windows and pixels in one order (and sum in it): which output windows
// cover an input pixel (the backward passes gather over them), and a
// window's max and sum.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/host_device.hpp"

namespace turbine::kernels {

// The output windows (oh, ow) in [oh_first, oh_last] x [ow_first, ow_last]
// that cover input pixel (ih, iw), through their tap (h - oh * stride_h,
// x - ow * stride_w) with (h, x) the pixel's padded position. Plain loops
// over this range (oh then ow ascending) keep device code free of lambdas.
struct CoverRange {
  int h, x;  // (ih + pad_h, iw + pad_w)
  int oh_first, oh_last, ow_first, ow_last;
};

TURBINE_HOST_DEVICE inline CoverRange cover_range(const Window2d& w, int ih, int iw) {
  CoverRange c;
  c.h = ih + w.pad_h;
  c.x = iw + w.pad_w;
  // oh * stride <= h and h - oh * stride < kernel, within [0, out).
  c.oh_first = c.h < w.kernel_h ? 0 : (c.h - w.kernel_h) / w.stride_h + 1;
  c.ow_first = c.x < w.kernel_w ? 0 : (c.x - w.kernel_w) / w.stride_w + 1;
  c.oh_last = c.h / w.stride_h < w.out_h() - 1 ? c.h / w.stride_h : w.out_h() - 1;
  c.ow_last = c.x / w.stride_w < w.out_w() - 1 ? c.x / w.stride_w : w.out_w() - 1;
  return c;
}

struct WindowMax {
  float value;
  int32_t index;  // into the H*W plane
};

// The first maximum in row-major window order, padding skipped; a NaN wins
// (PyTorch's max_pool2d). Windows always hold a pixel (padding <= kernel / 2).
TURBINE_HOST_DEVICE inline WindowMax window_max(const Window2d& w, const float* plane, int oh,
                                                int ow) {
  WindowMax best{0.0f, -1};
  for (int i = 0; i < w.kernel_h; ++i) {
    const int ih = oh * w.stride_h - w.pad_h + i;
    if (ih < 0 || ih >= w.height) continue;
    for (int j = 0; j < w.kernel_w; ++j) {
      const int iw = ow * w.stride_w - w.pad_w + j;
      if (iw < 0 || iw >= w.width) continue;
      const float v = plane[ih * w.width + iw];
      if (best.index < 0 || v > best.value || v != v) best = {v, ih * w.width + iw};
    }
  }
  return best;
}

// Sum of a window's pixels, padding counting as zeros, row-major.
TURBINE_HOST_DEVICE inline float window_sum(const Window2d& w, const float* plane, int oh, int ow) {
  float total = 0.0f;
  for (int i = 0; i < w.kernel_h; ++i) {
    const int ih = oh * w.stride_h - w.pad_h + i;
    if (ih < 0 || ih >= w.height) continue;
    for (int j = 0; j < w.kernel_w; ++j) {
      const int iw = ow * w.stride_w - w.pad_w + j;
      if (iw >= 0 && iw < w.width) total += plane[ih * w.width + iw];
    }
  }
  return total;
}

}  // namespace turbine::kernels
