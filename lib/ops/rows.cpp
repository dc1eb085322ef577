// Gather and scatter of rows within each batch (random-LTD token dropping).
#include <algorithm>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

namespace {
// Validates index (B, K) against x (B, T, C): in range and distinct per batch.
Tensor checked_index(const char* op, const Tensor& x, const Tensor& index_any) {
  TURBINE_CHECK(x.ndim() == 3, "{}: expected (B, T, C), got {}", op, x.str());
  const Tensor index = to_index(index_any, op);
  TURBINE_CHECK(index.ndim() == 2 && index.dim(0) == x.dim(0),
                "{}: index {} must be (B, K) with B = {}", op, index.str(), x.dim(0));
  const int64_t T = x.dim(1), K = index.dim(1);
  auto host = index.to(Device::cpu()).to_vector<int64_t>();
  for (int64_t b = 0; b < index.dim(0); ++b) {
    std::vector<int64_t> rows(host.begin() + b * K, host.begin() + (b + 1) * K);
    std::sort(rows.begin(), rows.end());
    for (size_t i = 0; i < rows.size(); ++i) {
      TURBINE_CHECK(rows[i] >= 0 && rows[i] < T, "{}: row {} out of range [0, {})", op, rows[i], T);
      TURBINE_CHECK(i == 0 || rows[i] != rows[i - 1], "{}: row {} picked twice in batch {}", op,
                    rows[i], b);
    }
  }
  return index.to(x.device());
}
}  // namespace

Tensor gather_rows(const Tensor& x, const Tensor& index_any) {
  const kernels::FloatType t = check_activations("gather_rows", {&x});
  const Tensor index = checked_index("gather_rows", x, index_any);
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2), K = index.dim(1);
  Tensor y = Tensor::empty({B, K, C}, x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == kernels::FloatType::f32)
    be.gather_rows(x.data<float>(), index.data<int64_t>(), y.data<float>(), B, T, K, C, false);
  else
    be.gather_rows16(t, bits(x), index.data<int64_t>(), bits(y), B, T, K, C, false);
  return y;
}

void gather_rows_backward(const Shape& x_shape, const Tensor& index_any, const Tensor& dy,
                          Tensor* dx) {
  const kernels::FloatType t = check_activations("gather_rows_backward", {&dy});
  const Tensor index = to_index(index_any, "gather_rows_backward");
  const int64_t B = x_shape[0], T = x_shape[1], C = x_shape[2], K = index.dim(1);
  // Rows not picked get zero gradient, so a fresh slot starts from zeros.
  if (!dx->defined()) *dx = Tensor::zeros(x_shape, dy.dtype(), dy.device());
  prepare_grad(dx, x_shape, dy.device(), dy.dtype());
  kernels::Backend& be = backend_for(dy.device());
  if (t == kernels::FloatType::f32)
    be.scatter_rows(dy.data<float>(), index.data<int64_t>(), dx->data<float>(), B, T, K, C, true);
  else
    be.scatter_rows16(t, bits(dy), index.data<int64_t>(), bits(*dx), B, T, K, C, true);
}

Tensor scatter_rows(const Tensor& base, const Tensor& index_any, const Tensor& src) {
  const kernels::FloatType t = check_activations("scatter_rows", {&base, &src});
  const Tensor index = checked_index("scatter_rows", base, index_any);
  const int64_t B = base.dim(0), T = base.dim(1), C = base.dim(2), K = index.dim(1);
  TURBINE_CHECK(src.shape() == Shape({B, K, C}), "scatter_rows: src {} must be ({}, {}, {})",
                src.str(), B, K, C);
  Tensor y = base.clone();
  kernels::Backend& be = backend_for(base.device());
  if (t == kernels::FloatType::f32)
    be.scatter_rows(src.data<float>(), index.data<int64_t>(), y.data<float>(), B, T, K, C, false);
  else
    be.scatter_rows16(t, bits(src), index.data<int64_t>(), bits(y), B, T, K, C, false);
  return y;
}

void scatter_rows_backward(const Tensor& index_any, const Tensor& dy, Tensor* dbase, Tensor* dsrc) {
  const kernels::FloatType t = check_activations("scatter_rows_backward", {&dy});
  const bool f32 = t == kernels::FloatType::f32;
  const Tensor index = to_index(index_any, "scatter_rows_backward");
  const int64_t B = dy.dim(0), T = dy.dim(1), C = dy.dim(2), K = index.dim(1);
  kernels::Backend& be = backend_for(dy.device());
  if (dbase) {  // replaced rows got no gradient from base
    Tensor g = dy.clone();
    if (f32)
      be.zero_rows(g.data<float>(), index.data<int64_t>(), B, T, K, C);
    else
      be.zero_rows16(t, bits(g), index.data<int64_t>(), B, T, K, C);
    if (dbase->defined()) {
      prepare_grad(dbase, dy);
      if (f32)
        be.add(dbase->data<float>(), g.data<float>(), dbase->data<float>(), g.numel(), 1.0f, 1.0f);
      else
        be.add16(t, bits(*dbase), bits(g), bits(*dbase), g.numel(), 1.0f, 1.0f);
    } else {
      *dbase = g;
    }
  }
  if (dsrc) {
    const bool acc = prepare_grad(dsrc, Shape{B, K, C}, dy.device(), dy.dtype());
    if (f32)
      be.gather_rows(dy.data<float>(), index.data<int64_t>(), dsrc->data<float>(), B, T, K, C, acc);
    else
      be.gather_rows16(t, bits(dy), index.data<int64_t>(), bits(*dsrc), B, T, K, C, acc);
  }
}

}  // namespace turbine::ops
