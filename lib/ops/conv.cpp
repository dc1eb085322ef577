// conv2d (im2col + the backend's GEMM) and max / average pooling, NCHW, for
// the image models of fedsim and cl-edge.
#include <algorithm>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

using kernels::Broadcast;
using kernels::Window2d;

namespace {

// The window over x's images, checked: kernel, stride and padding sensible and
// at least one output pixel.
Window2d window(const char* op, const Shape& x, int kernel_h, int kernel_w, int stride,
                int padding) {
  TURBINE_CHECK(x.size() == 4, "{}: expected x (N, C, H, W), got {}", op, shape_str(x));
  TURBINE_CHECK(stride >= 1 && padding >= 0,
                "{}: stride {} must be at least 1 and padding {} not negative", op, stride,
                padding);
  const Window2d w{int(x[0]), int(x[1]), int(x[2]), int(x[3]), kernel_h,
                   kernel_w,  stride,    stride,    padding,   padding};
  TURBINE_CHECK(kernel_h >= 1 && kernel_w >= 1 && x[2] + 2 * padding >= kernel_h &&
                    x[3] + 2 * padding >= kernel_w,
                "{}: a {}x{} window (padding {}) does not fit the images of {}", op, kernel_h,
                kernel_w, padding, shape_str(x));
  return w;
}

Window2d pool_window(const char* op, const Shape& x, int kernel, int stride, int padding) {
  TURBINE_CHECK(padding <= kernel / 2,
                "{}: padding {} exceeds half the kernel {} (a window could see only padding)", op,
                padding, kernel);
  return window(op, x, kernel, kernel, stride, padding);
}

Shape output_shape(const Window2d& w, int channels) {
  return {w.batch, channels, w.out_h(), w.out_w()};
}

// A conv2d's sizes, and the im2col buffer for one chunk of images: it stays
// under 64 MiB (a ResNet block on a batch of 28x28 images needs ~1.8 MiB
// per image), so a large batch runs in several passes.
// With groups, group g's output channels [g O/G, (g + 1) O/G) see its input
// channels only: rows [g ckk, (g + 1) ckk) of each image's im2col matrix.
struct ConvPlan {
  Window2d w;
  int O, ckk, plane, per_chunk, groups, O_group;  // ckk: one group's C/G * kh * kw
  int64_t x_image, y_image, col_image;             // elements per image
  Tensor cols;

  ConvPlan(const Window2d& window, const Tensor& weight, int groups_, Device device)
      : w(window), groups(groups_) {
    O = int(weight.dim(0));
    O_group = O / groups;
    ckk = int(weight.numel() / O);
    plane = w.out_h() * w.out_w();
    x_image = int64_t(w.channels) * w.height * w.width;
    y_image = int64_t(O) * plane;
    col_image = int64_t(ckk) * groups * plane;
    per_chunk = int(std::clamp<int64_t>((int64_t(1) << 24) / std::max<int64_t>(col_image, 1), 1,
                                        std::max(w.batch, 1)));
    cols = Tensor::empty({col_image * per_chunk}, DType::f32, device);
  }
  // The window of `count` images (a chunk).
  Window2d chunk(int count) const {
    Window2d c = w;
    c.batch = count;
    return c;
  }
};

// conv2d's checks: weight (O, C / groups, kh, kw), bias (O) or undefined.
Window2d conv_window(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     int stride, int padding, int groups) {
  check_f32(op, {&x, &weight, &bias});
  TURBINE_CHECK(groups >= 1 && weight.ndim() == 4 && x.ndim() == 4 && x.dim(1) % groups == 0 &&
                    weight.dim(0) % groups == 0,
                "{}: {} groups must divide the channels of x {} and the outputs of weight {}", op,
                groups, x.str(), weight.str());
  TURBINE_CHECK(weight.dim(1) * groups == x.dim(1),
                "{}: weight {} must be (O, C / groups, kh, kw) with C = the channels of x {} "
                "({} groups)",
                op, weight.str(), x.str(), groups);
  TURBINE_CHECK(!bias.defined() || bias.shape() == Shape({weight.dim(0)}),
                "{}: bias {} must be ({}) for weight {}", op, bias.str(), weight.dim(0),
                weight.str());
  return window(op, x.shape(), int(weight.dim(2)), int(weight.dim(3)), stride, padding);
}

}  // namespace

// x (N, C, H, W), weight (O, C/G, kh, kw), bias (O) -> y (N, O, OH, OW).
// Per chunk of images: cols (images, C*kh*kw, OH*OW), then per group g,
// y[n][g] (O/G, OH*OW) = weight[g] (O/G, C/G*kh*kw) @ cols[n][g] as one
// batched GEMM sharing the weight.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding,
              int groups) {
  ConvPlan p(conv_window("conv2d", x, weight, bias, stride, padding, groups), weight, groups,
             x.device());
  Tensor y = Tensor::empty(output_shape(p.w, p.O), DType::f32, x.device());
  kernels::Backend& be = backend_for(x.device());
  const int64_t w_group = int64_t(p.O_group) * p.ckk, col_group = int64_t(p.ckk) * p.plane,
                y_group = int64_t(p.O_group) * p.plane;
  for (int first = 0; first < p.w.batch; first += p.per_chunk) {
    const int count = std::min(p.per_chunk, p.w.batch - first);
    be.im2col(p.chunk(count), x.data<float>() + first * p.x_image, p.cols.data<float>());
    for (int g = 0; g < groups; ++g)
      be.gemm_strided_batched(false, false, p.O_group, p.plane, p.ckk, 1.0f,
                              weight.data<float>() + g * w_group, p.ckk, 0,
                              p.cols.data<float>() + g * col_group, p.plane, p.col_image, 0.0f,
                              y.data<float>() + first * p.y_image + g * y_group, p.plane,
                              p.y_image, count);
  }
  if (bias.defined())
    be.expand(bias.data<float>(), y.data<float>(), Broadcast{p.w.batch, p.O, p.plane}, 1.0f, true);
  return y;
}

// dweight (O, C*kh*kw) = sum over images of dy[n] (O, OH*OW) @ cols[n]^T,
// image by image in order (deterministic); dcols = weight^T @ dy[n], then
// col2im; dbias = sums of dy over (N, OH, OW).
void conv2d_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, int stride,
                     int padding, Tensor* dx, Tensor* dweight, Tensor* dbias, int groups) {
  const Window2d w = conv_window("conv2d_backward", x, weight, Tensor(), stride, padding, groups);
  const Shape y_shape = output_shape(w, int(weight.dim(0)));
  check_f32("conv2d_backward", {&dy});
  TURBINE_CHECK(dy.shape() == y_shape, "conv2d_backward: gradient {} for output {}", dy.str(),
                shape_str(y_shape));
  kernels::Backend& be = backend_for(x.device());
  if (dbias) {
    const bool acc = prepare_grad(dbias, Shape{y_shape[1]}, x.device());
    be.reduce_sum(dy.data<float>(), dbias->data<float>(),
                  Broadcast{w.batch, y_shape[1], y_shape[2] * y_shape[3]}, 1.0f, acc);
  }
  if (!dx && !dweight) return;
  ConvPlan p(w, weight, groups, x.device());
  const int64_t w_group = int64_t(p.O_group) * p.ckk, col_group = int64_t(p.ckk) * p.plane,
                y_group = int64_t(p.O_group) * p.plane;
  const bool acc_dx = dx ? prepare_grad(dx, x) : false;
  bool acc_dw = dweight ? prepare_grad(dweight, weight) : false;
  float* cols = p.cols.data<float>();
  for (int first = 0; first < w.batch; first += p.per_chunk) {
    const int count = std::min(p.per_chunk, w.batch - first);
    const float* dy_chunk = dy.data<float>() + first * p.y_image;
    if (dweight) {
      be.im2col(p.chunk(count), x.data<float>() + first * p.x_image, cols);
      for (int n = 0; n < count; ++n, acc_dw = true)
        for (int g = 0; g < groups; ++g)
          be.gemm(false, true, p.O_group, p.ckk, p.plane, 1.0f,
                  dy_chunk + n * p.y_image + g * y_group, p.plane,
                  cols + n * p.col_image + g * col_group, p.plane, acc_dw ? 1.0f : 0.0f,
                  dweight->data<float>() + g * w_group, p.ckk);
    }
    if (dx) {  // cols now holds dcols
      for (int g = 0; g < groups; ++g)
        be.gemm_strided_batched(true, false, p.ckk, p.plane, p.O_group, 1.0f,
                                weight.data<float>() + g * w_group, p.ckk, 0, dy_chunk + g * y_group,
                                p.plane, p.y_image, 0.0f, cols + g * col_group, p.plane,
                                p.col_image, count);
      be.col2im(p.chunk(count), cols, dx->data<float>() + first * p.x_image, acc_dx);
    }
  }
}

// x (N, C, H, W) -> (N, C, OH, OW); argmax i32 of the same shape.
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding, Tensor* argmax) {
  check_f32("max_pool2d", {&x});
  const Window2d w = pool_window("max_pool2d", x.shape(), kernel, stride, padding);
  Tensor y = Tensor::empty(output_shape(w, w.channels), DType::f32, x.device());
  Tensor local;
  Tensor& index = argmax ? *argmax : local;
  index = Tensor::empty(y.shape(), DType::i32, x.device());
  backend_for(x.device())
      .max_pool2d_forward(w, x.data<float>(), y.data<float>(), index.data<int32_t>());
  return y;
}

void max_pool2d_backward(const Shape& x_shape, const Tensor& argmax, const Tensor& dy, int kernel,
                         int stride, int padding, Tensor* dx) {
  check_f32("max_pool2d_backward", {&dy});
  const Window2d w = pool_window("max_pool2d_backward", x_shape, kernel, stride, padding);
  TURBINE_CHECK(dy.shape() == output_shape(w, w.channels) && argmax.shape() == dy.shape() &&
                    argmax.dtype() == DType::i32,
                "max_pool2d_backward: gradient {} and argmax {} for output {}", dy.str(),
                argmax.str(), shape_str(output_shape(w, w.channels)));
  const bool acc = prepare_grad(dx, x_shape, dy.device());
  backend_for(dy.device())
      .max_pool2d_backward(w, argmax.data<int32_t>(), dy.data<float>(), dx->data<float>(), acc);
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  check_f32("avg_pool2d", {&x});
  const Window2d w = pool_window("avg_pool2d", x.shape(), kernel, stride, padding);
  Tensor y = Tensor::empty(output_shape(w, w.channels), DType::f32, x.device());
  backend_for(x.device()).avg_pool2d_forward(w, x.data<float>(), y.data<float>());
  return y;
}

void avg_pool2d_backward(const Shape& x_shape, const Tensor& dy, int kernel, int stride,
                         int padding, Tensor* dx) {
  check_f32("avg_pool2d_backward", {&dy});
  const Window2d w = pool_window("avg_pool2d_backward", x_shape, kernel, stride, padding);
  TURBINE_CHECK(dy.shape() == output_shape(w, w.channels),
                "avg_pool2d_backward: gradient {} for output {}", dy.str(),
                shape_str(output_shape(w, w.channels)));
  const bool acc = prepare_grad(dx, x_shape, dy.device());
  backend_for(dy.device()).avg_pool2d_backward(w, dy.data<float>(), dx->data<float>(), acc);
}

}  // namespace turbine::ops
