// GEMM through OpenBLAS's cblas_sgemm (row-major). In bf16/f16 math mode the
// inputs are first rounded to the 16-bit type (accumulation stays f32), the
// numbers a tensor-core GEMM produces; Debian's OpenBLAS has no bf16 GEMM, so
// this costs a rounding pass rather than saving time.
#include <cblas.h>

#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"

namespace turbine::kernels {

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float* A, int lda, const float* B, int ldb, float beta, float* C,
                      int ldc) {
  if (M == 0 || N == 0) return;
  if (math_mode() != MathMode::f32 && K > 0) {
    thread_local std::vector<float> a_round, b_round;
    A = round_to_math_mode(A, matrix_extent(trans_a ? K : M, trans_a ? M : K, lda), math_mode(),
                           a_round);
    B = round_to_math_mode(B, matrix_extent(trans_b ? N : K, trans_b ? K : N, ldb), math_mode(),
                           b_round);
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void CpuBackend::gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K,
                                      float alpha, const float* A, int lda, int64_t stride_a,
                                      const float* B, int ldb, int64_t stride_b, float beta,
                                      float* C, int ldc, int64_t stride_c, int batch) {
  for (int i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
         C + i * stride_c, ldc);
}

}  // namespace turbine::kernels
