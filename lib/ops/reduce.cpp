// Sums and means (of everything, or over the last dim) and concat along a dim,
// with their backward passes (spreading the gradient back; slicing it).
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

using kernels::Broadcast;

namespace {

// The shape of a last-dim reduction of `shape` (see ops.hpp's rule).
Shape last_reduced(const Shape& shape, bool keepdim) {
  if (shape.size() <= 1) return {1};
  Shape out = shape;
  if (keepdim)
    out.back() = 1;
  else
    out.pop_back();
  return out;
}

// Sums (or means) of x's last dim, or of all of x, as (rows, cols) -> (rows).
Tensor reduce(const char* op, const Tensor& x, bool last_dim, bool keepdim, bool average) {
  check_f32(op, {&x});
  TURBINE_CHECK(x.numel() > 0, "{}: empty tensor {}", op, x.str());
  const int64_t cols = last_dim ? x.dim(-1) : x.numel();
  Tensor y =
      Tensor::empty(last_dim ? last_reduced(x.shape(), keepdim) : Shape{1}, DType::f32, x.device());
  backend_for(x.device())
      .reduce_sum(x.data<float>(), y.data<float>(), Broadcast{1, x.numel() / cols, cols},
                  average ? 1.0f / static_cast<float>(cols) : 1.0f, false);
  return y;
}

}  // namespace

// x (...) -> (1)
Tensor sum(const Tensor& x) {
  return reduce("sum", x, false, false, false);
}
Tensor mean(const Tensor& x) {
  return reduce("mean", x, false, false, true);
}

// x (..., C) -> (...) or (..., 1)
Tensor sum_last(const Tensor& x, bool keepdim) {
  return reduce("sum_last", x, true, keepdim, false);
}
Tensor mean_last(const Tensor& x, bool keepdim) {
  return reduce("mean_last", x, true, keepdim, true);
}

// dy (rows) -> dx (x_shape) viewed as (rows, cols)
void reduce_backward(const Tensor& dy, const Shape& x_shape, float alpha, Tensor* dx) {
  check_f32("reduce_backward", {&dy});
  const int64_t n = shape_numel(x_shape);
  TURBINE_CHECK(dy.numel() > 0 && n % dy.numel() == 0,
                "reduce_backward: gradient {} does not divide the input's shape {}", dy.str(),
                shape_str(x_shape));
  const bool acc = prepare_grad(dx, x_shape, dy.device());
  backend_for(dy.device())
      .expand(dy.data<float>(), dx->data<float>(), Broadcast{1, dy.numel(), n / dy.numel()}, alpha,
              acc);
}

// ---- concat ------------------------------------------------------------------------

namespace {

// Each tensor of `shapes` as (outer, size along dim * inner): the rows that
// concat interleaves.
struct ConcatLayout {
  int dim;
  int64_t outer = 1, inner = 1, total = 0;  // total: the result's size along dim
};

ConcatLayout concat_layout(const char* op, std::span<const Shape> shapes, int dim) {
  TURBINE_CHECK(!shapes.empty(), "{}: nothing to join", op);
  const Shape& first = shapes[0];
  const int rank = static_cast<int>(first.size());
  TURBINE_CHECK(dim >= -rank && dim < rank, "{}: dim {} out of range for rank {} ({})", op, dim,
                rank, shape_str(first));
  ConcatLayout l{dim < 0 ? dim + rank : dim};
  for (int d = 0; d < rank; ++d) {
    if (d < l.dim) l.outer *= first[d];
    if (d > l.dim) l.inner *= first[d];
  }
  for (const Shape& s : shapes) {
    bool agree = static_cast<int>(s.size()) == rank;
    for (int d = 0; agree && d < rank; ++d) agree = d == l.dim || s[d] == first[d];
    TURBINE_CHECK(agree, "{}: shapes {} and {} differ outside dim {}", op, shape_str(first),
                  shape_str(s), l.dim);
    l.total += s[l.dim];
  }
  return l;
}

}  // namespace

// xs[i] (..., n_i, ...) -> (..., sum n_i, ...)
Tensor concat(std::span<const Tensor> xs, int dim) {
  std::vector<Shape> shapes;
  for (const Tensor& x : xs) {
    check_f32("concat", {&x, &xs[0]});
    shapes.push_back(x.shape());
  }
  const ConcatLayout l = concat_layout("concat", shapes, dim);
  Shape out_shape = shapes[0];
  out_shape[l.dim] = l.total;
  Tensor y = Tensor::empty(out_shape, DType::f32, xs[0].device());
  kernels::Backend& be = backend_for(y.device());
  int64_t offset = 0;  // along dim
  for (const Tensor& x : xs) {
    const int64_t cols = x.dim(l.dim) * l.inner;
    be.copy_rows_strided(x.data<float>(), cols, y.data<float>() + offset * l.inner,
                         l.total * l.inner, l.outer, cols, false);
    offset += x.dim(l.dim);
  }
  return y;
}

void concat_backward(const Tensor& dy, std::span<const Shape> shapes, int dim,
                     std::span<Tensor* const> dxs) {
  check_f32("concat_backward", {&dy});
  const ConcatLayout l = concat_layout("concat_backward", shapes, dim);
  TURBINE_CHECK(dxs.size() == shapes.size() && dy.dim(l.dim) == l.total,
                "concat_backward: gradient {} for {} inputs joined to size {} along dim {}",
                dy.str(), shapes.size(), l.total, l.dim);
  kernels::Backend& be = backend_for(dy.device());
  int64_t offset = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const int64_t cols = shapes[i][l.dim] * l.inner;
    if (dxs[i]) {
      const bool acc = prepare_grad(dxs[i], shapes[i], dy.device());
      be.copy_rows_strided(dy.data<float>() + offset * l.inner, l.total * l.inner,
                           dxs[i]->data<float>(), cols, l.outer, cols, acc);
    }
    offset += shapes[i][l.dim];
  }
}

}  // namespace turbine::ops
