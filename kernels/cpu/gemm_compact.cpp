// y = x W^T with W stored in bf16, f16 or int8 (with group scales), f32
// accumulation (Backend::gemm_compact). Two regimes:
// - few rows of x (decoding: one token per sequence): each W row is widened
//   in registers as it is read and dotted with every x row while it sits in
//   L1; the rows of W are split over the threads. Reading W is the whole cost,
//   and it reads 2 (bf16, f16) or 1 (int8) bytes per weight instead of 4.
//   AVX2 + F16C (the build's x86-64-v3 baseline) widens 8 weights per
//   instruction; a build without them uses the scalar loop.
// - many rows (prefill, batched scoring): a panel of W rows at a time is
//   widened into an f32 buffer of at most kPanelFloats and multiplied by
//   oneDNN's sgemm, which then runs at f32 GEMM speed; widening costs one
//   pass over W per call, small next to the M N K products.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#define TURBINE_COMPACT_AVX2 1
#endif

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"

namespace turbine::kernels {

namespace {

constexpr int kInlineRows = 4;                    // up to this many x rows: widen in registers
constexpr size_t kPanelFloats = size_t(1) << 19;  // 2 MiB of widened W rows

float f16_to_f32(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

// Element k of W row `row`, widened (int8 scaled).
float weight_at(const CompactWeight& w, int K, int row, int k) {
  const size_t at = size_t(row) * K + k;
  switch (w.type) {
    case WeightType::bf16:
      return bf16_to_f32(static_cast<const uint16_t*>(w.data)[at]);
    case WeightType::f16:
      return f16_to_f32(static_cast<const uint16_t*>(w.data)[at]);
    default:
      return float(static_cast<const int8_t*>(w.data)[at]) *
             w.scales[size_t(row) * (K / w.group) + k / w.group];
  }
}

#ifdef TURBINE_COMPACT_AVX2
inline float horizontal_sum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// Eight weights from p, widened.
inline __m256 load8(const uint16_t* p, WeightType type) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (type == WeightType::f16) return _mm256_cvtph_ps(bits);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline __m256 load8(const int8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}
#endif

// W row `row` widened into out (K floats): the panel path.
void widen_row(const CompactWeight& w, int K, int row, float* out) {
  int k = 0;
#ifdef TURBINE_COMPACT_AVX2
  if (w.type == WeightType::i8) {
    const int8_t* q = static_cast<const int8_t*>(w.data) + size_t(row) * K;
    const float* scales = w.scales + size_t(row) * (K / w.group);
    for (int g0 = 0; g0 < K; g0 += w.group) {
      const __m256 scale = _mm256_set1_ps(scales[g0 / w.group]);
      int i = g0;
      for (; i + 8 <= g0 + w.group; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(load8(q + i), scale));
      for (; i < g0 + w.group; ++i) out[i] = float(q[i]) * scales[g0 / w.group];
    }
    return;
  }
  const uint16_t* bits = static_cast<const uint16_t*>(w.data) + size_t(row) * K;
  for (; k + 8 <= K; k += 8) _mm256_storeu_ps(out + k, load8(bits + k, w.type));
#endif
  for (; k < K; ++k) out[k] = weight_at(w, K, row, k);
}

// x (K) . W row `row`, for rows of 16-bit weights. Four accumulators: one
// FMA chain would wait on its own latency instead of on memory.
float dot16(const float* x, const uint16_t* wrow, WeightType type, int K) {
  int k = 0;
  float sum = 0;
#ifdef TURBINE_COMPACT_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  for (; k + 32 <= K; k += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(wrow + k, type), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8(wrow + k + 8, type), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), load8(wrow + k + 16, type), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), load8(wrow + k + 24, type), acc3);
  }
  for (; k + 8 <= K; k += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(wrow + k, type), acc0);
  sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
#endif
  for (; k < K; ++k)
    sum += x[k] * (type == WeightType::f16 ? f16_to_f32(wrow[k]) : bf16_to_f32(wrow[k]));
  return sum;
}

// x (K) . W row for int8 weights: each group's products summed, then scaled.
float dot8(const float* x, const int8_t* wrow, const float* scales, int group, int K) {
  float sum = 0;
  for (int g0 = 0, g = 0; g0 < K; g0 += group, ++g) {
    int k = g0;
    const int end = g0 + group;
    float part = 0;
#ifdef TURBINE_COMPACT_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    for (; k + 32 <= end; k += 32) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(wrow + k), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8(wrow + k + 8), acc1);
      acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), load8(wrow + k + 16), acc2);
      acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), load8(wrow + k + 24), acc3);
    }
    for (; k + 8 <= end; k += 8)
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(wrow + k), acc0);
    part = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
#endif
    for (; k < end; ++k) part += x[k] * float(wrow[k]);
    sum += part * scales[g];
  }
  return sum;
}

float dot_row(const float* x, const CompactWeight& w, int K, int row) {
  if (w.type == WeightType::i8)
    return dot8(x, static_cast<const int8_t*>(w.data) + size_t(row) * K,
                w.scales + size_t(row) * (K / w.group), w.group, K);
  return dot16(x, static_cast<const uint16_t*>(w.data) + size_t(row) * K, w.type, K);
}

}  // namespace

void CpuBackend::gemm_compact(int M, int N, int K, const float* x, int ldx, const CompactWeight& w,
                              float* y, int ldy, bool accumulate) {
  TURBINE_CHECK(w.type != WeightType::i8 || (w.group > 0 && K % w.group == 0),
                "gemm_compact: int8 group {} must divide K = {}", w.group, K);
  if (M == 0 || N == 0) return;
  if (M <= kInlineRows) {
#pragma omp parallel for schedule(static) if (size_t(N) * K > kParallelGrain)
    for (int n = 0; n < N; ++n)
      for (int m = 0; m < M; ++m) {
        const float d = dot_row(x + size_t(m) * ldx, w, K, n);
        float& out = y[size_t(m) * ldy + n];
        out = accumulate ? out + d : d;
      }
    return;
  }
  const int panel_rows = int(std::clamp<size_t>(kPanelFloats / std::max(K, 1), 16, size_t(N)));
  thread_local std::vector<float> panel;
  panel.resize(size_t(panel_rows) * K);
  for (int n0 = 0; n0 < N; n0 += panel_rows) {
    const int rows = std::min(panel_rows, N - n0);
    float* widened = panel.data();
#pragma omp parallel for schedule(static) if (size_t(rows) * K > kParallelGrain)
    for (int r = 0; r < rows; ++r) widen_row(w, K, n0 + r, widened + size_t(r) * K);
    sgemm_nt(M, rows, K, 1.0f, x, ldx, widened, K, accumulate ? 1.0f : 0.0f, y + n0, ldy);
  }
}

}  // namespace turbine::kernels
