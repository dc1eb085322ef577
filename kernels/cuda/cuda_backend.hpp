// The CUDA backend: cuBLASLt for GEMM (f32, or bf16/f16 tensor cores with f32
// accumulation by math mode), kernels of our own for everything else, all
// queued on one stream per device (or on a thread's lane: lanes.cpp), and a
// caching allocator. The methods are
// defined one concern per .cu file beside this header, like kernels/cpu.
// One process drives one device (MPI ranks map to local GPUs): the backend
// makes its device current when it is created.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

namespace turbine::kernels {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return name_.c_str(); }
  void synchronize() override;
  int64_t reserved_bytes() const override;
  int64_t available_bytes() const override;

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t bytes) override;
  void* allocate_host(size_t bytes) override;
  void deallocate_host(void* ptr, size_t bytes) override;
  void copy_from_host_async(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host_async(void* host_dst, const void* src, size_t bytes) override;
  void wait_for_transfers() override;
  void synchronize_transfers() override;
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
  void gemm_compact(int M, int N, int K, const float* x, int ldx, const CompactWeight& w, float* y,
                    int ldy, bool accumulate) override;
  void gemm_mixed(const MixedGemm& g) override;

  // 16-bit activations, read and written in 16-bit.
  void add16(FloatType t, const uint16_t* a, const uint16_t* b, uint16_t* y, size_t n, float alpha,
             float beta) override;
  void scale16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float alpha,
               bool accumulate) override;
  void add_bias16(FloatType t, uint16_t* y, const float* bias, int rows, int cols) override;
  void bias_backward16(FloatType t, const uint16_t* dy, float* dbias, int rows, int cols,
                       bool accumulate) override;
  void gelu_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n) override;
  void gelu_backward16(FloatType t, const uint16_t* x, const uint16_t* dy, uint16_t* dx, size_t n,
                       bool accumulate) override;
  void layer_norm_forward16(FloatType t, const uint16_t* x, const float* weight, const float* bias,
                            uint16_t* y, float* mean, float* rstd, int rows, int cols,
                            float eps) override;
  void layer_norm_backward16(FloatType t, const uint16_t* x, const float* weight, const float* mean,
                             const float* rstd, const uint16_t* dy, uint16_t* dx, float* dweight,
                             float* dbias, int rows, int cols, bool accumulate_dx,
                             bool accumulate_params) override;
  void split_qkv16(FloatType t, const uint16_t* qkv, uint16_t* q, uint16_t* k, uint16_t* v,
                   int batch, int seq, int heads, int head_dim) override;
  void merge_qkv16(FloatType t, const uint16_t* dq, const uint16_t* dk, const uint16_t* dv,
                   uint16_t* dqkv, int batch, int seq, int heads, int head_dim,
                   bool accumulate) override;
  void merge_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads, int seq,
                     int head_dim, bool accumulate) override;
  void split_heads16(FloatType t, const uint16_t* x, uint16_t* y, int batch, int heads, int seq,
                     int head_dim, bool accumulate) override;
  void gather_rows16(FloatType t, const uint16_t* x, const int64_t* index, uint16_t* y, int batch,
                     int rows, int picked, int cols, bool accumulate) override;
  void scatter_rows16(FloatType t, const uint16_t* src, const int64_t* index, uint16_t* y,
                      int batch, int rows, int picked, int cols, bool accumulate) override;
  void zero_rows16(FloatType t, uint16_t* y, const int64_t* index, int batch, int rows, int picked,
                   int cols) override;
  void cross_entropy_forward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                               float* losses, float* lse, int rows, int vocab,
                               int64_t ignore_index) override;
  void cross_entropy_backward16(FloatType t, const uint16_t* logits, const int64_t* targets,
                                const float* lse, float dloss, uint16_t* dlogits, int rows,
                                int vocab, int64_t ignore_index, bool accumulate) override;
  void dropout_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float p,
                         uint64_t seed, uint64_t stream, uint64_t offset) override;
  void dropout_backward16(FloatType t, const uint16_t* dy, uint16_t* dx, size_t n, float p,
                          uint64_t seed, uint64_t stream, uint64_t offset,
                          bool accumulate) override;
  void attention_forward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                           const uint16_t* k, const uint16_t* v, uint16_t* out,
                           float* lse) override;
  void attention_backward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                            const uint16_t* k, const uint16_t* v, const uint16_t* out,
                            const float* lse, const uint16_t* dout, uint16_t* dq, uint16_t* dk,
                            uint16_t* dv, bool accumulate) override;

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

  // PPO and image-model kernels (issue 12): pointwise.cu, softmax.cu, conv.cu.
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

  // Lanes (lanes.cpp): a stream, scratch and GEMM workspace per thread that
  // holds one; with `partition`, a green context over SM groups of the
  // device split once (cuDevSmResourceSplitByCount at the device's minimum
  // partition): round(share x groups) of them, at least one, the least used
  // by lanes open at the time, so lanes whose shares fit get disjoint SMs.
  std::unique_ptr<Lane> open_lane(double share, bool partition) override;
  LaneSupport lanes() override;

  // CUDA specifics, for the kernels and for dist/ (NCCL runs on this stream).
  int device() const { return device_; }
  // The calling thread's stream: its lane's while it holds one of this
  // backend, else the backend's.
  cudaStream_t stream() const;
  void* native_stream() override { return stream(); }
  // A device buffer of at least `bytes` owned by the backend, reused by the
  // next call: for reduction partials and small staged arguments.
  void* scratch(size_t bytes);
  // A device copy of `heads` ALiBi slopes given in host memory (cached).
  const float* stage_alibi(const float* host_slopes, int heads);
  // Empties the allocator's cache back to the driver.
  void release_cached() override;

 private:
  // One cuBLASLt matmul (classic cuBLAS where it declines) for a GemmKey
  // (gemm.cpp's, passed opaquely): plans are cached per key.
  void run_matmul(const void* key, float alpha, const void* a, const void* b, float beta, void* c);
  struct Block {
    void* ptr;
    size_t size;
  };
  static size_t rounded(size_t bytes);

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  // Asynchronous transfers: their stream, and the events that order them
  // after earlier work (compute_mark_) and work after them (transfer_mark_).
  cudaStream_t transfer_stream_ = nullptr;
  cudaEvent_t compute_mark_ = nullptr, transfer_mark_ = nullptr;
  void start_transfer();  // the transfer stream waits for the work queued so far
  // A lane's queue and buffers; the thread holding it finds it through a
  // thread-local pointer (lane()), checked against the backend.
  struct LaneState {
    const CudaBackend* owner = nullptr;
    cudaStream_t stream = nullptr;
    void* scratch = nullptr;
    size_t scratch_bytes = 0;
    void* lt_workspace = nullptr;
    cublasLtHandle_t lt = nullptr;
    cublasHandle_t blas = nullptr;  // created on first use, bound to the stream
  };
  LaneState* lane() const;                   // the calling thread's lane of this backend, or null
  static thread_local LaneState* tls_lane_;  // the calling thread's lane, any backend
  friend class CudaLane;
  class SmGroups;  // lanes.cpp: the device's split, driver entry points
  // Made on first use, under mutex_ (shared_ptr: its deleter is made where
  // SmGroups is complete).
  std::shared_ptr<SmGroups> groups_;
  SmGroups& sm_groups();
  void close_lane_blocks(cudaStream_t lane_stream);  // its cached blocks: idle
  // The open lanes' streams, and a wait for every stream of the backend
  // (cudaDeviceSynchronize waits only for the calling thread's context).
  void add_lane_stream(cudaStream_t s);
  void remove_lane_stream(cudaStream_t s);
  void synchronize_all();
  std::vector<cudaStream_t> lane_streams_;  // under mutex_
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;  // fallback for shapes cuBLASLt declines
  void* lt_workspace_ = nullptr;
  size_t lt_workspace_bytes_ = 0;

  mutable std::mutex mutex_;
  // Cached free blocks by the stream they were freed on (work queued there
  // may still use them: only that stream's later work may take them) and
  // rounded size; key nullptr: idle, freed on a lane since closed.
  std::map<cudaStream_t, std::map<size_t, std::vector<void*>>> free_blocks_;
  int64_t reserved_ = 0;  // cudaMalloc'ed, in use or cached
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::mutex alibi_mutex_;
  std::vector<float> alibi_host_;
  float* alibi_device_ = nullptr;
};

}  // namespace turbine::kernels
