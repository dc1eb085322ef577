// The 16-bit activation kernels' defaults (see Backend's "16-bit
// activations"): each widens its 16-bit operands into f32 scratch on the
// backend's own memory, runs the f32 kernel and rounds the outputs back.
// One rounding per output, as the CUDA kernels that read and write 16-bit
// directly; an accumulated output is widened first and rounded after the
// f32 addition.
#include <algorithm>

#include "kernels/backend.hpp"

namespace turbine::kernels {

const char* float_type_name(FloatType type) {
  switch (type) {
    case FloatType::f32:
      return "f32";
    case FloatType::bf16:
      return "bf16";
    default:
      return "f16";
  }
}

void Backend::convert(FloatType from, const void* x, FloatType to, void* y, size_t n) {
  if (n == 0) return;
  if (from == to) return copy(y, x, n * (from == FloatType::f32 ? 4 : 2));
  if (from != FloatType::f32 && to != FloatType::f32) {  // bf16 <-> f16 through f32
    float* wide = static_cast<float*>(allocate(n * 4));
    convert(from, x, FloatType::f32, wide, n);
    convert(FloatType::f32, wide, to, y, n);
    deallocate(wide, n * 4);
    return;
  }
  const auto* f = static_cast<const float*>(x);
  const auto* h = static_cast<const uint16_t*>(x);
  if (from == FloatType::f32)
    return to == FloatType::bf16 ? convert_f32_to_bf16(f, static_cast<uint16_t*>(y), n)
                                 : convert_f32_to_f16(f, static_cast<uint16_t*>(y), n);
  return from == FloatType::bf16 ? convert_bf16_to_f32(h, static_cast<float*>(y), n)
                                 : convert_f16_to_f32(h, static_cast<float*>(y), n);
}

namespace {

// An f32 working copy of n values of type t in the backend's memory, freed
// (in stream order on CUDA) when it goes out of scope. Null source: left
// uninitialised (an output written whole). An f32 source is used in place.
class Wide {
 public:
  Wide(Backend& backend, FloatType t, const void* src, size_t n, bool read = true)
      : backend_(backend), t_(t), n_(n) {
    if (t == FloatType::f32) {
      data_ = static_cast<float*>(const_cast<void*>(src));
      return;
    }
    data_ = static_cast<float*>(backend.allocate(std::max<size_t>(n, 1) * 4));
    owned_ = true;
    if (read && src != nullptr) backend.convert(t, src, FloatType::f32, data_, n);
  }
  ~Wide() {
    if (owned_) backend_.deallocate(data_, std::max<size_t>(n_, 1) * 4);
  }
  Wide(const Wide&) = delete;
  Wide& operator=(const Wide&) = delete;
  float* get() const { return data_; }
  operator float*() const { return data_; }  // NOLINT: scratch passes where f32 pointers go
  // Rounds the f32 values into dst (of type t): the output's one rounding.
  void store(void* dst) const {
    if (owned_) backend_.convert(FloatType::f32, data_, t_, dst, n_);
  }

 private:
  Backend& backend_;
  FloatType t_;
  size_t n_;
  float* data_ = nullptr;
  bool owned_ = false;
};

}  // namespace

void Backend::gemm_mixed(const MixedGemm& g) {
  const size_t a_n =
      strided_extent(g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda, g.batch, g.stride_a);
  const size_t b_n =
      strided_extent(g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb, g.batch, g.stride_b);
  const size_t c_n = strided_extent(g.M, g.N, g.ldc, g.batch, g.stride_c);
  const Wide a(*this, g.a_type, g.A, a_n), b(*this, g.b_type, g.B, b_n);
  // C is read only when beta is not 0 (as BLAS): rows between ldc gaps keep
  // what they held, so a strided 16-bit C is always widened whole.
  const Wide c(*this, g.c_type, g.C, c_n, g.beta != 0.0f || g.ldc != g.N);
  gemm_strided_batched(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, a, g.lda, g.stride_a, b, g.ldb,
                       g.stride_b, g.beta, c, g.ldc, g.stride_c, g.batch);
  c.store(g.C);
}

void Backend::add16(FloatType t, const uint16_t* a, const uint16_t* b, uint16_t* y, size_t n,
                    float alpha, float beta) {
  const Wide wa(*this, t, a, n), wb(*this, t, b, n), wy(*this, t, nullptr, n);
  add(wa, wb, wy, n, alpha, beta);
  wy.store(y);
}

void Backend::scale16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float alpha,
                      bool accumulate) {
  const Wide wx(*this, t, x, n), wy(*this, t, y, n, accumulate);
  scale(wx, wy, n, alpha, accumulate);
  wy.store(y);
}

void Backend::add_bias16(FloatType t, uint16_t* y, const float* bias, int rows, int cols) {
  const size_t n = size_t(rows) * size_t(cols);
  const Wide wy(*this, t, y, n);
  add_bias(wy, bias, rows, cols);
  wy.store(y);
}

void Backend::bias_backward16(FloatType t, const uint16_t* dy, float* dbias, int rows, int cols,
                              bool accumulate) {
  const Wide wdy(*this, t, dy, size_t(rows) * size_t(cols));
  bias_backward(wdy, dbias, rows, cols, accumulate);
}

void Backend::gelu_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n) {
  const Wide wx(*this, t, x, n), wy(*this, t, nullptr, n);
  gelu_forward(wx, wy, n);
  wy.store(y);
}

void Backend::gelu_backward16(FloatType t, const uint16_t* x, const uint16_t* dy, uint16_t* dx,
                              size_t n, bool accumulate) {
  const Wide wx(*this, t, x, n), wdy(*this, t, dy, n), wdx(*this, t, dx, n, accumulate);
  gelu_backward(wx, wdy, wdx, n, accumulate);
  wdx.store(dx);
}

void Backend::layer_norm_forward16(FloatType t, const uint16_t* x, const float* weight,
                                   const float* bias, uint16_t* y, float* mean, float* rstd,
                                   int rows, int cols, float eps) {
  const size_t n = size_t(rows) * size_t(cols);
  const Wide wx(*this, t, x, n), wy(*this, t, nullptr, n);
  layer_norm_forward(wx, weight, bias, wy, mean, rstd, rows, cols, eps);
  wy.store(y);
}

void Backend::layer_norm_backward16(FloatType t, const uint16_t* x, const float* weight,
                                    const float* mean, const float* rstd, const uint16_t* dy,
                                    uint16_t* dx, float* dweight, float* dbias, int rows, int cols,
                                    bool accumulate_dx, bool accumulate_params) {
  const size_t n = size_t(rows) * size_t(cols);
  const Wide wx(*this, t, x, n), wdy(*this, t, dy, n), wdx(*this, t, dx, n, accumulate_dx);
  layer_norm_backward(wx, weight, mean, rstd, wdy, wdx, dweight, dbias, rows, cols, accumulate_dx,
                      accumulate_params);
  wdx.store(dx);
}

void Backend::cross_entropy_forward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                                      float* losses, float* lse, int rows, int vocab,
                                      int64_t ignore_index) {
  const Wide wl(*this, t, logits, size_t(rows) * size_t(vocab));
  cross_entropy_forward(wl, targets, losses, lse, rows, vocab, ignore_index);
}

void Backend::cross_entropy_backward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                                       const float* lse, float dloss, uint16_t* dlogits, int rows,
                                       int vocab, int64_t ignore_index, bool accumulate) {
  const size_t n = size_t(rows) * size_t(vocab);
  const Wide wl(*this, t, logits, n), wd(*this, t, dlogits, n, accumulate);
  cross_entropy_backward(wl, targets, lse, dloss, wd, rows, vocab, ignore_index, accumulate);
  wd.store(dlogits);
}

namespace {
size_t q_elements(const AttentionShape& s) {
  return size_t(s.batch) * size_t(s.heads) * size_t(s.seq_q) * size_t(s.head_dim);
}
// k and v span kv_plane() per (batch, head) plane; the last plane only seq_k rows.
size_t kv_elements(const AttentionShape& s) {
  const size_t planes = size_t(s.batch) * size_t(s.heads);
  return planes == 0 ? 0
                     : (planes - 1) * size_t(s.kv_plane()) + size_t(s.seq_k) * size_t(s.head_dim);
}
}  // namespace

void Backend::attention_forward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                  const uint16_t* k, const uint16_t* v, uint16_t* out, float* lse) {
  const size_t nq = q_elements(s), nkv = kv_elements(s);
  const Wide wq(*this, t, q, nq), wk(*this, t, k, nkv), wv(*this, t, v, nkv),
      wo(*this, t, nullptr, nq);
  attention_forward(s, wq, wk, wv, wo, lse);
  wo.store(out);
}

void Backend::attention_backward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                   const uint16_t* k, const uint16_t* v, const uint16_t* out,
                                   const float* lse, const uint16_t* dout, uint16_t* dq,
                                   uint16_t* dk, uint16_t* dv, bool accumulate) {
  const size_t nq = q_elements(s), nkv = kv_elements(s);
  const Wide wq(*this, t, q, nq), wk(*this, t, k, nkv), wv(*this, t, v, nkv), wo(*this, t, out, nq),
      wdo(*this, t, dout, nq), wdq(*this, t, dq, nq, accumulate),
      wdk(*this, t, dk, nkv, accumulate), wdv(*this, t, dv, nkv, accumulate);
  attention_backward(s, wq, wk, wv, wo, lse, wdo, wdq, wdk, wdv, accumulate);
  wdq.store(dq);
  wdk.store(dk);
  wdv.store(dv);
}

void Backend::dropout_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float p,
                                uint64_t seed, uint64_t stream, uint64_t offset) {
  const Wide wx(*this, t, x, n), wy(*this, t, nullptr, n);
  dropout_forward(wx, wy, n, p, seed, stream, offset);
  wy.store(y);
}

void Backend::dropout_backward16(FloatType t, const uint16_t* dy, uint16_t* dx, size_t n, float p,
                                 uint64_t seed, uint64_t stream, uint64_t offset, bool accumulate) {
  const Wide wdy(*this, t, dy, n), wdx(*this, t, dx, n, accumulate);
  dropout_backward(wdy, wdx, n, p, seed, stream, offset, accumulate);
  wdx.store(dx);
}

void Backend::split_qkv16(FloatType t, const uint16_t* qkv, uint16_t* q, uint16_t* k, uint16_t* v,
                          int batch, int seq, int heads, int head_dim) {
  const size_t n = size_t(batch) * size_t(seq) * size_t(heads) * size_t(head_dim);
  const Wide w(*this, t, qkv, 3 * n), wq(*this, t, nullptr, n), wk(*this, t, nullptr, n),
      wv(*this, t, nullptr, n);
  split_qkv(w, wq, wk, wv, batch, seq, heads, head_dim);
  wq.store(q);
  wk.store(k);
  wv.store(v);
}

void Backend::merge_qkv16(FloatType t, const uint16_t* dq, const uint16_t* dk, const uint16_t* dv,
                          uint16_t* dqkv, int batch, int seq, int heads, int head_dim,
                          bool accumulate) {
  const size_t n = size_t(batch) * size_t(seq) * size_t(heads) * size_t(head_dim);
  const Wide wq(*this, t, dq, n), wk(*this, t, dk, n), wv(*this, t, dv, n),
      w(*this, t, dqkv, 3 * n, accumulate);
  merge_qkv(wq, wk, wv, w, batch, seq, heads, head_dim, accumulate);
  w.store(dqkv);
}

void Backend::merge_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                            int seq, int head_dim, bool accumulate) {
  const size_t n = size_t(batch) * size_t(seq) * size_t(heads) * size_t(head_dim);
  const Wide wx(*this, t, x, n), wy(*this, t, y, n, accumulate);
  merge_heads(wx, wy, batch, heads, seq, head_dim, accumulate);
  wy.store(y);
}

void Backend::split_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                            int seq, int head_dim, bool accumulate) {
  const size_t n = size_t(batch) * size_t(seq) * size_t(heads) * size_t(head_dim);
  const Wide wx(*this, t, x, n), wy(*this, t, y, n, accumulate);
  split_heads(wx, wy, batch, heads, seq, head_dim, accumulate);
  wy.store(y);
}

void Backend::gather_rows16(FloatType t, const uint16_t* x, const int64_t* index, uint16_t* y,
                            int batch, int rows, int picked, int cols, bool accumulate) {
  const Wide wx(*this, t, x, size_t(batch) * size_t(rows) * size_t(cols)),
      wy(*this, t, y, size_t(batch) * size_t(picked) * size_t(cols), accumulate);
  gather_rows(wx, index, wy, batch, rows, picked, cols, accumulate);
  wy.store(y);
}

void Backend::scatter_rows16(FloatType t, const uint16_t* src, const int64_t* index, uint16_t* y,
                             int batch, int rows, int picked, int cols, bool accumulate) {
  // Rows not picked keep their values: y is widened and stored whole.
  const Wide ws(*this, t, src, size_t(batch) * size_t(picked) * size_t(cols)),
      wy(*this, t, y, size_t(batch) * size_t(rows) * size_t(cols));
  scatter_rows(ws, index, wy, batch, rows, picked, cols, accumulate);
  wy.store(y);
}

void Backend::zero_rows16(FloatType t, uint16_t* y, const int64_t* index, int batch, int rows,
                          int picked, int cols) {
  const Wide wy(*this, t, y, size_t(batch) * size_t(rows) * size_t(cols));
  zero_rows(wy, index, batch, rows, picked, cols);
  wy.store(y);
}

}  // namespace turbine::kernels
