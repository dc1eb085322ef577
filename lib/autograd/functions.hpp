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
// x in another float type (f32, bf16, f16); the gradient comes back in x's.
Tensor cast(const Tensor& x, DType dtype);
Tensor scale(const Tensor& x, float alpha);
Tensor gelu(const Tensor& x);
Tensor dropout(const Tensor& x, float p, const ops::DropoutRng& rng);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor softmax(const Tensor& x);
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// The LM head and cross entropy fused, in tiles of rows (Arctic Long Sequence
// Training's tiled loss): h (N, H), weight (V, H), targets (N) -> the summed
// loss of the counted rows (target != ignore_index) divided by `normalizer`
// (<= 0: their count, the mean), 1 element. A tile's logits (tile_rows, V)
// exist only while it is computed; backward computes them again, tile by
// tile. With one tile over all rows (tile_rows <= 0 or >= N) the logits are
// kept for backward instead, and the result is linear + cross_entropy's,
// bit for bit.
Tensor lm_head_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets,
                             int64_t ignore_index, int64_t normalizer, int64_t tile_rows);
Tensor embedding(const Tensor& ids, const Tensor& table);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options);
// Multi-modal causal attention (ops::mmca_attention), differentiable.
Tensor mmca_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                      const ops::AttentionOptions& options, const ops::MmcaMasks& masks);
ops::Qkv split_qkv(const Tensor& qkv, int heads);
Tensor merge_heads(const Tensor& x);
Tensor gather_rows(const Tensor& x, const Tensor& index);
Tensor scatter_rows(const Tensor& base, const Tensor& index, const Tensor& src);
// A differentiable view of a contiguous tensor with a new shape.
Tensor reshape(const Tensor& x, const Shape& shape);

// ---- PPO and image-model ops (issue 12); shapes and rules as in ops.hpp ----------
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor clamp(const Tensor& x, float lo, float hi);
// One operand full-size, the other the same or broadcast (ops.hpp).
Tensor mul(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor sum(const Tensor& x);                             // -> (1)
Tensor mean(const Tensor& x);                            // -> (1)
Tensor sum_last(const Tensor& x, bool keepdim = false);  // (..., C) -> (...) or (..., 1)
Tensor mean_last(const Tensor& x, bool keepdim = false);
Tensor concat(std::span<const Tensor> xs, int dim);
Tensor log_softmax(const Tensor& x);
// log_softmax(logits)[..., ids]: logits (..., V), ids (...) -> (...).
Tensor token_log_probs(const Tensor& logits, const Tensor& ids);
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride = 1,
              int padding = 0, int groups = 1);
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding = 0);
// GroupNorm and BatchNorm2d (ops/ops.hpp); batch_norm2d updates the running
// statistics in training and uses them otherwise.
Tensor group_norm(const Tensor& x, int groups, const Tensor& weight, const Tensor& bias,
                  float eps = 1e-5f);
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* running_mean,
                    Tensor* running_var, bool training, float momentum = 0.1f, float eps = 1e-5f);
// x (N, ...) -> (N, the rest's product): a reshape.
Tensor flatten(const Tensor& x);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding = 0);

}  // namespace turbine::ag
