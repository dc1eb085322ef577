// The kernel interface every backend implements (CPU in kernels/cpu, CUDA in
// kernels/cuda when built). Arguments are raw pointers in the backend's own
// memory plus sizes; shapes are in comments as (rows, cols) or (B, T, C).
// Backward kernels take `accumulate`: false writes the gradient, true adds it
// to what is there (gradients of reused tensors sum without a zero fill).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace turbine::kernels {

struct AttentionShape {
  int batch = 0, heads = 0, seq_q = 0, seq_k = 0, head_dim = 0;
  float scale = 1.0f;   // multiplies q.k
  bool causal = false;  // key j visible to query i only if j <= i
  // (heads) in HOST memory on every backend, or null: adds -slope * (i - j).
  const float* alibi_slopes = nullptr;
  const uint8_t* mask = nullptr;  // (batch or 1, seq_q, seq_k), 1 = attend, or null
  bool mask_per_batch = false;    // mask holds one (seq_q, seq_k) plane per batch
  // Absolute positions (batch, seq) of the tokens, shared by queries and keys
  // (self-attention, seq_q == seq_k), strictly increasing in each row; or
  // null for 0, 1, 2, ... Token dropping keeps a subset of a sequence and
  // attends with the kept tokens' original positions (causality and ALiBi).
  const int64_t* positions = nullptr;
  // Elements between consecutive (batch, head) planes of k and v, 0 for
  // dense (seq_k * head_dim): a KV cache (B, H, T_max, D) read up to seq_k
  // keys has T_max * head_dim. Forward only; backward takes dense k and v.
  int64_t kv_stride = 0;
  int64_t kv_plane() const { return kv_stride ? kv_stride : int64_t(seq_k) * head_dim; }
};

// Elements a row-major (rows, cols) matrix with leading dimension ld spans
// in memory (what a GEMM operand touches).
inline size_t matrix_extent(int rows, int cols, int ld) {
  return rows == 0 ? 0 : static_cast<size_t>(rows - 1) * ld + cols;
}
// ... and `batch` of them spaced by `stride` elements (a strided-batched
// GEMM operand; the stride is unused for one matrix).
inline size_t strided_extent(int rows, int cols, int ld, int batch, int64_t stride) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  return size_t(batch - 1) * size_t(batch > 1 ? stride : 0) + matrix_extent(rows, cols, ld);
}

// ---- types of the PPO and image-model kernels (see the section at the end of Backend)

// Elementwise unary ops. clamp limits to [lo, hi]; the others ignore lo and
// hi. log_sigmoid is log(1 / (1 + e^-x)), stable for large |x| (the reward
// model's pairwise loss).
enum class UnaryOp : uint8_t { exp, log, relu, clamp, log_sigmoid };
inline const char* unary_op_name(UnaryOp op) {
  constexpr const char* names[] = {"exp", "log", "relu", "clamp", "log_sigmoid"};
  return names[static_cast<int>(op)];
}
// Elementwise binary ops whose second operand may be broadcast (see Broadcast).
enum class BinaryOp : uint8_t { mul, minimum, maximum };
inline const char* binary_op_name(BinaryOp op) {
  constexpr const char* names[] = {"mul", "minimum", "maximum"};
  return names[static_cast<int>(op)];
}

// How a small operand b (mid) spreads over a full one (outer, mid, inner),
// both row-major: element (p, q, r) of the full one pairs with b[q]. Covers
// same shape (1, n, 1), a trailing-dims operand (rows, n, 1), a per-row one
// (1, rows, cols), a per-channel one in NCHW (N, C, H*W) and, as the target
// of a reduction, "sum over everything" (1, 1, n).
struct Broadcast {
  int64_t outer = 1, mid = 1, inner = 1;
  constexpr size_t numel() const { return size_t(outer) * size_t(mid) * size_t(inner); }
};

// GroupNorm and BatchNorm2d over images x (batch, channels, plane = H * W),
// NCHW: the channels fall in `groups` equal groups, and each statistic (a
// mean and a biased variance) covers one group's channels of one image
// (per_image: GroupNorm) or of the whole batch (BatchNorm2d, one group per
// channel). Statistic s is (image * groups + group) or (group).
struct ChannelNorm {
  int batch = 0, channels = 0, plane = 0, groups = 1;
  bool per_image = true;
  constexpr int stats() const { return per_image ? batch * groups : groups; }
  // Elements each statistic covers.
  constexpr int64_t group_size() const {
    return int64_t(channels / groups) * plane * (per_image ? 1 : batch);
  }
};

// A 2-D sliding window over images x (batch, channels, height, width), NCHW:
// conv2d's im2col and the pooling kernels. Output (batch, channels', out_h(), out_w()).
struct Window2d {
  int batch = 0, channels = 0, height = 0, width = 0;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  constexpr int out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  constexpr int out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
};

// ---- compact weights for inference (issue 12; see gemm_compact)

// How a weight matrix W (N, K), row-major, is stored: bf16 or f16 values, or
// int8 values q with one f32 scale per `group` consecutive elements of a row:
// W[n][k] = q[n][k] * scales[n * (K / group) + k / group]. group == K is one
// scale per output channel; smaller groups (64, 128) follow outliers better.
enum class WeightType : uint8_t { bf16, f16, i8 };
const char* weight_type_name(WeightType type);
struct CompactWeight {
  WeightType type = WeightType::bf16;
  const void* data = nullptr;     // (N, K): uint16_t bits, or int8_t
  const float* scales = nullptr;  // (N, K / group), i8 only
  int group = 0;                  // i8 only: divides K
};

// ---- the paged KV cache of continuous batching (infer serve; nn/paged_kv_cache.hpp)

// One engine step over several sequences at once (Dynamic SplitFuse):
// sequence s contributes q_len new tokens (a prompt chunk, or 1 when it
// decodes), laid out one sequence after another, `tokens` in all. Keys and
// values live in a pool of fixed-size blocks, (num_blocks, heads,
// block_size, head_dim) per layer; a sequence's block table row lists its
// blocks in order, so its position p is in block table[p / block_size] at
// offset p % block_size. seq_info (sequences, 3) i32 gives each sequence's
// first token, q_len and context length (cached + new, all in its blocks):
// the i-th new token sits at position context - q_len + i and sees keys 0 to
// that position, with ALiBi's -slope * (query position - key position).
struct PagedAttentionShape {
  int sequences = 0, tokens = 0, heads = 0, head_dim = 0, block_size = 0;
  int max_blocks = 0;                   // columns of the block table (sequences, max_blocks) i32
  float scale = 1.0f;                   // multiplies q.k
  const float* alibi_slopes = nullptr;  // (heads) in HOST memory, or null
};

// Precision of the matrix products (gemm and attention): plain f32, or the
// inputs rounded to bf16 / f16 with f32 accumulation, as on tensor cores
// (CUDA runs them there; the CPU multiplies bf16 natively where it can, else
// rounds the same way, for the same numbers). Elementwise ops and reductions
// compute in f32 in every mode; storage is f32 unless a caller keeps
// activations in 16-bit (FloatType below).
enum class MathMode : uint8_t { f32, bf16, f16 };
const char* math_mode_name(MathMode mode);

// ---- 16-bit activations (issue 12; see the section at the end of Backend)

// How a float array is stored: f32, or the bits of bf16 / f16 values in
// uint16_t. Activations kept in 16-bit (as llm.c keeps them on GPUs) halve
// the memory and traffic of everything a training step saves for backward.
enum class FloatType : uint8_t { f32, bf16, f16 };
const char* float_type_name(FloatType type);
// The type a math mode multiplies in: bf16, f16, or f32.
inline FloatType float_type_of(MathMode mode) {
  return mode == MathMode::bf16  ? FloatType::bf16
         : mode == MathMode::f16 ? FloatType::f16
                                 : FloatType::f32;
}

// C (M, N) = alpha * op(A) op(B) + beta * C over `batch` matrices spaced by
// the strides (elements), row-major, each operand stored as its type says
// (16-bit operands are exact in f32; a 16-bit C is read, and written once,
// rounded from the f32 accumulation). The math mode applies as to gemm.
struct MixedGemm {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  FloatType a_type = FloatType::f32;
  int lda = 0;
  int64_t stride_a = 0;
  const void* B = nullptr;
  FloatType b_type = FloatType::f32;
  int ldb = 0;
  int64_t stride_b = 0;
  void* C = nullptr;
  FloatType c_type = FloatType::f32;
  int ldc = 0;
  int64_t stride_c = 0;
  int batch = 1;
};

class Backend {
 public:
  Backend() : id_(next_id_++) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual const char* name() const = 0;

  // The math mode is the calling thread's, per backend (f32 until set), so
  // an inference server's threads and a training step can each keep their
  // own. Kernels read it in the calling thread, before any parallel region.
  void set_math_mode(MathMode mode) { thread_modes()[id_] = mode; }
  MathMode math_mode() const {
    const auto& modes = thread_modes();
    const auto it = modes.find(id_);
    return it == modes.end() ? MathMode::f32 : it->second;
  }
  // Waits for the work queued so far (a no-op where kernels run in order on
  // the calling thread, as on the CPU).
  virtual void synchronize() {}
  // Bytes held by the backend's allocator, in use or cached for reuse.
  virtual int64_t reserved_bytes() const { return 0; }
  // Bytes the backend could still allocate: the device's free memory plus
  // the allocator's cached blocks (the host's available memory on the CPU).
  virtual int64_t available_bytes() const = 0;
  // Returns the allocator's cached free blocks to the system (after a model
  // was converted and its old weights freed, say).
  virtual void release_cached() {}
  // The queue this backend runs its work on, for libraries that must run in
  // order with it (NCCL): the cudaStream_t as void* on CUDA, null where work
  // runs on the calling thread (CPU). lib/dist uses it instead of the CUDA
  // backend's concrete class.
  virtual void* native_stream() { return nullptr; }

  // Lanes: the work of one thread kept apart from other threads' (fedsim's
  // clients running together on a worker, issue 17). While the thread that
  // opened a lane holds it, the kernels, copies and allocations it issues go
  // to the lane's own queue, scratch and GEMM workspace, so threads neither
  // wait on one queue nor share its buffers; the lane's queue starts after
  // the work queued before it opened, and closing it (destroying the object,
  // on the same thread) waits for its work. A lane opened with `partition`
  // runs on about `share` of the device's cores where the device can
  // partition itself (CUDA green contexts: disjoint SM groups while lanes
  // running together fit, shared when they do not); lanes() says whether it
  // can. The CPU has no lanes (each thread runs its own kernels already):
  // open_lane returns null there.
  class Lane {
   public:
    virtual ~Lane() = default;
    // The cores the lane may use (SMs on CUDA) and the device's; 0 and 0
    // without a partition.
    virtual int units() const = 0;
    virtual int device_units() const = 0;
    // Which of the device's partition groups it runs on (empty: all).
    virtual std::vector<int> groups() const = 0;
  };
  virtual std::unique_ptr<Lane> open_lane(double share, bool partition) {
    (void)share, (void)partition;
    return nullptr;
  }
  // Whether open_lane can partition this device; else why not.
  struct LaneSupport {
    bool lanes = false, partition = false;
    std::string why_not;  // when !partition
  };
  virtual LaneSupport lanes() { return {false, false, "the CPU backend has no lanes"}; }

  // Memory.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void fill(float* x, size_t n, float value) = 0;

  // Asynchronous transfers, for streaming weights in (and state out) while
  // kernels run. Host memory for them comes from allocate_host: page-locked
  // on CUDA (what an asynchronous copy needs), ordinary aligned memory on the
  // CPU. A transfer returns at once; it starts after the work queued on this
  // backend before it (the buffers it reads or overwrites are done with) and
  // runs alongside work queued after it, on a queue of its own (a second
  // CUDA stream). wait_for_transfers() makes work queued after it wait, on
  // the device, for the transfers queued before it; synchronize_transfers()
  // makes the host wait for them (before reading or refilling host buffers);
  // synchronize() waits for everything. On the CPU transfers copy at once.
  virtual void* allocate_host(size_t bytes);
  virtual void deallocate_host(void* ptr, size_t bytes);
  virtual void copy_from_host_async(void* dst, const void* host_src, size_t bytes);
  virtual void copy_to_host_async(void* host_dst, const void* src, size_t bytes);
  virtual void wait_for_transfers() {}
  virtual void synchronize_transfers() {}
  virtual void convert_f32_to_bf16(const float* x, uint16_t* y, size_t n) = 0;
  virtual void convert_bf16_to_f32(const uint16_t* x, float* y, size_t n) = 0;
  virtual void convert_f32_to_f16(const float* x, uint16_t* y, size_t n) = 0;
  virtual void convert_f16_to_f32(const uint16_t* x, float* y, size_t n) = 0;

  // Row-major C (M,N) = alpha * op(A) op(B) + beta * C; op(A) is (M,K).
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc) = 0;
  // The same over `batch` matrices spaced by the given strides (in elements).
  virtual void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                    const float* A, int lda, int64_t stride_a, const float* B,
                                    int ldb, int64_t stride_b, float beta, float* C, int ldc,
                                    int64_t stride_c, int batch) = 0;

  // y (M, N) (+)= x (M, K) W^T, W (N, K) stored compactly (a linear layer's
  // weight, as Hugging Face stores it): f32 x and y, f32 accumulation, W
  // widened to f32 as it is read (in the inner loop for few rows of x, by
  // panels of W rows for many: never a whole f32 copy of W). Rows of x are
  // ldx apart, rows of y ldy. The math mode does not apply: the weight's
  // storage type is the precision, and x stays f32.
  virtual void gemm_compact(int M, int N, int K, const float* x, int ldx, const CompactWeight& w,
                            float* y, int ldy, bool accumulate) = 0;

  // Elementwise: y = alpha * a + beta * b (y may alias a or b).
  virtual void add(const float* a, const float* b, float* y, size_t n, float alpha, float beta) = 0;
  // y = alpha * x (+ y when accumulate).
  virtual void scale(const float* x, float* y, size_t n, float alpha, bool accumulate) = 0;
  // y (rows, cols) += bias (cols) broadcast over rows.
  virtual void add_bias(float* y, const float* bias, int rows, int cols) = 0;
  // dbias (cols) (+)= column sums of dy (rows, cols).
  virtual void bias_backward(const float* dy, float* dbias, int rows, int cols,
                             bool accumulate) = 0;
  // Sum and sum of squares in double, for losses and gradient norms.
  virtual double sum(const float* x, size_t n) = 0;
  virtual double sum_squares(const float* x, size_t n) = 0;

  // GeLU, tanh form (as BLOOM and GPT-2).
  virtual void gelu_forward(const float* x, float* y, size_t n) = 0;
  virtual void gelu_backward(const float* x, const float* dy, float* dx, size_t n,
                             bool accumulate) = 0;

  // LayerNorm over the last dim: x, y (rows, cols); mean, rstd (rows).
  virtual void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y,
                                  float* mean, float* rstd, int rows, int cols, float eps) = 0;
  virtual void layer_norm_backward(const float* x, const float* weight, const float* mean,
                                   const float* rstd, const float* dy, float* dx, float* dweight,
                                   float* dbias, int rows, int cols, bool accumulate_dx,
                                   bool accumulate_params) = 0;

  // Softmax over the last dim of (rows, cols).
  virtual void softmax_forward(const float* x, float* y, int rows, int cols) = 0;
  virtual void softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                                bool accumulate) = 0;

  // Cross entropy fused with log-softmax: logits (rows, vocab), targets (rows);
  // writes the loss of each row (0 where the target is ignore_index) and the
  // row's log-sum-exp. Backward writes dlogits = (softmax - onehot) * dloss.
  virtual void cross_entropy_forward(const float* logits, const int64_t* targets, float* losses,
                                     float* lse, int rows, int vocab, int64_t ignore_index) = 0;
  virtual void cross_entropy_backward(const float* logits, const int64_t* targets, const float* lse,
                                      float dloss, float* dlogits, int rows, int vocab,
                                      int64_t ignore_index, bool accumulate) = 0;

  // Embedding: ids (n), table (vocab, dim), out (n, dim).
  virtual void embedding_forward(const int64_t* ids, const float* table, float* out, int n,
                                 int vocab, int dim) = 0;
  virtual void embedding_backward(const int64_t* ids, const float* dout, float* dtable, int n,
                                  int vocab, int dim, bool accumulate) = 0;

  // Attention, flash-style (memory independent of seq^2): q (B,H,Tq,D),
  // k, v (B,H,Tk,D), out (B,H,Tq,D), lse (B,H,Tq) saved for backward.
  virtual void attention_forward(const AttentionShape& s, const float* q, const float* k,
                                 const float* v, float* out, float* lse) = 0;
  virtual void attention_backward(const AttentionShape& s, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse,
                                  const float* dout, float* dq, float* dk, float* dv,
                                  bool accumulate) = 0;

  // Dropout with a counter-based mask: element i is kept when
  // philox_uniform(seed, stream, offset, i) >= p, and scaled by 1/(1-p).
  virtual void dropout_forward(const float* x, float* y, size_t n, float p, uint64_t seed,
                               uint64_t stream, uint64_t offset) = 0;
  virtual void dropout_backward(const float* dy, float* dx, size_t n, float p, uint64_t seed,
                                uint64_t stream, uint64_t offset, bool accumulate) = 0;

  // Row gather/scatter inside each batch: x (B,T,C), index (B,K) of rows.
  virtual void gather_rows(const float* x, const int64_t* index, float* y, int batch, int rows,
                           int picked, int cols, bool accumulate) = 0;
  // y[b, index[b,k]] = src[b,k] (or += when accumulate), other rows untouched.
  virtual void scatter_rows(const float* src, const int64_t* index, float* y, int batch, int rows,
                            int picked, int cols, bool accumulate) = 0;
  // y[b, index[b,k]] = 0 for every picked row.
  virtual void zero_rows(float* y, const int64_t* index, int batch, int rows, int picked,
                         int cols) = 0;

  // BLOOM's fused QKV (B,T,H,3,D) -> q, k, v each (B,H,T,D), and the inverse.
  virtual void split_qkv(const float* qkv, float* q, float* k, float* v, int batch, int seq,
                         int heads, int head_dim) = 0;
  virtual void merge_qkv(const float* dq, const float* dk, const float* dv, float* dqkv, int batch,
                         int seq, int heads, int head_dim, bool accumulate) = 0;
  // (B,H,T,D) <-> (B,T,H*D).
  virtual void merge_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                           bool accumulate) = 0;
  virtual void split_heads(const float* x, float* y, int batch, int heads, int seq, int head_dim,
                           bool accumulate) = 0;

  // AdamW on fp32 params with decoupled weight decay and bias correction:
  // p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p).
  virtual void adamw_step(float* param, const float* grad, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay,
                          float bias_correction1, float bias_correction2) = 0;

  // Mixed precision: x *= alpha over n elements, returning whether every
  // element of x was finite before scaling (fp16 loss scaling's overflow test).
  virtual bool unscale_and_check(float* x, size_t n, float alpha) = 0;

  // ---- PPO and image-model kernels (issue 12) ----------------------------------------
  // y = op(x) over n elements (y may alias x).
  virtual void unary_forward(UnaryOp op, const float* x, float* y, size_t n, float lo,
                             float hi) = 0;
  // dx (+)= dy * op'(x): exp reads y (its own output), the others x. relu's
  // gradient is 0 at x <= 0; clamp's passes where lo <= x <= hi, as PyTorch's.
  virtual void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy,
                              float* dx, size_t n, float lo, float hi, bool accumulate) = 0;
  // y (outer, mid, inner) = op(a (outer, mid, inner), b (mid) broadcast).
  virtual void binary_forward(BinaryOp op, const float* a, const float* b, float* y,
                              Broadcast shape) = 0;
  // Gradients of binary_forward, both full-size (outer, mid, inner): da (+)=
  // dy * d op / da and db_full (+)= dy * d op / db at every element (the
  // caller reduces db_full to b's shape with reduce_sum when b is broadcast).
  // minimum/maximum send dy to the selected operand and split it in halves
  // at ties, as PyTorch. da or db_full may be null (not needed).
  virtual void binary_backward(BinaryOp op, const float* a, const float* b, const float* dy,
                               float* da, float* db_full, Broadcast shape, bool accumulate_da,
                               bool accumulate_db) = 0;
  // y (mid) (+)= alpha * sum over (outer, inner) of x (outer, mid, inner),
  // accumulated in double, in an order that depends only on the sizes.
  virtual void reduce_sum(const float* x, float* y, Broadcast shape, float alpha,
                          bool accumulate) = 0;
  // y (outer, mid, inner) (+)= alpha * x (mid) broadcast: reduce_sum's backward.
  virtual void expand(const float* x, float* y, Broadcast shape, float alpha, bool accumulate) = 0;
  // A strided block copy: dst[r * dst_stride + c] (+)= src[r * src_stride + c]
  // for r < rows, c < cols (concat and its backward).
  virtual void copy_rows_strided(const float* src, int64_t src_stride, float* dst,
                                 int64_t dst_stride, int64_t rows, int64_t cols,
                                 bool accumulate) = 0;
  // log_softmax over the last dim of (rows, cols), and dx (+)= dy - softmax * sum(dy).
  virtual void log_softmax_forward(const float* x, float* y, int rows, int cols) = 0;
  virtual void log_softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                                    bool accumulate) = 0;
  // Per-token log-probabilities' backward (the forward is cross_entropy_forward,
  // negated): dlogits (+)= dlogp[r] * (onehot(targets[r]) - softmax(logits)),
  // from the rows' log-sum-exp; targets all in [0, vocab).
  virtual void token_log_prob_backward(const float* logits, const int64_t* targets,
                                       const float* lse, const float* dlogp, float* dlogits,
                                       int rows, int vocab, bool accumulate) = 0;
  // conv2d's im2col: x (batch, channels, H, W) -> cols (batch, channels * kh
  // * kw, out_h * out_w), one GEMM operand per image; zeros where the window
  // is in the padding. col2im: dx (+)= the sum of each pixel's entries in
  // cols (the transpose).
  virtual void im2col(const Window2d& w, const float* x, float* cols) = 0;
  virtual void col2im(const Window2d& w, const float* cols, float* dx, bool accumulate) = 0;
  // Pooling over w's windows, per channel: y (batch, channels, out_h, out_w).
  // max saves the argmax (index into the H*W plane; the first maximum in
  // row-major window order). avg divides by kernel_h * kernel_w, padding
  // included (PyTorch's count_include_pad=True).
  virtual void max_pool2d_forward(const Window2d& w, const float* x, float* y, int32_t* argmax) = 0;
  virtual void max_pool2d_backward(const Window2d& w, const int32_t* argmax, const float* dy,
                                   float* dx, bool accumulate) = 0;
  virtual void avg_pool2d_forward(const Window2d& w, const float* x, float* y) = 0;
  virtual void avg_pool2d_backward(const Window2d& w, const float* dy, float* dx,
                                   bool accumulate) = 0;
  // Channel norms (see ChannelNorm). stats: mean and biased var (stats()),
  // two passes. forward: y = (x - mean) * rstd * weight[c] + bias[c] with
  // rstd = 1 / sqrt(var + eps) (training: the batch's statistics; BatchNorm's
  // eval: the running ones). backward: dweight[c] (+)= sum of dy * xhat and
  // dbias[c] (+)= sum of dy over (images, plane); dx (+)= rstd * (dxhat -
  // mean(dxhat) - xhat * mean(dxhat * xhat)) over each statistic's group,
  // dxhat = dy * weight[c], when the statistics came from x (through_stats),
  // else rstd * dxhat. A null dx, or null dweight and dbias, is skipped.
  virtual void channel_norm_stats(const ChannelNorm& n, const float* x, float* mean,
                                  float* var) = 0;
  virtual void channel_norm_forward(const ChannelNorm& n, const float* x, const float* mean,
                                    const float* var, float eps, const float* weight,
                                    const float* bias, float* y) = 0;
  virtual void channel_norm_backward(const ChannelNorm& n, const float* x, const float* mean,
                                     const float* var, float eps, const float* weight,
                                     const float* dy, bool through_stats, float* dx, float* dweight,
                                     float* dbias, bool accumulate_dx, bool accumulate_params) = 0;

  // ---- the paged KV cache (see PagedAttentionShape)
  // k, v (heads, tokens, head_dim) are written to the pools at slots
  // (tokens) i32: slot = block * block_size + offset.
  virtual void paged_kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                              const int32_t* slots, int tokens, int heads, int head_dim,
                              int block_size) = 0;
  // q, out (heads, tokens, head_dim): each new token's attention over its
  // sequence's keys and values read through the block table. Inference only
  // (f32 in every math mode).
  virtual void paged_attention(const PagedAttentionShape& s, const float* q, const float* k_pool,
                               const float* v_pool, const int32_t* block_tables,
                               const int32_t* seq_info, float* out) = 0;

  // ---- 16-bit activations (FloatType) -----------------------------------------------
  // The kernels a BLOOM training step runs, on activations stored in 16-bit
  // (t is bf16 or f16; uint16_t pointers hold the bits), with the same
  // arguments and formulas as the f32 kernels above. Parameters, their
  // gradients, LayerNorm's statistics, log-sum-exps and losses stay f32.
  // Arithmetic is f32: inputs are widened, and each output is rounded once
  // (an accumulated one after adding in f32). The defaults (kernels/
  // activations16.cpp) widen to f32 scratch, run the f32 kernel and round
  // back: correct on every backend, and how the CPU runs them; CUDA
  // overrides the hot ones with kernels that read and write 16-bit directly.
  virtual void gemm_mixed(const MixedGemm& g);
  virtual void add16(FloatType t, const uint16_t* a, const uint16_t* b, uint16_t* y, size_t n,
                     float alpha, float beta);
  virtual void scale16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float alpha,
                       bool accumulate);
  virtual void add_bias16(FloatType t, uint16_t* y, const float* bias, int rows, int cols);
  virtual void bias_backward16(FloatType t, const uint16_t* dy, float* dbias, int rows, int cols,
                               bool accumulate);
  virtual void gelu_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n);
  virtual void gelu_backward16(FloatType t, const uint16_t* x, const uint16_t* dy, uint16_t* dx,
                               size_t n, bool accumulate);
  virtual void layer_norm_forward16(FloatType t, const uint16_t* x, const float* weight,
                                    const float* bias, uint16_t* y, float* mean, float* rstd,
                                    int rows, int cols, float eps);
  virtual void layer_norm_backward16(FloatType t, const uint16_t* x, const float* weight,
                                     const float* mean, const float* rstd, const uint16_t* dy,
                                     uint16_t* dx, float* dweight, float* dbias, int rows, int cols,
                                     bool accumulate_dx, bool accumulate_params);
  virtual void cross_entropy_forward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                                       float* losses, float* lse, int rows, int vocab,
                                       int64_t ignore_index);
  virtual void cross_entropy_backward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                                        const float* lse, float dloss, uint16_t* dlogits, int rows,
                                        int vocab, int64_t ignore_index, bool accumulate);
  virtual void attention_forward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                   const uint16_t* k, const uint16_t* v, uint16_t* out, float* lse);
  virtual void attention_backward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                    const uint16_t* k, const uint16_t* v, const uint16_t* out,
                                    const float* lse, const uint16_t* dout, uint16_t* dq,
                                    uint16_t* dk, uint16_t* dv, bool accumulate);
  virtual void dropout_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float p,
                                 uint64_t seed, uint64_t stream, uint64_t offset);
  virtual void dropout_backward16(FloatType t, const uint16_t* dy, uint16_t* dx, size_t n, float p,
                                  uint64_t seed, uint64_t stream, uint64_t offset, bool accumulate);
  virtual void split_qkv16(FloatType t, const uint16_t* qkv, uint16_t* q, uint16_t* k, uint16_t* v,
                           int batch, int seq, int heads, int head_dim);
  virtual void merge_qkv16(FloatType t, const uint16_t* dq, const uint16_t* dk, const uint16_t* dv,
                           uint16_t* dqkv, int batch, int seq, int heads, int head_dim,
                           bool accumulate);
  virtual void merge_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                             int seq, int head_dim, bool accumulate);
  virtual void split_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads,
                             int seq, int head_dim, bool accumulate);
  virtual void gather_rows16(FloatType t, const uint16_t* x, const int64_t* index, uint16_t* y,
                             int batch, int rows, int picked, int cols, bool accumulate);
  virtual void scatter_rows16(FloatType t, const uint16_t* src, const int64_t* index, uint16_t* y,
                              int batch, int rows, int picked, int cols, bool accumulate);
  virtual void zero_rows16(FloatType t, uint16_t* y, const int64_t* index, int batch, int rows,
                           int picked, int cols);
  // Widening and rounding between any two float types (a copy when equal).
  void convert(FloatType from, const void* x, FloatType to, void* y, size_t n);

 private:
  static std::unordered_map<uint64_t, MathMode>& thread_modes() {
    thread_local std::unordered_map<uint64_t, MathMode> modes;
    return modes;
  }
  static inline std::atomic<uint64_t> next_id_{0};
  const uint64_t id_;  // never reused, unlike the address
};

// Sets a backend's math mode for a scope, in the calling thread, and
// restores the previous one.
class MathModeGuard {
 public:
  MathModeGuard(Backend& backend, MathMode mode) : backend_(backend), saved_(backend.math_mode()) {
    backend_.set_math_mode(mode);
  }
  ~MathModeGuard() { backend_.set_math_mode(saved_); }
  MathModeGuard(const MathModeGuard&) = delete;
  MathModeGuard& operator=(const MathModeGuard&) = delete;

 private:
  Backend& backend_;
  MathMode saved_;
};

// The CPU backend, always present.
Backend& cpu_backend();

// Usable CUDA devices: 0 in a build without the CUDA backend, and where no
// GPU or driver is present (never throws).
int cuda_device_count();
// A visible device's identity (its UUID in hex): the same in every process
// on the node whatever index CUDA_VISIBLE_DEVICES gives the GPU there.
std::string cuda_device_uuid(int device);
// The backend of CUDA device `device_index`, created on first use. Defined
// only in builds with the CUDA backend: call it where TURBINE_HAVE_CUDA is set.
Backend& cuda_backend(int device_index);

}  // namespace turbine::kernels
