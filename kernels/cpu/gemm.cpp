// GEMM through oneDNN's dnnl_sgemm (row-major), chosen over Debian's OpenBLAS
// by measurement (bench/RESULTS.md, "CPU GEMM"): it dispatches on CPUID
// feature bits, so a CPU model it does not know still gets its AVX-512 or
// AVX2 kernels, where OpenBLAS 0.3.21 looks models up in a table and falls
// back to SSE3 (Prescott) kernels on one it does not know (a virtualized
// Sapphire Rapids: 37 instead of 212-251 GFLOP/s). Debian builds oneDNN
// with OpenMP (libgomp), so its GEMM threads are our OpenMP loops' threads:
// one pool, no oversubscription.
//
// C = A B^T with few rows in A (a linear layer on a decode batch: 9 to a few
// hundred rows) runs 2-7x faster in oneDNN 2.6 as C^T = B A^T, a scratch
// transposed back: its AVX-512 kernel for a short A against a transposed B
// reads the weights at ~2 GB/s (16 to 128 rows of 4096x1024 on Zen 4:
// 7.1-11.3 ms direct, 1.1-7.4 ms swapped; with the AVX2 kernels the two are
// within 6% to 25% of each other, the swap ahead at most sizes).
//
// In bf16/f16 math mode the inputs are first rounded to the 16-bit type
// (accumulation stays f32), the numbers a tensor-core GEMM produces. Where
// the CPU has bf16 dot products (AVX512-BF16, AMX), the bf16 mode multiplies
// the rounded operands as bf16 in oneDNN's matmul (gemm_bf16.cpp), 1.6-1.9x
// the f32 sgemm; elsewhere, and in f16 mode, it rounds in f32 and runs the
// f32 sgemm, which costs a rounding pass rather than saving time.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <vector>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"

namespace turbine::kernels {

void sgemm_nt(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
              float beta, float* C, int ldc) {
  const auto check = [&](dnnl_status_t status) {
    TURBINE_CHECK(status == dnnl_success,
                  "oneDNN dnnl_sgemm failed (status {}) for NT M={} N={} K={} lda={} ldb={} "
                  "ldc={}: the leading dimensions must cover the rows they step over",
                  int(status), M, N, K, lda, ldb, ldc);
  };
  if (M <= kNtDirectRows || M >= kNtSwapRowsEnd || N < 2 * M) {
    check(dnnl_sgemm('N', 'T', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    return;
  }
  // C^T = B A^T into a scratch (N x M), then transposed into C.
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(N) * size_t(M));
  float* T = scratch.data();
  check(dnnl_sgemm('N', 'T', N, M, K, alpha, B, ldb, A, lda, 0.0f, T, M));
  constexpr int kBlock = 64;
#pragma omp parallel for schedule(static) if (int64_t(M) * N > (1 << 16))
  for (int j0 = 0; j0 < N; j0 += kBlock) {
    const int j1 = std::min(N, j0 + kBlock);
    for (int i = 0; i < M; ++i) {
      float* c = C + int64_t(i) * ldc;
      if (beta == 0.0f)
        for (int j = j0; j < j1; ++j) c[j] = T[int64_t(j) * M + i];
      else
        for (int j = j0; j < j1; ++j) c[j] = T[int64_t(j) * M + i] + beta * c[j];
    }
  }
}

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                      int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {  // BLAS semantics: C = beta C (and beta 0 clears NaNs)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        C[i * int64_t(ldc) + j] = beta == 0.0f ? 0.0f : beta * C[i * int64_t(ldc) + j];
    return;
  }
  if (math_mode() == MathMode::bf16 && native_bf16_gemm()) {
    // f32 operands through gemm_mixed's bf16 route (which rounds them); the
    // sizes and alpha checked above keep it from falling back to gemm.
    MixedGemm g;
    g.trans_a = trans_a;
    g.trans_b = trans_b;
    g.M = M;
    g.N = N;
    g.K = K;
    g.alpha = alpha;
    g.beta = beta;
    g.A = A;
    g.lda = lda;
    g.B = B;
    g.ldb = ldb;
    g.C = C;
    g.ldc = ldc;
    return gemm_mixed(g);
  }
  if (math_mode() != MathMode::f32) {
    thread_local std::vector<float> a_round, b_round;
    A = round_to_math_mode(A, matrix_extent(trans_a ? K : M, trans_a ? M : K, lda), math_mode(),
                           a_round);
    B = round_to_math_mode(B, matrix_extent(trans_b ? N : K, trans_b ? K : N, ldb), math_mode(),
                           b_round);
  }
  if (!trans_a && trans_b) {  // x W^T: a linear layer's forward
    sgemm_nt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
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

// 16-bit activations: in the bf16 mode on a CPU with bf16 dot products, bf16
// operands go to the bf16 GEMM as they are (others are rounded to bf16
// first); a 16-bit C goes through an f32 copy, rounded once at the end.
// Everything else widens (Backend's default) and takes gemm's route.
void CpuBackend::gemm_mixed(const MixedGemm& g) {
  if (math_mode() != MathMode::bf16 || !native_bf16_gemm() || g.M == 0 || g.N == 0 || g.K == 0 ||
      g.alpha == 0.0f)
    return Backend::gemm_mixed(g);
  thread_local std::vector<uint16_t> a_copy, b_copy;
  thread_local std::vector<float> c_copy;
  const auto as_bf16 = [&](const void* data, FloatType type, int rows, int cols, int ld,
                           int64_t stride, std::vector<uint16_t>& copy) {
    if (type == FloatType::bf16) return static_cast<const uint16_t*>(data);
    const size_t n = strided_extent(rows, cols, ld, g.batch, stride);
    copy.resize(n);
    convert(type, data, FloatType::bf16, copy.data(), n);
    return static_cast<const uint16_t*>(copy.data());
  };
  const uint16_t* A = as_bf16(g.A, g.a_type, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda,
                              g.stride_a, a_copy);
  const uint16_t* B = as_bf16(g.B, g.b_type, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb,
                              g.stride_b, b_copy);
  auto* C = static_cast<float*>(g.C);
  const size_t c_n = strided_extent(g.M, g.N, g.ldc, g.batch, g.stride_c);
  if (g.c_type != FloatType::f32) {
    c_copy.resize(c_n);
    // Read when added to, or when rows have gaps that must keep their values.
    if (g.beta != 0.0f || g.ldc != g.N) convert(g.c_type, g.C, FloatType::f32, c_copy.data(), c_n);
    C = c_copy.data();
  }
  for (int i = 0; i < g.batch; ++i)
    bf16_gemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, A + i * g.stride_a, g.lda,
              B + i * g.stride_b, g.ldb, g.beta, C + i * g.stride_c, g.ldc);
  if (g.c_type != FloatType::f32) convert(FloatType::f32, C, g.c_type, g.C, c_n);
}

}  // namespace turbine::kernels
