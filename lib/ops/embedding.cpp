// Embedding lookup; token ids of any integer dtype become i64 indices.
#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

Tensor to_index(const Tensor& ids, const char* op) {
  TURBINE_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32 ||
                    ids.dtype() == DType::u16,
                "{}: ids must be i32, i64 or u16, got {}", op, ids.str());
  if (ids.dtype() == DType::i64) return ids.contiguous();
  return ids.contiguous().to(DType::i64);
}

Tensor embedding(const Tensor& ids_any, const Tensor& table) {
  check_f32("embedding", {&table});
  TURBINE_CHECK(table.ndim() == 2, "embedding: table must be (vocab, dim), got {}", table.str());
  const Tensor ids = to_index(ids_any, "embedding");
  check_same_device("embedding", {&ids, &table});
  const int64_t vocab = table.dim(0), dim = table.dim(1);
  for (int64_t id : ids.to(Device::cpu()).to_vector<int64_t>())
    TURBINE_CHECK(id >= 0 && id < vocab, "embedding: token id {} outside the vocabulary [0, {})",
                  id, vocab);
  Shape shape = ids.shape();
  shape.push_back(dim);
  Tensor y = Tensor::empty(shape, DType::f32, table.device());
  backend_for(table.device())
      .embedding_forward(ids.data<int64_t>(), table.data<float>(), y.data<float>(), ids.numel(),
                         vocab, dim);
  return y;
}

void embedding_backward(const Tensor& ids_any, const Tensor& table, const Tensor& dy,
                        Tensor* dtable) {
  check_f32("embedding_backward", {&table, &dy});
  const Tensor ids = to_index(ids_any, "embedding_backward");
  const int64_t vocab = table.dim(0), dim = table.dim(1);
  TURBINE_CHECK(dy.numel() == ids.numel() * dim, "embedding_backward: gradient {} for {} ids",
                dy.str(), ids.numel());
  const bool acc = prepare_grad(dtable, table);
  backend_for(table.device())
      .embedding_backward(ids.data<int64_t>(), dy.data<float>(), dtable->data<float>(),
                          ids.numel(), vocab, dim, acc);
}

}  // namespace turbine::ops
