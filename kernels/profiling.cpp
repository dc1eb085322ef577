// The profiling backend: every call forwarded, timed and booked by op.
#include "kernels/profiling.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <type_traits>
#include <utility>

namespace turbine::kernels {

namespace {
using Clock = std::chrono::steady_clock;

std::string gemm_key(const char* op, bool trans_a, bool trans_b, int M, int N, int K) {
  return fmt::format("{} {}x{}x{}{}{}", op, M, N, K, trans_a ? " A'" : "", trans_b ? " B'" : "");
}

// Multiply-adds of q.k and p.v over the visible (query, key) pairs, times 2.
double attention_flops(const AttentionShape& s) {
  const double pairs = double(s.seq_q) * s.seq_k * (s.causal ? 0.5 : 1.0);
  return 4.0 * s.batch * s.heads * pairs * s.head_dim;
}
}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : inner_(inner) {
  set_math_mode(inner.math_mode());
}

template <class Call>
auto ProfilingBackend::timed(const std::string& op, double flops, Call&& call) {
  inner_.set_math_mode(math_mode());
  inner_.synchronize();
  const auto start = Clock::now();
  auto book = [&] {
    inner_.synchronize();
    Entry& e = entries_[op];
    e.op = op;
    e.calls += 1;
    e.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    e.flops += flops;
  };
  if constexpr (std::is_void_v<decltype(call())>) {
    call();
    book();
  } else {
    auto result = call();
    book();
    return result;
  }
}

std::vector<ProfilingBackend::Entry> ProfilingBackend::entries() const {
  std::vector<Entry> out;
  for (const auto& [op, e] : entries_) out.push_back(e);
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

std::string ProfilingBackend::table(int steps) const {
  const auto all = entries();
  double total = 0;
  for (const Entry& e : all) total += e.seconds;
  std::string out = fmt::format("{:<40} {:>10} {:>10} {:>7} {:>9}\n", "op (per step)", "calls",
                                "ms", "%", "TFLOP/s");
  for (const Entry& e : all) {
    const std::string rate = e.flops > 0 ? fmt::format("{:.2f}", e.flops / e.seconds / 1e12) : "";
    out += fmt::format("{:<40} {:>10.1f} {:>10.3f} {:>7.1f} {:>9}\n", e.op, double(e.calls) / steps,
                       1e3 * e.seconds / steps, total > 0 ? 100 * e.seconds / total : 0.0, rate);
  }
  out += fmt::format("{:<40} {:>10} {:>10.3f} {:>7.1f}\n", "total", "", 1e3 * total / steps, 100.0);
  return out;
}

void* ProfilingBackend::allocate(size_t bytes) {
  return timed("allocate", 0, [&] { return inner_.allocate(bytes); });
}
void ProfilingBackend::deallocate(void* ptr, size_t bytes) {
  timed("deallocate", 0, [&] { inner_.deallocate(ptr, bytes); });
}
void ProfilingBackend::copy(void* dst, const void* src, size_t bytes) {
  timed("copy", 0, [&] { inner_.copy(dst, src, bytes); });
}
void ProfilingBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  timed("copy_to_host", 0, [&] { inner_.copy_to_host(host_dst, src, bytes); });
}
void ProfilingBackend::copy_from_host(void* dst, const void* host_src, size_t bytes) {
  timed("copy_from_host", 0, [&] { inner_.copy_from_host(dst, host_src, bytes); });
}
void ProfilingBackend::fill(float* x, size_t n, float value) {
  timed("fill", 0, [&] { inner_.fill(x, n, value); });
}
void ProfilingBackend::convert_f32_to_bf16(const float* x, uint16_t* y, size_t n) {
  timed("convert_f32_to_bf16", 0, [&] { inner_.convert_f32_to_bf16(x, y, n); });
}
void ProfilingBackend::convert_bf16_to_f32(const uint16_t* x, float* y, size_t n) {
  timed("convert_bf16_to_f32", 0, [&] { inner_.convert_bf16_to_f32(x, y, n); });
}
void ProfilingBackend::convert_f32_to_f16(const float* x, uint16_t* y, size_t n) {
  timed("convert_f32_to_f16", 0, [&] { inner_.convert_f32_to_f16(x, y, n); });
}
void ProfilingBackend::convert_f16_to_f32(const uint16_t* x, float* y, size_t n) {
  timed("convert_f16_to_f32", 0, [&] { inner_.convert_f16_to_f32(x, y, n); });
}

void ProfilingBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const float* A, int lda, const float* B, int ldb, float beta, float* C,
                            int ldc) {
  timed(gemm_key("gemm", trans_a, trans_b, M, N, K), 2.0 * M * N * K,
        [&] { inner_.gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); });
}
void ProfilingBackend::gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K,
                                            float alpha, const float* A, int lda, int64_t stride_a,
                                            const float* B, int ldb, int64_t stride_b, float beta,
                                            float* C, int ldc, int64_t stride_c, int batch) {
  timed(gemm_key("gemm_batched", trans_a, trans_b, M, N, K), 2.0 * M * N * K * batch, [&] {
    inner_.gemm_strided_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb,
                                stride_b, beta, C, ldc, stride_c, batch);
  });
}

void ProfilingBackend::gemm_compact(int M, int N, int K, const float* x, int ldx,
                                    const CompactWeight& w, float* y, int ldy, bool accumulate) {
  timed(fmt::format("gemm_compact {} {}x{}x{}", weight_type_name(w.type), M, N, K), 2.0 * M * N * K,
        [&] { inner_.gemm_compact(M, N, K, x, ldx, w, y, ldy, accumulate); });
}

void ProfilingBackend::add(const float* a, const float* b, float* y, size_t n, float alpha,
                           float beta) {
  timed("add", 0, [&] { inner_.add(a, b, y, n, alpha, beta); });
}
void ProfilingBackend::scale(const float* x, float* y, size_t n, float alpha, bool accumulate) {
  timed("scale", 0, [&] { inner_.scale(x, y, n, alpha, accumulate); });
}
void ProfilingBackend::add_bias(float* y, const float* bias, int rows, int cols) {
  timed("add_bias", 0, [&] { inner_.add_bias(y, bias, rows, cols); });
}
void ProfilingBackend::bias_backward(const float* dy, float* dbias, int rows, int cols,
                                     bool accumulate) {
  timed("bias_backward", 0, [&] { inner_.bias_backward(dy, dbias, rows, cols, accumulate); });
}
double ProfilingBackend::sum(const float* x, size_t n) {
  return timed("sum", 0, [&] { return inner_.sum(x, n); });
}
double ProfilingBackend::sum_squares(const float* x, size_t n) {
  return timed("sum_squares", 0, [&] { return inner_.sum_squares(x, n); });
}

void ProfilingBackend::gelu_forward(const float* x, float* y, size_t n) {
  timed("gelu_forward", 0, [&] { inner_.gelu_forward(x, y, n); });
}
void ProfilingBackend::gelu_backward(const float* x, const float* dy, float* dx, size_t n,
                                     bool accumulate) {
  timed("gelu_backward", 0, [&] { inner_.gelu_backward(x, dy, dx, n, accumulate); });
}

void ProfilingBackend::layer_norm_forward(const float* x, const float* weight, const float* bias,
                                          float* y, float* mean, float* rstd, int rows, int cols,
                                          float eps) {
  timed("layer_norm_forward", 0,
        [&] { inner_.layer_norm_forward(x, weight, bias, y, mean, rstd, rows, cols, eps); });
}
void ProfilingBackend::layer_norm_backward(const float* x, const float* weight, const float* mean,
                                           const float* rstd, const float* dy, float* dx,
                                           float* dweight, float* dbias, int rows, int cols,
                                           bool accumulate_dx, bool accumulate_params) {
  timed("layer_norm_backward", 0, [&] {
    inner_.layer_norm_backward(x, weight, mean, rstd, dy, dx, dweight, dbias, rows, cols,
                               accumulate_dx, accumulate_params);
  });
}

void ProfilingBackend::softmax_forward(const float* x, float* y, int rows, int cols) {
  timed("softmax_forward", 0, [&] { inner_.softmax_forward(x, y, rows, cols); });
}
void ProfilingBackend::softmax_backward(const float* y, const float* dy, float* dx, int rows,
                                        int cols, bool accumulate) {
  timed("softmax_backward", 0, [&] { inner_.softmax_backward(y, dy, dx, rows, cols, accumulate); });
}

void ProfilingBackend::cross_entropy_forward(const float* logits, const int64_t* targets,
                                             float* losses, float* lse, int rows, int vocab,
                                             int64_t ignore_index) {
  timed("cross_entropy_forward", 0, [&] {
    inner_.cross_entropy_forward(logits, targets, losses, lse, rows, vocab, ignore_index);
  });
}
void ProfilingBackend::cross_entropy_backward(const float* logits, const int64_t* targets,
                                              const float* lse, float dloss, float* dlogits,
                                              int rows, int vocab, int64_t ignore_index,
                                              bool accumulate) {
  timed("cross_entropy_backward", 0, [&] {
    inner_.cross_entropy_backward(logits, targets, lse, dloss, dlogits, rows, vocab, ignore_index,
                                  accumulate);
  });
}

void ProfilingBackend::embedding_forward(const int64_t* ids, const float* table, float* out, int n,
                                         int vocab, int dim) {
  timed("embedding_forward", 0, [&] { inner_.embedding_forward(ids, table, out, n, vocab, dim); });
}
void ProfilingBackend::embedding_backward(const int64_t* ids, const float* dout, float* dtable,
                                          int n, int vocab, int dim, bool accumulate) {
  timed("embedding_backward", 0,
        [&] { inner_.embedding_backward(ids, dout, dtable, n, vocab, dim, accumulate); });
}

void ProfilingBackend::attention_forward(const AttentionShape& s, const float* q, const float* k,
                                         const float* v, float* out, float* lse) {
  timed("attention_forward", attention_flops(s),
        [&] { inner_.attention_forward(s, q, k, v, out, lse); });
}
// The backward's work: q.k again (recomputed), then dv, dp, dq and dk.
void ProfilingBackend::attention_backward(const AttentionShape& s, const float* q, const float* k,
                                          const float* v, const float* out, const float* lse,
                                          const float* dout, float* dq, float* dk, float* dv,
                                          bool accumulate) {
  timed("attention_backward", 2.5 * attention_flops(s),
        [&] { inner_.attention_backward(s, q, k, v, out, lse, dout, dq, dk, dv, accumulate); });
}

void ProfilingBackend::dropout_forward(const float* x, float* y, size_t n, float p, uint64_t seed,
                                       uint64_t stream, uint64_t offset) {
  timed("dropout_forward", 0, [&] { inner_.dropout_forward(x, y, n, p, seed, stream, offset); });
}
void ProfilingBackend::dropout_backward(const float* dy, float* dx, size_t n, float p,
                                        uint64_t seed, uint64_t stream, uint64_t offset,
                                        bool accumulate) {
  timed("dropout_backward", 0,
        [&] { inner_.dropout_backward(dy, dx, n, p, seed, stream, offset, accumulate); });
}

void ProfilingBackend::gather_rows(const float* x, const int64_t* index, float* y, int batch,
                                   int rows, int picked, int cols, bool accumulate) {
  timed("gather_rows", 0,
        [&] { inner_.gather_rows(x, index, y, batch, rows, picked, cols, accumulate); });
}
void ProfilingBackend::scatter_rows(const float* src, const int64_t* index, float* y, int batch,
                                    int rows, int picked, int cols, bool accumulate) {
  timed("scatter_rows", 0,
        [&] { inner_.scatter_rows(src, index, y, batch, rows, picked, cols, accumulate); });
}
void ProfilingBackend::zero_rows(float* y, const int64_t* index, int batch, int rows, int picked,
                                 int cols) {
  timed("zero_rows", 0, [&] { inner_.zero_rows(y, index, batch, rows, picked, cols); });
}

void ProfilingBackend::split_qkv(const float* qkv, float* q, float* k, float* v, int batch, int seq,
                                 int heads, int head_dim) {
  timed("split_qkv", 0, [&] { inner_.split_qkv(qkv, q, k, v, batch, seq, heads, head_dim); });
}
void ProfilingBackend::merge_qkv(const float* dq, const float* dk, const float* dv, float* dqkv,
                                 int batch, int seq, int heads, int head_dim, bool accumulate) {
  timed("merge_qkv", 0,
        [&] { inner_.merge_qkv(dq, dk, dv, dqkv, batch, seq, heads, head_dim, accumulate); });
}
void ProfilingBackend::merge_heads(const float* x, float* y, int batch, int heads, int seq,
                                   int head_dim, bool accumulate) {
  timed("merge_heads", 0,
        [&] { inner_.merge_heads(x, y, batch, heads, seq, head_dim, accumulate); });
}
void ProfilingBackend::split_heads(const float* x, float* y, int batch, int heads, int seq,
                                   int head_dim, bool accumulate) {
  timed("split_heads", 0,
        [&] { inner_.split_heads(x, y, batch, heads, seq, head_dim, accumulate); });
}

void ProfilingBackend::adamw_step(float* param, const float* grad, float* m, float* v, size_t n,
                                  float lr, float beta1, float beta2, float eps, float weight_decay,
                                  float bias_correction1, float bias_correction2) {
  timed("adamw_step", 0, [&] {
    inner_.adamw_step(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                      bias_correction2);
  });
}
bool ProfilingBackend::unscale_and_check(float* x, size_t n, float alpha) {
  return timed("unscale_and_check", 0, [&] { return inner_.unscale_and_check(x, n, alpha); });
}

}  // namespace turbine::kernels

// ---- PPO and image-model kernels (issue 12) --------------------------------------------

namespace turbine::kernels {

void ProfilingBackend::unary_forward(UnaryOp op, const float* x, float* y, size_t n, float lo,
                                     float hi) {
  timed(fmt::format("unary_forward {}", unary_op_name(op)), 0,
        [&] { inner_.unary_forward(op, x, y, n, lo, hi); });
}
void ProfilingBackend::unary_backward(UnaryOp op, const float* x, const float* y, const float* dy,
                                      float* dx, size_t n, float lo, float hi, bool accumulate) {
  timed(fmt::format("unary_backward {}", unary_op_name(op)), 0,
        [&] { inner_.unary_backward(op, x, y, dy, dx, n, lo, hi, accumulate); });
}
void ProfilingBackend::binary_forward(BinaryOp op, const float* a, const float* b, float* y,
                                      Broadcast shape) {
  timed(fmt::format("binary_forward {}", binary_op_name(op)), 0,
        [&] { inner_.binary_forward(op, a, b, y, shape); });
}
void ProfilingBackend::binary_backward(BinaryOp op, const float* a, const float* b, const float* dy,
                                       float* da, float* db_full, Broadcast shape,
                                       bool accumulate_da, bool accumulate_db) {
  timed(fmt::format("binary_backward {}", binary_op_name(op)), 0, [&] {
    inner_.binary_backward(op, a, b, dy, da, db_full, shape, accumulate_da, accumulate_db);
  });
}
void ProfilingBackend::reduce_sum(const float* x, float* y, Broadcast shape, float alpha,
                                  bool accumulate) {
  timed("reduce_sum", 0, [&] { inner_.reduce_sum(x, y, shape, alpha, accumulate); });
}
void ProfilingBackend::expand(const float* x, float* y, Broadcast shape, float alpha,
                              bool accumulate) {
  timed("expand", 0, [&] { inner_.expand(x, y, shape, alpha, accumulate); });
}
void ProfilingBackend::copy_rows_strided(const float* src, int64_t src_stride, float* dst,
                                         int64_t dst_stride, int64_t rows, int64_t cols,
                                         bool accumulate) {
  timed("copy_rows_strided", 0, [&] {
    inner_.copy_rows_strided(src, src_stride, dst, dst_stride, rows, cols, accumulate);
  });
}
void ProfilingBackend::log_softmax_forward(const float* x, float* y, int rows, int cols) {
  timed("log_softmax_forward", 0, [&] { inner_.log_softmax_forward(x, y, rows, cols); });
}
void ProfilingBackend::log_softmax_backward(const float* y, const float* dy, float* dx, int rows,
                                            int cols, bool accumulate) {
  timed("log_softmax_backward", 0,
        [&] { inner_.log_softmax_backward(y, dy, dx, rows, cols, accumulate); });
}
void ProfilingBackend::token_log_prob_backward(const float* logits, const int64_t* targets,
                                               const float* lse, const float* dlogp, float* dlogits,
                                               int rows, int vocab, bool accumulate) {
  timed("token_log_prob_backward", 0, [&] {
    inner_.token_log_prob_backward(logits, targets, lse, dlogp, dlogits, rows, vocab, accumulate);
  });
}
void ProfilingBackend::im2col(const Window2d& w, const float* x, float* cols) {
  timed("im2col", 0, [&] { inner_.im2col(w, x, cols); });
}
void ProfilingBackend::col2im(const Window2d& w, const float* cols, float* dx, bool accumulate) {
  timed("col2im", 0, [&] { inner_.col2im(w, cols, dx, accumulate); });
}
void ProfilingBackend::max_pool2d_forward(const Window2d& w, const float* x, float* y,
                                          int32_t* argmax) {
  timed("max_pool2d_forward", 0, [&] { inner_.max_pool2d_forward(w, x, y, argmax); });
}
void ProfilingBackend::max_pool2d_backward(const Window2d& w, const int32_t* argmax,
                                           const float* dy, float* dx, bool accumulate) {
  timed("max_pool2d_backward", 0,
        [&] { inner_.max_pool2d_backward(w, argmax, dy, dx, accumulate); });
}
void ProfilingBackend::avg_pool2d_forward(const Window2d& w, const float* x, float* y) {
  timed("avg_pool2d_forward", 0, [&] { inner_.avg_pool2d_forward(w, x, y); });
}
void ProfilingBackend::avg_pool2d_backward(const Window2d& w, const float* dy, float* dx,
                                           bool accumulate) {
  timed("avg_pool2d_backward", 0, [&] { inner_.avg_pool2d_backward(w, dy, dx, accumulate); });
}
void ProfilingBackend::channel_norm_stats(const ChannelNorm& n, const float* x, float* mean,
                                          float* var) {
  timed("channel_norm_stats", 0, [&] { inner_.channel_norm_stats(n, x, mean, var); });
}
void ProfilingBackend::channel_norm_forward(const ChannelNorm& n, const float* x,
                                            const float* mean, const float* var, float eps,
                                            const float* weight, const float* bias, float* y) {
  timed("channel_norm_forward", 0,
        [&] { inner_.channel_norm_forward(n, x, mean, var, eps, weight, bias, y); });
}
void ProfilingBackend::channel_norm_backward(const ChannelNorm& n, const float* x,
                                             const float* mean, const float* var, float eps,
                                             const float* weight, const float* dy,
                                             bool through_stats, float* dx, float* dweight,
                                             float* dbias, bool accumulate_dx,
                                             bool accumulate_params) {
  timed("channel_norm_backward", 0, [&] {
    inner_.channel_norm_backward(n, x, mean, var, eps, weight, dy, through_stats, dx, dweight,
                                 dbias, accumulate_dx, accumulate_params);
  });
}
void ProfilingBackend::paged_kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                                      const int32_t* slots, int tokens, int heads, int head_dim,
                                      int block_size) {
  timed("paged_kv_write", 0, [&] {
    inner_.paged_kv_write(k, v, k_pool, v_pool, slots, tokens, heads, head_dim, block_size);
  });
}
void ProfilingBackend::paged_attention(const PagedAttentionShape& s, const float* q,
                                       const float* k_pool, const float* v_pool,
                                       const int32_t* block_tables, const int32_t* seq_info,
                                       float* out) {
  timed("paged_attention", 0,
        [&] { inner_.paged_attention(s, q, k_pool, v_pool, block_tables, seq_info, out); });
}

}  // namespace turbine::kernels
