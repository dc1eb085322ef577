// Differentiable versions of the ops: each runs the op's forward and, when a
// gradient is needed, records a tape node that calls the op's backward.
// Models (lib/nn) are written with these.
#pragma once

#include "ops/ops.hpp"

namespace turbine::ag {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, const Tensor& b);
Tensor add_bias(const Tensor& x, const Tensor& bias);  // bias (C) over x (..., C)
Tensor scale(const Tensor& x, float alpha);
Tensor gelu(const Tensor& x);
Tensor dropout(const Tensor& x, float p, const ops::DropoutRng& rng);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor softmax(const Tensor& x);
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
Tensor embedding(const Tensor& ids, const Tensor& table);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options);
ops::Qkv split_qkv(const Tensor& qkv, int heads);
Tensor merge_heads(const Tensor& x);
Tensor gather_rows(const Tensor& x, const Tensor& index);
Tensor scatter_rows(const Tensor& base, const Tensor& index, const Tensor& src);
// A differentiable view of a contiguous tensor with a new shape.
Tensor reshape(const Tensor& x, const Shape& shape);

}  // namespace turbine::ag
