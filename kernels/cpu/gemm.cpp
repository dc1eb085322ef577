// GEMM through oneDNN's dnnl_sgemm (row-major), chosen over Debian's OpenBLAS
// by measurement (bench/RESULTS.md, "CPU GEMM"): it dispatches on CPUID
// feature bits, so a CPU model it does not know still gets its AVX-512 or
// AVX2 kernels, where OpenBLAS 0.3.21 looks models up in a table and falls
// back to SSE3 (Prescott) kernels on one it does not know (a virtualized
// Sapphire Rapids: 37 instead of 212-251 GFLOP/s). Debian builds oneDNN
// with OpenMP (libgomp), so its GEMM threads are our OpenMP loops' threads:
// one pool, no oversubscription.
//
// In bf16/f16 math mode the inputs are first rounded to the 16-bit type
// (accumulation stays f32), the numbers a tensor-core GEMM produces; this
// costs a rounding pass rather than saving time.
#include <oneapi/dnnl/dnnl.h>

#include <vector>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"

namespace turbine::kernels {

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                      int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {  // BLAS semantics: C = beta C (and beta 0 clears NaNs)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        C[i * int64_t(ldc) + j] = beta == 0.0f ? 0.0f : beta * C[i * int64_t(ldc) + j];
    return;
  }
  if (math_mode() != MathMode::f32) {
    thread_local std::vector<float> a_round, b_round;
    A = round_to_math_mode(A, matrix_extent(trans_a ? K : M, trans_a ? M : K, lda), math_mode(),
                           a_round);
    B = round_to_math_mode(B, matrix_extent(trans_b ? N : K, trans_b ? K : N, ldb), math_mode(),
                           b_round);
  }
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                                          A, lda, B, ldb, beta, C, ldc);
  TURBINE_CHECK(status == dnnl_success,
                "oneDNN dnnl_sgemm failed (status {}) for {}{} M={} N={} K={} lda={} ldb={} "
                "ldc={}: the leading dimensions must cover the rows they step over",
                int(status), trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc);
}

void CpuBackend::gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                      const float* A, int lda, int64_t stride_a, const float* B,
                                      int ldb, int64_t stride_b, float beta, float* C, int ldc,
                                      int64_t stride_c, int batch) {
  for (int i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
         C + i * stride_c, ldc);
}

}  // namespace turbine::kernels
