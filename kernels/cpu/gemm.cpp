// GEMM through OpenBLAS's cblas_sgemm (row-major).
#include <cblas.h>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                      const float* A, int lda, const float* B, int ldb, float beta, float* C,
                      int ldc) {
  if (M == 0 || N == 0) return;
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
