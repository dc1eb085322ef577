// Differentiable ops: forward now, backward recorded on the tape.
#include "autograd/functions.hpp"

#include "autograd/tape.hpp"
#include "core/error.hpp"

namespace turbine::ag {

using autograd::needs_grad;
using autograd::Node;
using autograd::record;

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor y = ops::linear(x, weight, bias);
  if (needs_grad({&x, &weight, &bias}))
    record({&x, &weight, &bias}, {&y}, [x, weight](Node& n) {
      ops::linear_backward(x, weight, n.grad_output(0), n.grad_input(0), n.grad_input(1),
                           n.grad_input(2));
    });
  return y;
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  ops::check_activations("cast", {&x});
  TURBINE_CHECK(ops::is_float_type(dtype), "cast: {} to {}: only between f32, bf16 and f16",
                x.str(), dtype_name(dtype));
  Tensor y = x.contiguous().to(dtype);
  if (needs_grad({&x}))
    record({&x}, {&y}, [from = x.dtype()](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::scale_backward(n.grad_output(0).to(from), 1.0f, g);
    });
  return y;
}

Tensor add_bias(const Tensor& x, const Tensor& bias) {
  Tensor y = ops::add_bias(x, bias);
  if (needs_grad({&x, &bias}))
    record({&x, &bias}, {&y}, [](Node& n) {
      ops::add_bias_backward(n.grad_output(0), n.grad_input(0), n.grad_input(1));
    });
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor y = ops::matmul(a, b);
  if (needs_grad({&a, &b}))
    record({&a, &b}, {&y}, [a, b](Node& n) {
      ops::matmul_backward(a, b, n.grad_output(0), n.grad_input(0), n.grad_input(1));
    });
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = ops::add(a, b);
  if (needs_grad({&a, &b}))
    record({&a, &b}, {&y}, [](Node& n) {
      for (size_t i = 0; i < 2; ++i)
        if (Tensor* g = n.grad_input(i)) ops::scale_backward(n.grad_output(0), 1.0f, g);
    });
  return y;
}

Tensor scale(const Tensor& x, float alpha) {
  Tensor y = ops::scale(x, alpha);
  if (needs_grad({&x}))
    record({&x}, {&y}, [alpha](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::scale_backward(n.grad_output(0), alpha, g);
    });
  return y;
}

Tensor gelu(const Tensor& x) {
  Tensor y = ops::gelu(x);
  if (needs_grad({&x}))
    record({&x}, {&y}, [x](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::gelu_backward(x, n.grad_output(0), g);
    });
  return y;
}

Tensor dropout(const Tensor& x, float p, const ops::DropoutRng& rng) {
  if (p == 0.0f) return x;
  Tensor y = ops::dropout(x, p, rng);
  if (needs_grad({&x}))
    record({&x}, {&y}, [p, rng](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::dropout_backward(n.grad_output(0), p, rng, g);
    });
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  ops::LayerNormSaved saved;
  Tensor y = ops::layer_norm(x, weight, bias, eps, &saved);
  if (needs_grad({&x, &weight, &bias}))
    record({&x, &weight, &bias}, {&y}, [x, weight, saved](Node& n) {
      ops::layer_norm_backward(x, weight, saved, n.grad_output(0), n.grad_input(0), n.grad_input(1),
                               n.grad_input(2));
    });
  return y;
}

Tensor softmax(const Tensor& x) {
  Tensor y = ops::softmax(x);
  if (needs_grad({&x})) {
    Tensor saved_y = y;  // the node keeps the output's values, not its autograd state
    record({&x}, {&y}, [saved_y](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::softmax_backward(saved_y, n.grad_output(0), g);
    });
  }
  return y;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  ops::CrossEntropySaved saved;
  Tensor loss = ops::cross_entropy(logits, targets, ignore_index, &saved);
  if (needs_grad({&logits}))
    record({&logits}, {&loss}, [logits, saved, ignore_index](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::cross_entropy_backward(logits, saved, ignore_index, n.grad_output(0).item(), g);
    });
  return loss;
}

Tensor lm_head_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets,
                             int64_t ignore_index, int64_t normalizer, int64_t tile_rows) {
  TURBINE_CHECK(h.ndim() == 2 && h.is_contiguous() && weight.ndim() == 2 &&
                    weight.dim(1) == h.dim(1) && targets.numel() == h.dim(0),
                "lm_head_cross_entropy: h (N, H) contiguous, weight (V, H), targets (N); got {}, "
                "{}, {}",
                h.str(), weight.str(), targets.str());
  const int64_t rows = h.dim(0);
  const int64_t tile = tile_rows <= 0 ? rows : std::min(tile_rows, rows);
  const Tensor ids = ops::to_index(targets.view({rows}), "lm_head_cross_entropy");
  // Tile t holds rows [t * tile, ...); its logits exist while it is computed.
  const auto tile_logits = [h, weight, rows, tile](int64_t t) {
    return ops::linear(h.narrow(0, t * tile, std::min(tile, rows - t * tile)), weight, Tensor());
  };
  const int64_t tiles = (rows + tile - 1) / tile;
  // Each tile's cross-entropy state (its log-sum-exps and targets) stays for
  // backward; a single tile keeps its logits too.
  std::vector<ops::CrossEntropySaved> saved(static_cast<size_t>(tiles));
  Tensor kept_logits;
  double total = 0;
  int64_t counted = 0;
  for (int64_t t = 0; t < tiles; ++t) {
    Tensor logits = tile_logits(t);
    ops::cross_entropy(logits, ids.narrow(0, t * tile, logits.dim(0)), ignore_index,
                       &saved[size_t(t)]);
    total += saved[size_t(t)].total;
    counted += saved[size_t(t)].counted;
    if (tiles == 1) kept_logits = std::move(logits);
  }
  const int64_t divisor = normalizer > 0 ? normalizer : counted;
  const float value = divisor > 0 ? static_cast<float>(total / double(divisor)) : 0.0f;
  Tensor loss = Tensor::from_vector<float>({1}, std::vector<float>{value}, h.device());
  if (needs_grad({&h, &weight}))
    record(
        {&h, &weight}, {&loss},
        [h, weight, ignore_index, tile, tiles, divisor, tile_logits, saved, kept_logits](Node& n) {
          const float dloss = n.grad_output(0).item();
          Tensor* dh = n.grad_input(0);
          Tensor* dweight = n.grad_input(1);
          // Several tiles add their parts into one zeroed dh.
          if (tiles > 1 && dh && !dh->defined())
            *dh = Tensor::zeros(h.shape(), h.dtype(), h.device());
          for (int64_t t = 0; t < tiles; ++t) {
            ops::CrossEntropySaved tile_saved = saved[size_t(t)];
            tile_saved.counted = divisor;  // backward scales by dloss / counted
            const Tensor logits = tiles == 1 ? kept_logits : tile_logits(t);
            Tensor dlogits;
            ops::cross_entropy_backward(logits, tile_saved, ignore_index, dloss, &dlogits);
            if (tiles == 1) {
              ops::linear_backward(h, weight, dlogits, dh, dweight, nullptr);
            } else {
              Tensor dh_tile = dh ? dh->narrow(0, t * tile, logits.dim(0)) : Tensor();
              ops::linear_backward(h.narrow(0, t * tile, logits.dim(0)), weight, dlogits,
                                   dh ? &dh_tile : nullptr, dweight, nullptr);
            }
          }
        });
  return loss;
}

Tensor embedding(const Tensor& ids, const Tensor& table) {
  Tensor y = ops::embedding(ids, table);
  if (needs_grad({&table}))
    record({&ids, &table}, {&y}, [ids, table](Node& n) {
      if (Tensor* g = n.grad_input(1)) ops::embedding_backward(ids, table, n.grad_output(0), g);
    });
  return y;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options) {
  Tensor lse;
  Tensor out = ops::attention(q, k, v, options, &lse);
  if (needs_grad({&q, &k, &v})) {
    Tensor saved_out = out;
    record({&q, &k, &v}, {&out}, [q, k, v, saved_out, lse, options](Node& n) {
      ops::attention_backward(q, k, v, saved_out, lse, n.grad_output(0), options, n.grad_input(0),
                              n.grad_input(1), n.grad_input(2));
    });
  }
  return out;
}

Tensor mmca_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                      const ops::AttentionOptions& options, const ops::MmcaMasks& masks) {
  TURBINE_CHECK(!options.mask.defined(), "mmca_attention: the masks come from the token kinds");
  ops::AttentionOptions text = options, image = options;
  text.mask = masks.text;
  image.mask = masks.image;
  return add(attention(q, k, v, text), attention(q, k, v, image));
}

ops::Qkv split_qkv(const Tensor& qkv, int heads) {
  ops::Qkv out = ops::split_qkv(qkv, heads);
  if (needs_grad({&qkv})) {
    const Shape shape = qkv.shape();
    const Device device = qkv.device();
    record({&qkv}, {&out.q, &out.k, &out.v}, [shape, device, heads](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::split_qkv_backward(&n.grad_output(0), &n.grad_output(1), &n.grad_output(2), shape,
                                device, heads, g);
    });
  }
  return out;
}

Tensor merge_heads(const Tensor& x) {
  Tensor y = ops::merge_heads(x);
  if (needs_grad({&x})) {
    const int heads = static_cast<int>(x.dim(1));
    record({&x}, {&y}, [heads](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::merge_heads_backward(n.grad_output(0), heads, g);
    });
  }
  return y;
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  Tensor y = ops::gather_rows(x, index);
  if (needs_grad({&x})) {
    const Shape shape = x.shape();
    record({&x}, {&y}, [shape, index](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::gather_rows_backward(shape, index, n.grad_output(0), g);
    });
  }
  return y;
}

Tensor scatter_rows(const Tensor& base, const Tensor& index, const Tensor& src) {
  Tensor y = ops::scatter_rows(base, index, src);
  if (needs_grad({&base, &src}))
    record({&base, &src}, {&y}, [index](Node& n) {
      ops::scatter_rows_backward(index, n.grad_output(0), n.grad_input(0), n.grad_input(1));
    });
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = x.view(shape);
  if (needs_grad({&x})) {
    const Shape original = x.shape();
    record({&x}, {&y}, [original](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::scale_backward(n.grad_output(0).view(original), 1.0f, g);
    });
  }
  return y;
}

// ---- PPO and image-model ops (issue 12) ---------------------------------------------

Tensor exp(const Tensor& x) {
  Tensor y = ops::exp(x);
  if (needs_grad({&x})) {
    Tensor saved_y = y;  // exp's slope is its output
    record({&x}, {&y}, [saved_y](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::exp_backward(saved_y, n.grad_output(0), g);
    });
  }
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = ops::log(x);
  if (needs_grad({&x}))
    record({&x}, {&y}, [x](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::log_backward(x, n.grad_output(0), g);
    });
  return y;
}

Tensor log_sigmoid(const Tensor& x) {
  Tensor y = ops::log_sigmoid(x);
  if (needs_grad({&x}))
    record({&x}, {&y}, [x](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::log_sigmoid_backward(x, n.grad_output(0), g);
    });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = ops::relu(x);
  if (needs_grad({&x}))
    record({&x}, {&y}, [x](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::relu_backward(x, n.grad_output(0), g);
    });
  return y;
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  Tensor y = ops::clamp(x, lo, hi);
  if (needs_grad({&x}))
    record({&x}, {&y}, [x, lo, hi](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::clamp_backward(x, lo, hi, n.grad_output(0), g);
    });
  return y;
}

namespace {
using BinaryBackward = void (*)(const Tensor&, const Tensor&, const Tensor&, Tensor*, Tensor*);

Tensor binary(Tensor (*forward)(const Tensor&, const Tensor&), BinaryBackward backward,
              const Tensor& a, const Tensor& b) {
  Tensor y = forward(a, b);
  if (needs_grad({&a, &b}))
    record({&a, &b}, {&y}, [a, b, backward](Node& n) {
      backward(a, b, n.grad_output(0), n.grad_input(0), n.grad_input(1));
    });
  return y;
}

// Sums and means: the backward spreads alpha * dy over x's shape.
Tensor reduction(const Tensor& x, Tensor y, float alpha) {
  if (needs_grad({&x})) {
    const Shape shape = x.shape();
    record({&x}, {&y}, [shape, alpha](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::reduce_backward(n.grad_output(0), shape, alpha, g);
    });
  }
  return y;
}
}  // namespace

Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(ops::mul, ops::mul_backward, a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary(ops::minimum, ops::minimum_backward, a, b);
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary(ops::maximum, ops::maximum_backward, a, b);
}

Tensor sum(const Tensor& x) {
  return reduction(x, ops::sum(x), 1.0f);
}
Tensor mean(const Tensor& x) {
  return reduction(x, ops::mean(x), 1.0f / static_cast<float>(x.numel()));
}
Tensor sum_last(const Tensor& x, bool keepdim) {
  return reduction(x, ops::sum_last(x, keepdim), 1.0f);
}
Tensor mean_last(const Tensor& x, bool keepdim) {
  return reduction(x, ops::mean_last(x, keepdim), 1.0f / static_cast<float>(x.dim(-1)));
}

Tensor concat(std::span<const Tensor> xs, int dim) {
  Tensor y = ops::concat(xs, dim);
  std::vector<const Tensor*> inputs;
  std::vector<Shape> shapes;
  for (const Tensor& x : xs) {
    inputs.push_back(&x);
    shapes.push_back(x.shape());
  }
  if (needs_grad(inputs))
    record(inputs, {&y}, [shapes, dim](Node& n) {
      std::vector<Tensor*> grads;
      for (size_t i = 0; i < shapes.size(); ++i) grads.push_back(n.grad_input(i));
      ops::concat_backward(n.grad_output(0), shapes, dim, grads);
    });
  return y;
}

Tensor log_softmax(const Tensor& x) {
  Tensor y = ops::log_softmax(x);
  if (needs_grad({&x})) {
    Tensor saved_y = y;
    record({&x}, {&y}, [saved_y](Node& n) {
      if (Tensor* g = n.grad_input(0)) ops::log_softmax_backward(saved_y, n.grad_output(0), g);
    });
  }
  return y;
}

Tensor token_log_probs(const Tensor& logits, const Tensor& ids) {
  ops::TokenLogProbSaved saved;
  Tensor y = ops::token_log_probs(logits, ids, &saved);
  if (needs_grad({&logits}))
    record({&logits}, {&y}, [logits, saved](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::token_log_probs_backward(logits, saved, n.grad_output(0), g);
    });
  return y;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding,
              int groups) {
  Tensor y = ops::conv2d(x, weight, bias, stride, padding, groups);
  if (needs_grad({&x, &weight, &bias}))
    record({&x, &weight, &bias}, {&y}, [x, weight, stride, padding, groups](Node& n) {
      ops::conv2d_backward(x, weight, n.grad_output(0), stride, padding, n.grad_input(0),
                           n.grad_input(1), n.grad_input(2), groups);
    });
  return y;
}

Tensor group_norm(const Tensor& x, int groups, const Tensor& weight, const Tensor& bias,
                  float eps) {
  ops::ChannelNormSaved saved;
  Tensor y = ops::group_norm(x, groups, weight, bias, eps, &saved);
  if (needs_grad({&x, &weight, &bias}))
    record({&x, &weight, &bias}, {&y}, [x, groups, weight, saved, eps](Node& n) {
      ops::channel_norm_backward(x, groups, true, weight, saved, eps, n.grad_output(0),
                                 n.grad_input(0), n.grad_input(1), n.grad_input(2));
    });
  return y;
}

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* running_mean,
                    Tensor* running_var, bool training, float momentum, float eps) {
  ops::ChannelNormSaved saved;
  Tensor y = ops::batch_norm2d(x, weight, bias, running_mean, running_var, training, momentum, eps,
                               &saved);
  if (needs_grad({&x, &weight, &bias})) {
    const int channels = int(x.dim(1));
    record({&x, &weight, &bias}, {&y}, [x, channels, weight, saved, eps](Node& n) {
      ops::channel_norm_backward(x, channels, false, weight, saved, eps, n.grad_output(0),
                                 n.grad_input(0), n.grad_input(1), n.grad_input(2));
    });
  }
  return y;
}

Tensor flatten(const Tensor& x) {
  TURBINE_CHECK(x.ndim() >= 1, "flatten: expected at least one dimension, got {}", x.str());
  return reshape(x, {x.dim(0), x.dim(0) == 0 ? 0 : x.numel() / x.dim(0)});
}

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  Tensor argmax;
  Tensor y = ops::max_pool2d(x, kernel, stride, padding, &argmax);
  if (needs_grad({&x})) {
    const Shape shape = x.shape();
    record({&x}, {&y}, [shape, argmax, kernel, stride, padding](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::max_pool2d_backward(shape, argmax, n.grad_output(0), kernel, stride, padding, g);
    });
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  Tensor y = ops::avg_pool2d(x, kernel, stride, padding);
  if (needs_grad({&x})) {
    const Shape shape = x.shape();
    record({&x}, {&y}, [shape, kernel, stride, padding](Node& n) {
      if (Tensor* g = n.grad_input(0))
        ops::avg_pool2d_backward(shape, n.grad_output(0), kernel, stride, padding, g);
    });
  }
  return y;
}

}  // namespace turbine::ag
