// Attention with causal, ALiBi and boolean masks; BLOOM's head layouts.
#include <cmath>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

namespace {

// The spacing of k's and v's (batch, head) planes: dense, or a view of the
// first keys of a larger (B, H, T_max, D) buffer (a KV cache), whose rows
// are still dense and whose planes are evenly spaced; 0 for dense.
int64_t kv_stride(const char* op, const Tensor& k, const Tensor& v) {
  if (k.is_contiguous() && v.is_contiguous()) return 0;
  const auto& st = k.strides();
  TURBINE_CHECK(
      k.strides() == v.strides() && st[3] == 1 && st[2] == k.dim(3) && st[0] == k.dim(1) * st[1],
      "{}: k {} and v {} must be dense or the first keys of one (B, H, T_max, D) "
      "buffer each (strides {} and {})",
      op, k.str(), v.str(), shape_str(k.strides()), shape_str(v.strides()));
  return st[1];
}

kernels::AttentionShape attention_shape(const char* op, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const AttentionOptions& o) {
  check_activations(op, {&q});
  TURBINE_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(),
                "{}: k and v must be {} like q, got {} and {}", op, dtype_name(q.dtype()), k.str(),
                v.str());
  check_same_device(op, {&q, &k, &v});
  TURBINE_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4,
                "{}: q, k, v must be (B, H, T, D); got {}, {}, {}", op, q.str(), k.str(), v.str());
  TURBINE_CHECK(k.shape() == v.shape() && q.dim(0) == k.dim(0) && q.dim(1) == k.dim(1) &&
                    q.dim(3) == k.dim(3),
                "{}: q {}, k {}, v {} do not agree (k and v alike; B, H and D shared)", op,
                shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  kernels::AttentionShape s;
  s.batch = q.dim(0);
  s.heads = q.dim(1);
  s.seq_q = q.dim(2);
  s.seq_k = k.dim(2);
  s.head_dim = q.dim(3);
  s.kv_stride = kv_stride(op, k, v);
  s.scale = o.scale.value_or(1.0f / std::sqrt(static_cast<float>(s.head_dim)));
  s.causal = o.causal;
  TURBINE_CHECK(!o.causal || s.seq_k >= s.seq_q,
                "{}: causal attention needs at least as many keys ({}) as queries ({})", op,
                s.seq_k, s.seq_q);
  if (!o.alibi_slopes.empty()) {
    TURBINE_CHECK(static_cast<int>(o.alibi_slopes.size()) == s.heads,
                  "{}: {} ALiBi slopes for {} heads", op, o.alibi_slopes.size(), s.heads);
    s.alibi_slopes = o.alibi_slopes.data();
  }
  if (o.mask.defined()) {
    const Tensor& m = o.mask;
    TURBINE_CHECK(m.dtype() == DType::u8 && m.is_contiguous(),
                  "{}: mask must be a contiguous u8 tensor, got {}", op, m.str());
    TURBINE_CHECK(
        (m.ndim() == 2 && m.dim(0) == s.seq_q && m.dim(1) == s.seq_k) ||
            (m.ndim() == 3 && m.dim(0) == s.batch && m.dim(1) == s.seq_q && m.dim(2) == s.seq_k),
        "{}: mask {} must be (Tq, Tk) = ({}, {}) or (B, Tq, Tk)", op, m.str(), s.seq_q, s.seq_k);
    check_same_device(op, {&q, &m});
    s.mask = m.data<uint8_t>();
    s.mask_per_batch = m.ndim() == 3;
  }
  if (o.positions.defined()) {
    const Tensor& p = o.positions;
    TURBINE_CHECK(p.dtype() == DType::i64 && p.is_contiguous() && p.ndim() == 2 &&
                      p.dim(0) == s.batch && p.dim(1) == s.seq_q && s.seq_q == s.seq_k,
                  "{}: positions {} must be contiguous i64 (B, T) = ({}, {}) for "
                  "self-attention",
                  op, p.str(), s.batch, s.seq_q);
    check_same_device(op, {&q, &p});
    const auto host = p.to(Device::cpu());  // a small (B, T) copy on a GPU
    const int64_t* v = host.data<int64_t>();
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t t = 1; t < s.seq_q; ++t)
        TURBINE_CHECK(v[b * s.seq_q + t] > v[b * s.seq_q + t - 1],
                      "{}: positions must increase along each row (row {}, index {})", op, b, t);
    s.positions = p.data<int64_t>();
  }
  return s;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options,
                 Tensor* lse) {
  const auto s = attention_shape("attention", q, k, v, options);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor local_lse;
  Tensor& l = lse ? *lse : local_lse;
  l = Tensor::empty({s.batch, s.heads, s.seq_q}, DType::f32, q.device());
  kernels::Backend& be = backend_for(q.device());
  const kernels::FloatType t = float_type(q.dtype());
  if (t == kernels::FloatType::f32)
    be.attention_forward(s, q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(),
                         l.data<float>());
  else
    be.attention_forward16(t, s, bits(q), bits(k), bits(v), bits(out), l.data<float>());
  return out;
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionOptions& options,
                        Tensor* dq, Tensor* dk, Tensor* dv) {
  const auto s = attention_shape("attention_backward", q, k, v, options);
  // Dense k and v here.
  const kernels::FloatType t = check_activations("attention_backward", {&q, &k, &v, &out, &dout});
  check_f32("attention_backward", {&lse});
  TURBINE_CHECK(dout.shape() == q.shape(), "attention_backward: gradient {} for output {}",
                dout.str(), q.str());
  // The kernel writes all three; gradients are fresh or accumulated together.
  Tensor scratch_q, scratch_k, scratch_v;
  Tensor* gq = dq ? dq : &scratch_q;
  Tensor* gk = dk ? dk : &scratch_k;
  Tensor* gv = dv ? dv : &scratch_v;
  const bool acc_q = prepare_grad(gq, q), acc_k = prepare_grad(gk, k), acc_v = prepare_grad(gv, v);
  TURBINE_CHECK(acc_q == acc_k && acc_k == acc_v,
                "attention_backward: q, k and v gradients must all be fresh or all accumulate");
  kernels::Backend& be = backend_for(q.device());
  if (t == kernels::FloatType::f32)
    be.attention_backward(s, q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(),
                          lse.data<float>(), dout.data<float>(), gq->data<float>(),
                          gk->data<float>(), gv->data<float>(), acc_q);
  else
    be.attention_backward16(t, s, bits(q), bits(k), bits(v), bits(out), lse.data<float>(),
                            bits(dout), bits(*gq), bits(*gk), bits(*gv), acc_q);
}

std::vector<float> alibi_slopes(int heads) {
  TURBINE_CHECK(heads > 0, "alibi_slopes: {} heads", heads);
  const int closest = 1 << static_cast<int>(std::floor(std::log2(heads)));
  const double base = std::pow(2.0, -std::pow(2.0, -(std::log2(closest) - 3)));
  std::vector<float> slopes;
  for (int i = 1; i <= closest; ++i) slopes.push_back(static_cast<float>(std::pow(base, i)));
  if (closest != heads) {
    const double extra_base = std::pow(2.0, -std::pow(2.0, -(std::log2(2 * closest) - 3)));
    const int remaining = std::min(closest, heads - closest);
    for (int i = 1; i < 1 + 2 * remaining; i += 2)
      slopes.push_back(static_cast<float>(std::pow(extra_base, i)));
  }
  return slopes;
}

Qkv split_qkv(const Tensor& qkv, int heads) {
  const kernels::FloatType t = check_activations("split_qkv", {&qkv});
  TURBINE_CHECK(qkv.ndim() == 3 && heads > 0 && qkv.dim(2) % (3 * heads) == 0,
                "split_qkv: fused qkv {} must be (B, T, 3 * heads * head_dim) with {} heads",
                qkv.str(), heads);
  const int64_t B = qkv.dim(0), T = qkv.dim(1), D = qkv.dim(2) / (3 * heads);
  Qkv out{Tensor::empty({B, heads, T, D}, qkv.dtype(), qkv.device()),
          Tensor::empty({B, heads, T, D}, qkv.dtype(), qkv.device()),
          Tensor::empty({B, heads, T, D}, qkv.dtype(), qkv.device())};
  kernels::Backend& be = backend_for(qkv.device());
  if (t == kernels::FloatType::f32)
    be.split_qkv(qkv.data<float>(), out.q.data<float>(), out.k.data<float>(), out.v.data<float>(),
                 B, T, heads, D);
  else
    be.split_qkv16(t, bits(qkv), bits(out.q), bits(out.k), bits(out.v), B, T, heads, D);
  return out;
}

void split_qkv_backward(const Tensor* dq, const Tensor* dk, const Tensor* dv,
                        const Shape& qkv_shape, Device device, int heads, Tensor* dqkv) {
  const int64_t B = qkv_shape[0], T = qkv_shape[1], D = qkv_shape[2] / (3 * heads);
  // Missing gradients (outputs that did not reach the loss) count as zeros.
  const Shape part{B, heads, T, D};
  // The gradients' type is that of any one given (all alike).
  DType dtype = DType::f32;
  for (const Tensor* g : {dq, dk, dv})
    if (g && g->defined()) dtype = g->dtype();
  auto or_zeros = [&](const Tensor* g) {
    return g && g->defined() ? *g : Tensor::zeros(part, dtype, device);
  };
  const Tensor gq = or_zeros(dq), gk = or_zeros(dk), gv = or_zeros(dv);
  const kernels::FloatType t = check_activations("split_qkv_backward", {&gq, &gk, &gv});
  const bool acc = prepare_grad(dqkv, qkv_shape, device, dtype);
  kernels::Backend& be = backend_for(device);
  if (t == kernels::FloatType::f32)
    be.merge_qkv(gq.data<float>(), gk.data<float>(), gv.data<float>(), dqkv->data<float>(), B, T,
                 heads, D, acc);
  else
    be.merge_qkv16(t, bits(gq), bits(gk), bits(gv), bits(*dqkv), B, T, heads, D, acc);
}

Tensor merge_heads(const Tensor& x) {
  const kernels::FloatType t = check_activations("merge_heads", {&x});
  TURBINE_CHECK(x.ndim() == 4, "merge_heads: expected (B, H, T, D), got {}", x.str());
  const int64_t B = x.dim(0), H = x.dim(1), T = x.dim(2), D = x.dim(3);
  Tensor y = Tensor::empty({B, T, H * D}, x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == kernels::FloatType::f32)
    be.merge_heads(x.data<float>(), y.data<float>(), B, H, T, D, false);
  else
    be.merge_heads16(t, bits(x), bits(y), B, H, T, D, false);
  return y;
}

Tensor split_heads(const Tensor& x, int heads) {
  const kernels::FloatType t = check_activations("split_heads", {&x});
  TURBINE_CHECK(x.ndim() == 3 && heads > 0 && x.dim(2) % heads == 0,
                "split_heads: expected (B, T, heads * D) with {} heads, got {}", heads, x.str());
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2) / heads;
  Tensor y = Tensor::empty({B, heads, T, D}, x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  if (t == kernels::FloatType::f32)
    be.split_heads(x.data<float>(), y.data<float>(), B, heads, T, D, false);
  else
    be.split_heads16(t, bits(x), bits(y), B, heads, T, D, false);
  return y;
}

void merge_heads_backward(const Tensor& dy, int heads, Tensor* dx) {
  const kernels::FloatType t = check_activations("merge_heads_backward", {&dy});
  const int64_t B = dy.dim(0), T = dy.dim(1), D = dy.dim(2) / heads;
  const bool acc = prepare_grad(dx, Shape{B, heads, T, D}, dy.device(), dy.dtype());
  kernels::Backend& be = backend_for(dy.device());
  if (t == kernels::FloatType::f32)
    be.split_heads(dy.data<float>(), dx->data<float>(), B, heads, T, D, acc);
  else
    be.split_heads16(t, bits(dy), bits(*dx), B, heads, T, D, acc);
}

}  // namespace turbine::ops
