// Tensor collectives: a block transpose puts the parts a collective moves
// next to each other, the buffer collective runs, and a second transpose
// puts the received parts where the result's layout wants them.
#include "dist/collectives.hpp"

#include <climits>

#include "core/error.hpp"

namespace turbine::dist {

namespace {

int64_t product(const Shape& shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= shape[i];
  return n;
}

size_t checked_dim(const char* collective, const Tensor& x, int dim) {
  const int n = x.ndim();
  TURBINE_CHECK(dim >= -n && dim < n, "{}: dim {} of a tensor {} with {} dims", collective, dim,
                x.str(), n);
  return static_cast<size_t>(dim < 0 ? dim + n : dim);
}

// x's dim `dim` cut into the group's parts: the size of one.
int64_t part_size(const char* collective, const ProcessGroup& group, const Tensor& x, size_t dim) {
  const int64_t extent = x.shape()[dim];
  TURBINE_CHECK(extent % group.size() == 0,
                "{}: dim {} of {} has {} entries, which the group {} of {} ranks does not divide "
                "into equal parts: make it a multiple of {}",
                collective, dim, x.str(), extent, group.name(), group.size(), group.size());
  return extent / group.size();
}

int as_int(const char* collective, int64_t n) {
  TURBINE_CHECK(n <= INT_MAX, "{}: {} blocks or words is more than a kernel's int sizes allow",
                collective, n);
  return static_cast<int>(n);
}

// x seen as (m, n, inner) elements, contiguous, returned as (n, m, inner)
// with `shape`: a transpose of blocks of `inner`, which is what merge_heads
// does for (B, H, T, D) -> (B, T, H, D) with B = 1 (one kernel on either
// backend, not a copy per block). The kernel is f32, so the blocks move as
// 4-byte words, any dtype's bits kept. May return a view of x.
Tensor swap_blocks(const char* collective, const Tensor& x, int64_t m, int64_t n, int64_t inner,
                   const Shape& shape) {
  if (m == 1 || n == 1) return x.view(shape);  // nothing moves
  const int64_t bytes = inner * int64_t(dtype_size(x.dtype()));
  TURBINE_CHECK(bytes % 4 == 0,
                "{}: blocks of {} {} elements are not whole 4-byte words: make the dims after "
                "the split dim a multiple of {}",
                collective, inner, dtype_name(x.dtype()), 4 / dtype_size(x.dtype()));
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  backend_for(x.device())
      .merge_heads(static_cast<const float*>(x.raw_data()), static_cast<float*>(y.raw_data()), 1,
                   as_int(collective, m), as_int(collective, n), as_int(collective, bytes / 4),
                   false);
  return y;
}

// x with dim `dim` cut into the group's parts, laid out part by part
// (P, parts' elements): the send buffer of a scatter along dim.
Tensor parts_first(const char* collective, const ProcessGroup& group, const Tensor& x, size_t dim) {
  const Shape& s = x.shape();
  const int64_t part = part_size(collective, group, x, dim);
  const int64_t p = group.size();
  return swap_blocks(collective, x, product(s, 0, dim), p, part * product(s, dim + 1, s.size()),
                     {x.numel()});
}

// `parts` (P, part with shape `part_shape`) from each rank, concatenated
// along `dim` in rank order.
Tensor concat_parts(const char* collective, const Tensor& parts, Shape part_shape, size_t dim,
                    int p) {
  const int64_t outer = product(part_shape, 0, dim);
  const int64_t inner = product(part_shape, dim, part_shape.size());
  part_shape[dim] *= p;
  return swap_blocks(collective, parts, p, outer, inner, part_shape);
}

}  // namespace

Tensor all_reduce_sum(ProcessGroup& group, const Tensor& x) {
  TURBINE_CHECK(x.dtype() == DType::f32, "all_reduce_sum of {}: sums are of f32 tensors", x.str());
  Tensor y = x.clone();
  if (group.size() > 1) group.buffers(x.device()).allreduce_sum(y.data<float>(), y.numel());
  return y;
}

Tensor all_gather(ProcessGroup& group, const Tensor& x, int dim) {
  const size_t d = checked_dim("all_gather", x, dim);
  if (group.size() == 1) return x.clone();
  const Tensor send = x.contiguous();
  Tensor parts = Tensor::empty({group.size() * x.numel()}, x.dtype(), x.device());
  group.buffers(x.device()).allgather(send.raw_data(), parts.raw_data(), x.numel(), x.dtype());
  return concat_parts("all_gather", parts, x.shape(), d, group.size());
}

Tensor reduce_scatter_sum(ProcessGroup& group, const Tensor& x, int dim) {
  const size_t d = checked_dim("reduce_scatter_sum", x, dim);
  Shape out_shape = x.shape();
  out_shape[d] = part_size("reduce_scatter_sum", group, x, d);
  if (group.size() == 1) return x.clone();
  const Tensor send = parts_first("reduce_scatter_sum", group, x.contiguous(), d);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  group.buffers(x.device()).reduce_scatter_sum(send.raw_data(), y.raw_data(), y.numel(), x.dtype());
  return y;
}

Tensor local_part(ProcessGroup& group, const Tensor& x, int dim) {
  const size_t d = checked_dim("local_part", x, dim);
  Shape out_shape = x.shape();
  out_shape[d] = part_size("local_part", group, x, d);
  const Tensor parts = parts_first("local_part", group, x.contiguous(), d);
  const int64_t n = shape_numel(out_shape);
  // A copy, so the result does not keep the other ranks' parts alive.
  return parts.narrow(0, group.rank() * n, n).clone().view(out_shape);
}

Tensor all_to_all(ProcessGroup& group, const Tensor& x, int scatter_dim, int gather_dim) {
  const size_t s = checked_dim("all_to_all", x, scatter_dim);
  const size_t g = checked_dim("all_to_all", x, gather_dim);
  TURBINE_CHECK(s != g, "all_to_all: scatter and gather dims are both {}; they must differ", s);
  Shape part_shape = x.shape();
  part_shape[s] = part_size("all_to_all", group, x, s);
  if (group.size() == 1) return x.clone();
  const Tensor send = parts_first("all_to_all", group, x.contiguous(), s);
  Tensor parts = Tensor::empty({x.numel()}, x.dtype(), x.device());
  group.buffers(x.device())
      .all_to_all(send.raw_data(), parts.raw_data(), shape_numel(part_shape), x.dtype());
  return concat_parts("all_to_all", parts, part_shape, g, group.size());
}

}  // namespace turbine::dist
