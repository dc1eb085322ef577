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
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::ops {

// ---- checks shared by the ops -----------------------------------------------
void check_f32(const char* op, std::initializer_list<const Tensor*> tensors);
void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors);
// The gradient slot for `like`: allocates it when undefined (of `dtype`);
// returns whether to add.
bool prepare_grad(Tensor* grad, const Shape& shape, Device device, DType dtype = DType::f32);
inline bool prepare_grad(Tensor* grad, const Tensor& like) {
  return prepare_grad(grad, like.shape(), like.device(), like.dtype());
}

// Activations may be stored in 16-bit (kernels::FloatType): the ops of a
// BLOOM training step take f32, bf16 or f16 activations, the same type for
// all of one call's activations, with f32 parameters, and give outputs and
// activation gradients of that type. Checks like check_f32 and returns the
// activations' type.
kernels::FloatType check_activations(const char* op,
                                     std::initializer_list<const Tensor*> activations,
                                     std::initializer_list<const Tensor*> params = {});
bool is_float_type(DType dtype);  // f32, bf16 or f16
kernels::FloatType float_type(DType dtype);
DType dtype_of(kernels::FloatType type);
// A 16-bit tensor's bits (bf16 or f16 storage).
inline uint16_t* bits(const Tensor& t) {
  return static_cast<uint16_t*>(t.raw_data());
}

// ---- linear algebra (linear.cpp) ----------------------------------------------
// a (..., M, K) @ b (K, N) -> (..., M, N), or batched a (B, M, K) @ b (B, K, N).
Tensor matmul(const Tensor& a, const Tensor& b);
void matmul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
// x (..., in) @ weight (out, in)^T + bias (out) -> (..., out); bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor* dx,
                     Tensor* dweight, Tensor* dbias);
// A linear layer's weight (out, in) stored compactly for inference: bf16 or
// f16 values, or int8 values with one f32 scale per `group` consecutive
// inputs of each output (symmetric: scale = max |w| of the group / 127).
struct CompactTensor {
  Tensor values;  // (out, in), dtype bf16, f16 or i8
  Tensor scales;  // (out, in / group) f32; i8 only
  int group = 0;  // i8 only
  int64_t out_features() const { return values.dim(0); }
  int64_t in_features() const { return values.dim(1); }
  int64_t nbytes() const;  // values and scales: what a product reads
};
// weight (out, in) f32 compacted on its device: bf16/f16 rounded to nearest
// even; i8 with `group` inputs per scale (0: all of a row, one scale per
// output channel), which must divide in. Groups of zeros get scale 1.
CompactTensor compact_weight(const Tensor& weight, DType type, int group = 0);
// The f32 weight a compact one stands for (tests, and loading it back).
Tensor expand_weight(const CompactTensor& weight);
// Rows of a compact (vocab, dim) table for ids (...) -> (..., dim) f32: the
// embedding lookup of a model whose tied LM head is compact (CPU tables).
Tensor embedding_compact(const Tensor& ids, const CompactTensor& table);
// x (..., in) @ W^T + bias (out) -> (..., out), W compact (Backend::gemm_compact):
// for inference: it has no backward.
Tensor linear_compact(const Tensor& x, const CompactTensor& weight, const Tensor& bias);

// TFLOP/s of an n x n x n GEMM on `device` in its backend's current math
// mode, the best of 5 rounds after a warm-up, about `seconds` in all (each
// round one call at least): the matrix rate this process reaches with the
// kernels training uses.
double measure_gemm_tflops(Device device, int n, double seconds);
// The peak MFU is measured against: measure_gemm_tflops at a size that
// reaches the hardware's rate (2048 on a CPU, in f32 since the CPU's 16-bit
// modes only round the inputs; 8192 on a GPU, in the current math mode).
double measure_gemm_peak_tflops(Device device, double seconds = 1.0);
// The library and code path of `device`'s GEMM, for the line a job prints:
// "oneDNN 2.6.3 dnnl_sgemm (avx512_core_bf16)" on a CPU, "cuBLASLt" on a GPU.
std::string gemm_kernel_name(Device device);

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
// x (..., C) + bias (C) broadcast over the leading dims.
Tensor add_bias(const Tensor& x, const Tensor& bias);
void add_bias_backward(const Tensor& dy, Tensor* dx, Tensor* dbias);

// ---- normalization (layer_norm.cpp) ---------------------------------------------
struct LayerNormSaved {
  Tensor mean, rstd;  // (rows)
};
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  LayerNormSaved* saved);
void layer_norm_backward(const Tensor& x, const Tensor& weight, const LayerNormSaved& saved,
                         const Tensor& dy, Tensor* dx, Tensor* dweight, Tensor* dbias);

// GroupNorm and BatchNorm2d over x (N, C, H, W), weight and bias (C)
// (channel_norm.cpp). GroupNorm normalizes each image's `groups` groups of
// channels. BatchNorm2d normalizes each channel over the batch; in training
// it updates running_mean and running_var in place when they are given
// (PyTorch's momentum convention, the unbiased variance), and otherwise
// (eval) normalizes with them. The saved statistics are biased variances.
struct ChannelNormSaved {
  Tensor mean, var;
  bool from_batch = true;  // computed from x (the gradient flows through them)
};
Tensor group_norm(const Tensor& x, int groups, const Tensor& weight, const Tensor& bias, float eps,
                  ChannelNormSaved* saved);
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* running_mean,
                    Tensor* running_var, bool training, float momentum, float eps,
                    ChannelNormSaved* saved);
// Either norm's backward: groups and per_image as in the forward (BatchNorm2d:
// groups = C, per_image false). Null gradients are skipped.
void channel_norm_backward(const Tensor& x, int groups, bool per_image, const Tensor& weight,
                           const ChannelNormSaved& saved, float eps, const Tensor& dy, Tensor* dx,
                           Tensor* dweight, Tensor* dbias);

// ---- softmax and losses (softmax.cpp) --------------------------------------------
Tensor softmax(const Tensor& x);  // over the last dim
void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);
// Mean cross entropy of logits (..., V) against int targets (...), skipping
// ignore_index. Returns a 1-element tensor; lse receives the rows' log-sum-exp.
struct CrossEntropySaved {
  Tensor lse, targets;  // targets as i64
  int64_t counted = 0;  // rows not ignored; backward divides the gradient by it
  double total = 0;     // the counted rows' summed loss
};
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved);
void cross_entropy_backward(const Tensor& logits, const CrossEntropySaved& saved,
                            int64_t ignore_index, float dloss, Tensor* dlogits);

// ---- embedding (embedding.cpp) ------------------------------------------------------
Tensor to_index(const Tensor& ids, const char* op);        // i32/i64/u16 ids -> contiguous i64
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
// k and v may be views of the first Tk keys of larger (B,H,T_max,D) buffers
// (a KV cache: cache.narrow(2, 0, Tk)), read in place; backward needs them
// dense. Decoding: Tq new queries after Tk - Tq cached keys, causal.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options,
                 Tensor* lse);
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

// ---- multi-modal causal attention (mmca.cpp): DeepSpeed-VisualChat -------------------
// What each position of a multi-modal sequence holds: text, the tokens of an
// image (numbered 1, 2, ... along the row; one image's tokens consecutive),
// or padding (seen by no query).
constexpr int32_t kTextToken = 0;
constexpr int32_t kPaddingToken = -1;
// MMCA's two key masks, u8 (B, Tq, Tk): a text query attends to the text up
// to itself through one softmax and to the earlier images' tokens through
// another, and the two outputs are summed; an image's token attends to its
// own image's tokens up to itself only (its text mask is empty). kinds (B,
// Tk) row-major in host memory; the queries are the last Tq positions.
struct MmcaMasks {
  Tensor text, image;
};
MmcaMasks mmca_masks(std::span<const int32_t> kinds, int64_t batch, int64_t keys, int64_t queries,
                     Device device);
// The keys mask of plain causal attention over the same kinds (padding
// hidden), or undefined when no position is padding.
Tensor padding_mask(std::span<const int32_t> kinds, int64_t batch, int64_t keys, int64_t queries,
                    Device device);
// MMCA (inference): causal attention under masks.text plus causal attention
// under masks.image, each normalized on its own; a row with no visible key
// in a part adds zeros. options.mask must be undefined.
Tensor mmca_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionOptions& options, const MmcaMasks& masks);

// ---- rows (rows.cpp): token dropping ---------------------------------------------
// x (B,T,C), index (B,K) of distinct rows -> (B,K,C).
Tensor gather_rows(const Tensor& x, const Tensor& index);
void gather_rows_backward(const Shape& x_shape, const Tensor& index, const Tensor& dy, Tensor* dx);
// base (B,T,C) with rows index (B,K) replaced by src (B,K,C).
Tensor scatter_rows(const Tensor& base, const Tensor& index, const Tensor& src);
void scatter_rows_backward(const Tensor& index, const Tensor& dy, Tensor* dbase, Tensor* dsrc);

// ---- PPO and image-model ops (issue 12) ------------------------------------------

// Pointwise (pointwise.cpp). Unary, same shape; the backward of each adds
// dy * op'(x) to dx (exp's from its output y).
Tensor exp(const Tensor& x);
void exp_backward(const Tensor& y, const Tensor& dy, Tensor* dx);
Tensor log(const Tensor& x);
void log_backward(const Tensor& x, const Tensor& dy, Tensor* dx);
// log(sigmoid(x)), stable for any x (the reward model's pairwise loss).
Tensor log_sigmoid(const Tensor& x);
void log_sigmoid_backward(const Tensor& x, const Tensor& dy, Tensor* dx);
Tensor relu(const Tensor& x);
void relu_backward(const Tensor& x, const Tensor& dy, Tensor* dx);  // 0 where x <= 0
Tensor clamp(const Tensor& x, float lo, float hi);
void clamp_backward(const Tensor& x, float lo, float hi, const Tensor& dy,
                    Tensor* dx);  // 0 outside [lo, hi]
// Binary with broadcasting: one operand has the result's shape, the other
// either the same shape or a "block" of it: its shape, padded with leading
// 1s to the same rank, equals the full one's except for 1s before and after
// one run of dims. So (C) or (T, C) for (B, T, C) (trailing dims: a weight,
// a per-token advantage), (B, T, 1) for (B, T, C) (keepdim sums), (1, C, 1, 1)
// for (N, C, H, W) (per channel), and a one-element tensor (a scalar). The
// gradient of the broadcast operand is summed over the dims it was spread on.
Tensor mul(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);  // torch.minimum (ties: half the gradient each)
Tensor maximum(const Tensor& a, const Tensor& b);
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
void minimum_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
void maximum_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);

// Reductions and concat (reduce.cpp). Shape rule: sum/mean of every element
// -> (1); over the last dim, x (..., C) -> (...), or (..., 1) with keepdim;
// a 1-D x (C) gives (1) either way. Sums accumulate in double.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);
Tensor sum_last(const Tensor& x, bool keepdim = false);
Tensor mean_last(const Tensor& x, bool keepdim = false);
// The backward of all four: dx (x_shape) += alpha * dy spread over the summed
// elements (alpha 1 for a sum, 1 / count for a mean).
void reduce_backward(const Tensor& dy, const Shape& x_shape, float alpha, Tensor* dx);
// Tensors whose shapes agree except along `dim` (negative counts from the
// end), joined along it.
Tensor concat(std::span<const Tensor> xs, int dim);
// dxs[i] += the slice of dy that xs[i] (of shapes[i]) became; nullptr skips one.
void concat_backward(const Tensor& dy, std::span<const Shape> shapes, int dim,
                     std::span<Tensor* const> dxs);

// Log-probabilities (softmax.cpp). log_softmax over the last dim.
Tensor log_softmax(const Tensor& x);
void log_softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);
// log_softmax(logits)[..., ids]: logits (..., V), int ids (...) in [0, V) ->
// (...), without the (..., V) log-softmax in memory (DeepSpeed-Chat's
// gather_log_probs, fused like cross_entropy).
struct TokenLogProbSaved {
  Tensor lse, ids;  // (rows) log-sum-exp; ids as i64
};
Tensor token_log_probs(const Tensor& logits, const Tensor& ids, TokenLogProbSaved* saved);
void token_log_probs_backward(const Tensor& logits, const TokenLogProbSaved& saved,
                              const Tensor& dy, Tensor* dlogits);

// Convolution and pooling, NCHW (conv.cpp); stride and padding are the same
// in both spatial dims. x (N, C, H, W), weight (O, C, kh, kw), bias (O) or
// undefined -> (N, O, (H + 2p - kh) / s + 1, (W + 2p - kw) / s + 1), as
// im2col + GEMM (in chunks of images, so the column buffer stays bounded).
// With groups G, weight is (O, C/G, kh, kw) and output channels [g O/G, (g+1) O/G)
// see input channels [g C/G, (g+1) C/G) only (G = C = O: depthwise).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding,
              int groups = 1);
void conv2d_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, int stride,
                     int padding, Tensor* dx, Tensor* dweight, Tensor* dbias, int groups = 1);
// Pooling over kernel x kernel windows (padding <= kernel / 2, as PyTorch).
// max_pool2d saves the argmax (i32, the output's shape) for its backward;
// avg_pool2d divides by kernel^2 (PyTorch's count_include_pad=True).
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding, Tensor* argmax);
void max_pool2d_backward(const Shape& x_shape, const Tensor& argmax, const Tensor& dy, int kernel,
                         int stride, int padding, Tensor* dx);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding);
void avg_pool2d_backward(const Shape& x_shape, const Tensor& dy, int kernel, int stride,
                         int padding, Tensor* dx);

}  // namespace turbine::ops
