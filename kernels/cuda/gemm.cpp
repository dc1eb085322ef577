// GEMM through cuBLASLt. Row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T, so the operands are passed swapped. Storage is f32;
// the math mode picks the compute type: plain f32 (CUBLAS_COMPUTE_32F), or
// tensor cores on bf16 / f16 inputs with f32 accumulation
// (CUBLAS_COMPUTE_32F_FAST_16BF / _16F). Layouts and the heuristic's chosen
// algorithm are cached per shape, since training repeats a few shapes.
// TURBINE_CUDA_GEMM=convert takes the other route in the 16-bit modes: the
// operands are converted to bf16 / f16 first and multiplied as such (f32
// accumulation and output): exactly the CPU's rounding (FAST_16BF may also
// down-convert to TF32) and the plain 16-bit kernels, for a conversion pass.
// gemm_mixed (16-bit activations) in a 16-bit mode multiplies 16-bit A and B
// (an f32 or other-format operand converted first) into a C of its own type,
// bf16/f16 or f32, with f32 accumulation; in the f32 mode it takes the
// widening default.
#include <cublasLt.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/error.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"

namespace turbine::kernels {

namespace {

struct GemmKey {
  bool trans_a, trans_b;
  int M, N, K, lda, ldb, ldc, batch;
  int64_t stride_a, stride_b, stride_c;
  cudaDataType in_type, c_type;  // A and B's storage, C's
  cublasComputeType_t compute;
  bool beta_zero;
  uint32_t align_a, align_b, align_c;  // pointer alignments (bytes, up to 256)
  auto tie() const {
    return std::tie(trans_a, trans_b, M, N, K, lda, ldb, ldc, batch, stride_a, stride_b, stride_c,
                    in_type, c_type, compute, beta_zero, align_a, align_b, align_c);
  }
  bool operator<(const GemmKey& o) const { return tie() < o.tie(); }
};

// One prepared matmul: descriptors and the algorithm, owned for the process.
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
};

cublasLtMatrixLayout_t layout(cudaDataType type, int rows, int cols, int ld, int batch,
                              int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  TURBINE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  if (batch > 1) {
    TURBINE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                          &batch, sizeof(batch)));
    TURBINE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return l;
}

uint32_t alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 4 && address % a != 0) a /= 2;
  return a;
}

cudaDataType cuda_type(FloatType t) {
  switch (t) {
    case FloatType::bf16:
      return CUDA_R_16BF;
    case FloatType::f16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// The GEMM route for the 16-bit modes, read once from TURBINE_CUDA_GEMM.
bool convert_operands() {
  static const bool convert = [] {
    const char* value = std::getenv("TURBINE_CUDA_GEMM");
    if (value == nullptr || std::strcmp(value, "fast") == 0 || *value == 0) return false;
    TURBINE_CHECK(std::strcmp(value, "convert") == 0,
                  "TURBINE_CUDA_GEMM={}: use fast (f32 operands, cuBLAS's FAST_16BF/16F) or "
                  "convert (16-bit copies of the operands)",
                  value);
    return true;
  }();
  return convert;
}

// f32 operands in a math mode; 16-bit ones (converted or stored so) take
// plain f32 accumulation.
cublasComputeType_t f32_compute_type(MathMode mode) {
  switch (mode) {
    case MathMode::bf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case MathMode::f16:
      return CUBLAS_COMPUTE_32F_FAST_16F;
    default:
      return CUBLAS_COMPUTE_32F;
  }
}

GemmPlan make_plan(cublasLtHandle_t lt, const GemmKey& k, size_t workspace_bytes) {
  GemmPlan plan;
  TURBINE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, k.compute, CUDA_R_32F));
  // Column-major view: C^T (N x M) = op(B)^T (N x K) * op(A)^T (K x M).
  const cublasOperation_t op_first = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  TURBINE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &op_first, sizeof(op_first)));
  TURBINE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                      &op_second, sizeof(op_second)));
  // Stored (column-major) shapes: B^T is N x K unless transposed, A^T is K x M.
  const cudaDataType in = k.in_type;
  plan.a = k.trans_b ? layout(in, k.K, k.N, k.ldb, k.batch, k.stride_b)
                     : layout(in, k.N, k.K, k.ldb, k.batch, k.stride_b);
  plan.b = k.trans_a ? layout(in, k.M, k.K, k.lda, k.batch, k.stride_a)
                     : layout(in, k.K, k.M, k.lda, k.batch, k.stride_a);
  plan.c = layout(k.c_type, k.N, k.M, k.ldc, k.batch, k.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  TURBINE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  TURBINE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes)));
  // Operands as passed to cuBLASLt: its A is our B, its B our A; D is C
  // (the preference's D alignment defaults to 256 bytes, so it must be set).
  const uint32_t aligns[4] = {k.align_b, k.align_a, k.align_c, k.align_c};
  const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i)
    TURBINE_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, align_attrs[i], &aligns[i], sizeof(aligns[i])));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt, plan.op, plan.a, plan.b, plan.c,
                                                               plan.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS && found > 0) {
    plan.algo = result.algo;
    plan.has_algo = true;
  }
  return plan;
}

}  // namespace

void CudaBackend::run_matmul(const void* key_ptr, float alpha, const void* a_in, const void* b_in,
                             float beta, void* C) {
  const GemmKey& key = *static_cast<const GemmKey*>(key_ptr);
  static std::mutex mutex;
  static std::map<GemmKey, GemmPlan> plans;
  GemmPlan* plan = nullptr;
  {
    std::lock_guard lock(mutex);
    auto it = plans.find(key);
    if (it == plans.end()) it = plans.emplace(key, make_plan(lt_, key, lt_workspace_bytes_)).first;
    plan = &it->second;
  }
  LaneState* l = lane();  // its own workspace and classic handle on a lane
  const cudaStream_t on = l ? l->stream : stream_;
  if (plan->has_algo) {
    const cublasStatus_t status = cublasLtMatmul(
        l ? l->lt : lt_, plan->op, &alpha, b_in, plan->a, a_in, plan->b, &beta, C, plan->c, C,
        plan->c, &plan->algo, l ? l->lt_workspace : lt_workspace_, lt_workspace_bytes_, on);
    if (status != CUBLAS_STATUS_NOT_SUPPORTED) {
      TURBINE_CUBLAS_CHECK(status);
      return;
    }
    plan->has_algo = false;  // e.g. operands less aligned than the heuristic assumed
  }
  // Shapes cuBLASLt declines go to classic cuBLAS, same types.
  cublasHandle_t& blas = l ? l->blas : blas_;
  if (blas == nullptr) {
    TURBINE_CUBLAS_CHECK(cublasCreate(&blas));
    TURBINE_CUBLAS_CHECK(cublasSetStream(blas, on));
  }
  TURBINE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      blas, key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, key.N,
      key.M, key.K, &alpha, b_in, key.in_type, key.ldb, key.stride_b, a_in, key.in_type, key.lda,
      key.stride_a, &beta, C, key.c_type, key.ldc, key.stride_c, key.batch, key.compute,
      CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::gemm_mixed(const MixedGemm& g) {
  const MathMode mode = math_mode();
  // The f32 mode multiplies f32 values: the default widens 16-bit operands.
  if (mode == MathMode::f32 || g.M == 0 || g.N == 0 || g.K == 0 || g.batch == 0)
    return Backend::gemm_mixed(g);
  const FloatType half = float_type_of(mode);
  // A and B in the mode's type: stored so, or a converted copy spanning the
  // operand's strided extent (freed in stream order).
  struct Operand {
    CudaBackend* backend;
    const void* data;
    void* copy = nullptr;
    size_t bytes = 0;
    ~Operand() {
      if (copy) backend->deallocate(copy, bytes);
    }
  };
  const auto in_mode = [&](Operand& op, FloatType type, int rows, int cols, int ld,
                           int64_t stride) {
    if (type == half) return;
    const size_t n = strided_extent(rows, cols, ld, g.batch, stride);
    op.bytes = n * 2;
    op.copy = allocate(op.bytes);
    convert(type, op.data, half, op.copy, n);
    op.data = op.copy;
  };
  // C of the other 16-bit format goes through the default's f32 copy.
  if (g.c_type != half && g.c_type != FloatType::f32) return Backend::gemm_mixed(g);
  Operand a{this, g.A}, b{this, g.B};
  in_mode(a, g.a_type, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda, g.stride_a);
  in_mode(b, g.b_type, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb, g.stride_b);
  const GemmKey key{g.trans_a,
                    g.trans_b,
                    g.M,
                    g.N,
                    g.K,
                    g.lda,
                    g.ldb,
                    g.ldc,
                    g.batch,
                    g.batch > 1 ? g.stride_a : 0,
                    g.batch > 1 ? g.stride_b : 0,
                    g.batch > 1 ? g.stride_c : 0,
                    cuda_type(half),
                    cuda_type(g.c_type),
                    CUBLAS_COMPUTE_32F,
                    g.beta == 0.0f,
                    alignment(a.data),
                    alignment(b.data),
                    alignment(g.C)};
  run_matmul(&key, g.alpha, a.data, b.data, g.beta, g.C);
}

void CudaBackend::gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                       const float* A, int lda, int64_t stride_a, const float* B,
                                       int ldb, int64_t stride_b, float beta, float* C, int ldc,
                                       int64_t stride_c, int batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {  // C = beta * C, as BLAS defines it: C is not read when beta is 0
    for (int i = 0; i < batch; ++i)
      for (int r = 0; r < M; ++r) {
        float* row = C + i * stride_c + static_cast<int64_t>(r) * ldc;
        if (beta == 0.0f)
          fill(row, N, 0.0f);
        else
          scale(row, row, N, beta, false);
      }
    return;
  }
  // convert: 16-bit copies spanning each operand's strided extent, in blocks
  // from the caching allocator (freed in stream order once queued).
  const bool converted = math_mode() != MathMode::f32 && convert_operands();
  const void* a_in = A;
  const void* b_in = B;
  struct Copy {
    CudaBackend* backend;
    void* ptr = nullptr;
    size_t bytes = 0;
    ~Copy() {
      if (ptr) backend->deallocate(ptr, bytes);
    }
  } a_copy{this}, b_copy{this};
  if (converted) {
    const auto a_size =
        int64_t(strided_extent(trans_a ? K : M, trans_a ? M : K, lda, batch, stride_a));
    const auto b_size =
        int64_t(strided_extent(trans_b ? N : K, trans_b ? K : N, ldb, batch, stride_b));
    for (auto [copy, src, n] : {std::tuple{&a_copy, A, a_size}, std::tuple{&b_copy, B, b_size}}) {
      copy->bytes = size_t(n) * 2;
      copy->ptr = allocate(copy->bytes);
      if (math_mode() == MathMode::bf16)
        convert_f32_to_bf16(src, static_cast<uint16_t*>(copy->ptr), size_t(n));
      else
        convert_f32_to_f16(src, static_cast<uint16_t*>(copy->ptr), size_t(n));
    }
    a_in = a_copy.ptr;
    b_in = b_copy.ptr;
  }
  const GemmKey key{trans_a,
                    trans_b,
                    M,
                    N,
                    K,
                    lda,
                    ldb,
                    ldc,
                    batch,
                    batch > 1 ? stride_a : 0,
                    batch > 1 ? stride_b : 0,
                    batch > 1 ? stride_c : 0,
                    converted ? cuda_type(float_type_of(math_mode())) : CUDA_R_32F,
                    CUDA_R_32F,
                    converted ? CUBLAS_COMPUTE_32F : f32_compute_type(math_mode()),
                    beta == 0.0f,
                    alignment(a_in),
                    alignment(b_in),
                    alignment(C)};
  run_matmul(&key, alpha, a_in, b_in, beta, C);
}

void CudaBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                       int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  gemm_strided_batched(trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

}  // namespace turbine::kernels
