// The CPU backend: oneDNN for GEMM, OpenMP loops (vectorized with
// `omp simd`) for everything else. The methods are defined one concern per
// file beside this header (gemm.cpp, layer_norm.cpp, attention.cpp, ...).
#pragma once

#include "kernels/backend.hpp"

namespace turbine::kernels {

// Row-major C = alpha A B^T + beta C (A: M x K, B: N x K) through oneDNN, as
// C^T = B A^T when A has few rows (gemm.cpp says why); gemm and
// gemm_compact's panels use it.
void sgemm_nt(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
              float beta, float* C, int ldc);
// The row counts of A that take the swapped route: (kNtDirectRows,
// kNtSwapRowsEnd). Measured on Zen 4 with oneDNN's AVX-512 kernels (swapped
// 2-7x faster) and with them capped to AVX2 (within -6%..+25%).
constexpr int kNtDirectRows = 8, kNtSwapRowsEnd = 384;

// Row-major C = alpha op(A) op(B) + beta C on bf16 A and B (the bits in
// uint16_t), f32 accumulation and C, through oneDNN's matmul
// (gemm_bf16.cpp); native_bf16_gemm() says whether this CPU runs it in
// hardware (AVX512-BF16, AMX), the only case where the bf16 math mode uses it.
bool native_bf16_gemm();
void bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, float* C, int ldc);

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void release_cached() override;
  int64_t available_bytes() const override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t bytes) override;
  void fill(float* x, size_t n, float value) override;
  void convert_f32_to_bf16(const float* x, uint16_t* y, size_t n) override;
  void convert_bf16_to_f32(const uint16_t* x, float* y, size_t n) override;
  void convert_f32_to_f16(const float* x, uint16_t* y, size_t n) override;
  void convert_f16_to_f32(const uint16_t* x, float* y, size_t n) override;

  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const float* A, int lda, int64_t stride_a, const float* B, int ldb,
                            int64_t stride_b, float beta, float* C, int ldc, int64_t stride_c,
                            int batch) override;
  void gemm_mixed(const MixedGemm& g) override;
  void gemm_compact(int M, int N, int K, const float* x, int ldx, const CompactWeight& w, float* y,
                    int ldy, bool accumulate) override;

  void add(const float* a, const float* b, float* y, size_t n, float alpha, float beta) override;
  void scale(const float* x, float* y, size_t n, float alpha, bool accumulate) override;
  void add_bias(float* y, const float* bias, int rows, int cols) override;
  void bias_backward(const float* dy, float* dbias, int rows, int cols, bool accumulate) override;
  double sum(const float* x, size_t n) override;
  double sum_squares(const float* x, size_t n) override;

  void gelu_forward(const float* x, float* y, size_t n) override;
  void gelu_backward(const float* x, const float* dy, float* dx, size_t n,
                     bool accumulate) override;

  void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y,
                          float* mean, float* rstd, int rows, int cols, float eps) override;
  void layer_norm_backward(const float* x, const float* weight, const float* mean,
                           const float* rstd, const float* dy, float* dx, float* dweight,
                           float* dbias, int rows, int cols, bool accumulate_dx,
                           bool accumulate_params) override;

  void softmax_forward(const float* x, float* y, int rows, int cols) override;
  void softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                        bool accumulate) override;

  void cross_entropy_forward(const float* logits, const int64_t* targets, float* losses, float* lse,
                             int rows, int vocab, int64_t ignore_index) override;
  void cross_entropy_backward(const float* logits, const int64_t* targets, const float* lse,
                              float dloss, float* dlogits, int rows, int vocab,
                              int64_t ignore_index, bool accumulate) override;

  void embedding_forward(const int64_t* ids, const float* table, float* out, int n, int vocab,
                         int dim) override;
  void embedding_backward(const int64_t* ids, const float* dout, float* dtable, int n, int vocab,
                          int dim, bool accumulate) override;

  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                         float* out, float* lse) override;
  void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, const float* dout, float* dq,
                          float* dk, float* dv, bool accumulate) override;

  void dropout_forward(const float* x, float* y, size_t n, float p, uint64_t seed, uint64_t stream,
                       uint64_t offset) override;
  void dropout_backward(const float* dy, float* dx, size_t n, float p, uint64_t seed,
                        uint64_t stream, uint64_t offset, bool accumulate) override;

  void gather_rows(const float* x, const int64_t* index, float* y, int batch, int rows, int picked,
                   int cols, bool accumulate) override;
  void scatter_rows(const float* src, const int64_t* index, float* y, int batch, int rows,
                    int picked, int cols, bool accumulate) override;
  void zero_rows(float* y, const int64_t* index, int batch, int rows, int picked,
                 int cols) override;

  void split_qkv(const float* qkv, float* q, float* k, float* v, int batch, int seq, int heads,
                 int head_dim) override;
  void merge_qkv(const float* dq, const float* dk, const float* dv, float* dqkv, int batch, int seq,
                 int heads, int head_dim, bool accumulate) override;
  void merge_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                   bool accumulate) override;
  void split_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                   bool accumulate) override;

  void adamw_step(float* param, const float* grad, float* m, float* v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float bias_correction1,
                  float bias_correction2) override;
  bool unscale_and_check(float* x, size_t n, float alpha) override;

  // PPO and image-model kernels (issue 12): pointwise.cpp, softmax.cpp, conv.cpp.
  void unary_forward(UnaryOp op, const float* x, float* y, size_t n, float lo, float hi) override;
  void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                      size_t n, float lo, float hi, bool accumulate) override;
  void binary_forward(BinaryOp op, const float* a, const float* b, float* y,
                      Broadcast shape) override;
  void binary_backward(BinaryOp op, const float* a, const float* b, const float* dy, float* da,
                       float* db_full, Broadcast shape, bool accumulate_da,
                       bool accumulate_db) override;
  void reduce_sum(const float* x, float* y, Broadcast shape, float alpha, bool accumulate) override;
  void expand(const float* x, float* y, Broadcast shape, float alpha, bool accumulate) override;
  void copy_rows_strided(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int64_t rows, int64_t cols, bool accumulate) override;
  void log_softmax_forward(const float* x, float* y, int rows, int cols) override;
  void log_softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                            bool accumulate) override;
  void token_log_prob_backward(const float* logits, const int64_t* targets, const float* lse,
                               const float* dlogp, float* dlogits, int rows, int vocab,
                               bool accumulate) override;
  void im2col(const Window2d& w, const float* x, float* cols) override;
  void col2im(const Window2d& w, const float* cols, float* dx, bool accumulate) override;
  void max_pool2d_forward(const Window2d& w, const float* x, float* y, int32_t* argmax) override;
  void max_pool2d_backward(const Window2d& w, const int32_t* argmax, const float* dy, float* dx,
                           bool accumulate) override;
  void avg_pool2d_forward(const Window2d& w, const float* x, float* y) override;
  void avg_pool2d_backward(const Window2d& w, const float* dy, float* dx, bool accumulate) override;
  void channel_norm_stats(const ChannelNorm& n, const float* x, float* mean, float* var) override;
  void channel_norm_forward(const ChannelNorm& n, const float* x, const float* mean,
                            const float* var, float eps, const float* weight, const float* bias,
                            float* y) override;
  void channel_norm_backward(const ChannelNorm& n, const float* x, const float* mean,
                             const float* var, float eps, const float* weight, const float* dy,
                             bool through_stats, float* dx, float* dweight, float* dbias,
                             bool accumulate_dx, bool accumulate_params) override;
  void paged_kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                      const int32_t* slots, int tokens, int heads, int head_dim,
                      int block_size) override;
  void paged_attention(const PagedAttentionShape& s, const float* q, const float* k_pool,
                       const float* v_pool, const int32_t* block_tables, const int32_t* seq_info,
                       float* out) override;
};

// Loops shorter than this run on one thread: forking costs more than it saves.
inline constexpr size_t kParallelGrain = 1 << 14;

}  // namespace turbine::kernels
