// The operator set: forward/backward pairs over tensors, dispatched to the
// device's kernel backend. Each checks its inputs and throws an error naming
// the op and the offending shapes or dtypes.
//
// Gradient outputs are passed as Tensor*: nullptr means "not needed"; an
// undefined tensor is allocated and written; a defined one is added to
// (so a tensor used twice sums its gradients without a zero fill).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::ops {

// ---- checks shared by the ops -----------------------------------------------
void check_f32(const char* op, std::initializer_list<const Tensor*> tensors);
void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors);
// The gradient slot for `like`: allocates it when undefined; returns whether to add.
bool prepare_grad(Tensor* grad, const Shape& shape, Device device);
inline bool prepare_grad(Tensor* grad, const Tensor& like) {
  return prepare_grad(grad, like.shape(), like.device());
}

// ---- linear algebra (linear.cpp) ----------------------------------------------
// a (..., M, K) @ b (K, N) -> (..., M, N), or batched a (B, M, K) @ b (B, K, N).
Tensor matmul(const Tensor& a, const Tensor& b);
void matmul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
// x (..., in) @ weight (out, in)^T + bias (out) -> (..., out); bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor* dx,
                     Tensor* dweight, Tensor* dbias);
// TFLOP/s of an n x n x n GEMM on `device` in its backend's current math
// mode, the best of 5 rounds after a warm-up, about `seconds` in all (each
// round one call at least): the matrix rate this process reaches with the
// kernels training uses.
double measure_gemm_tflops(Device device, int n, double seconds);
// The peak MFU is measured against: measure_gemm_tflops at a size that
// reaches the hardware's rate (2048 on a CPU, in f32 since the CPU's 16-bit
// modes only round the inputs; 8192 on a GPU, in the current math mode).
double measure_gemm_peak_tflops(Device device, double seconds = 1.0);

// ---- elementwise (elementwise.cpp) ---------------------------------------------
Tensor add(const Tensor& a, const Tensor& b, float alpha = 1.0f, float beta = 1.0f);
Tensor scale(const Tensor& x, float alpha);
void scale_backward(const Tensor& dy, float alpha, Tensor* dx);  // also add's backward
Tensor gelu(const Tensor& x);
void gelu_backward(const Tensor& x, const Tensor& dy, Tensor* dx);
struct DropoutRng {
  uint64_t seed = 0, stream = 0, offset = 0;
};
Tensor dropout(const Tensor& x, float p, const DropoutRng& rng);
void dropout_backward(const Tensor& dy, float p, const DropoutRng& rng, Tensor* dx);
double sum_squares(const Tensor& x);

// ---- normalization (layer_norm.cpp) ---------------------------------------------
struct LayerNormSaved {
  Tensor mean, rstd;  // (rows)
};
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  LayerNormSaved* saved);
void layer_norm_backward(const Tensor& x, const Tensor& weight, const LayerNormSaved& saved,
                         const Tensor& dy, Tensor* dx, Tensor* dweight, Tensor* dbias);

// ---- softmax and losses (softmax.cpp) --------------------------------------------
Tensor softmax(const Tensor& x);  // over the last dim
void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);
// Mean cross entropy of logits (..., V) against int targets (...), skipping
// ignore_index. Returns a 1-element tensor; lse receives the rows' log-sum-exp.
struct CrossEntropySaved {
  Tensor lse, targets;  // targets as i64
  int64_t counted = 0;  // rows not ignored
};
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved);
void cross_entropy_backward(const Tensor& logits, const CrossEntropySaved& saved,
                            int64_t ignore_index, float dloss, Tensor* dlogits);

// ---- embedding (embedding.cpp) ------------------------------------------------------
Tensor to_index(const Tensor& ids, const char* op);  // i32/i64/u16 ids -> contiguous i64
Tensor embedding(const Tensor& ids, const Tensor& table);  // ids (...) -> (..., dim)
void embedding_backward(const Tensor& ids, const Tensor& table, const Tensor& dy, Tensor* dtable);

// ---- attention (attention.cpp) -------------------------------------------------------
struct AttentionOptions {
  bool causal = true;
  std::vector<float> alibi_slopes;  // one per head, or empty for none
  Tensor mask;                      // u8 (Tq, Tk) or (B, Tq, Tk), 1 = attend; or undefined
  std::optional<float> scale;       // default 1/sqrt(head_dim)
  // i64 (B, T), strictly increasing per row: the tokens' original positions
  // when some were dropped (self-attention only); undefined for 0..T-1.
  Tensor positions;
};
// q (B,H,Tq,D), k, v (B,H,Tk,D) -> (B,H,Tq,D); lse (B,H,Tq) is saved for backward.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& options, Tensor* lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionOptions& options,
                        Tensor* dq, Tensor* dk, Tensor* dv);
// ALiBi slopes exactly as BLOOM's build_alibi_tensor, any head count.
std::vector<float> alibi_slopes(int heads);
// BLOOM's fused qkv (B,T,H*3*D), laid out (H,3,D) -> q, k, v each (B,H,T,D).
struct Qkv {
  Tensor q, k, v;
};
Qkv split_qkv(const Tensor& qkv, int heads);
void split_qkv_backward(const Tensor* dq, const Tensor* dk, const Tensor* dv,
                        const Shape& qkv_shape, Device device, int heads, Tensor* dqkv);
// (B,H,T,D) -> (B,T,H*D) and its inverse.
Tensor merge_heads(const Tensor& x);
Tensor split_heads(const Tensor& x, int heads);
void merge_heads_backward(const Tensor& dy, int heads, Tensor* dx);

// ---- rows (rows.cpp): token dropping ---------------------------------------------
// x (B,T,C), index (B,K) of distinct rows -> (B,K,C).
Tensor gather_rows(const Tensor& x, const Tensor& index);
void gather_rows_backward(const Shape& x_shape, const Tensor& index, const Tensor& dy, Tensor* dx);
// base (B,T,C) with rows index (B,K) replaced by src (B,K,C).
Tensor scatter_rows(const Tensor& base, const Tensor& index, const Tensor& src);
void scatter_rows_backward(const Tensor& index, const Tensor& dy, Tensor* dbase, Tensor* dsrc);

}  // namespace turbine::ops
