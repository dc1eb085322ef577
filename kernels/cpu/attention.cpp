// Attention, flash-style on the CPU (Dao et al. 2022): keys are visited in
// blocks with an online softmax, so memory is O(T * D) per head instead of
// O(T^2); backward recomputes the probabilities from the saved log-sum-exp.
// q (B,H,Tq,D), k, v (B,H,Tk,D). Scores are scale * q.k - slope * (i - j)
// (ALiBi, with i the query's absolute position Tk - Tq + i), restricted by
// the causal rule j <= Tk - Tq + i and an optional boolean mask. With
// explicit positions (token dropping), i and j are the tokens' positions.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/precision.hpp"
#include "kernels/cpu/vec_math.hpp"

namespace turbine::kernels {

namespace {

constexpr int kBlock = 64;  // keys per block: a transposed K block of D=64 fits L1
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Scores of one query row against keys [j0, j0 + n): s[j] = scale * q.k_j + bias,
// -inf where the key is hidden. kt is the key block transposed (D, kBlock).
struct RowScorer {
  const AttentionShape& s;
  const uint8_t* mask_plane;  // (Tq, Tk) or null
  float slope;
  int offset;              // Tk - Tq: absolute position of query 0
  const int64_t* positions;  // this batch row's positions, or null

  float position(int i) const { return positions ? float(positions[i]) : float(offset + i); }
  float key_position(int j) const { return positions ? float(positions[j]) : float(j); }

  // Keys [0, visible_end(i)) may be visible to query i. Positions increase,
  // so with positions key j <= i is visible exactly when j <= i.
  int visible_end(int i) const {
    return s.causal ? std::min(s.seq_k, offset + i + 1) : s.seq_k;
  }

  void score(const float* q_row, const float* kt, int i, int j0, int n, float* out) const {
    const int D = s.head_dim;
    for (int j = 0; j < n; ++j) out[j] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float qd = q_row[d];
      const float* kt_row = kt + size_t(d) * kBlock;
#pragma omp simd
      for (int j = 0; j < n; ++j) out[j] += qd * kt_row[j];
    }
    const float pos_i = position(i);
    const int end = visible_end(i) - j0;
    if (positions == nullptr) {
#pragma omp simd
      for (int j = 0; j < n; ++j) {
        const float bias = -slope * (pos_i - float(j0 + j));
        out[j] = j < end ? out[j] * s.scale + bias : kNegInf;
      }
    } else {
      for (int j = 0; j < n; ++j) {
        const float bias = -slope * (pos_i - key_position(j0 + j));
        out[j] = j < end ? out[j] * s.scale + bias : kNegInf;
      }
    }
    if (mask_plane != nullptr) {
      const uint8_t* m = mask_plane + size_t(i) * s.seq_k + j0;
      for (int j = 0; j < n; ++j)
        if (!m[j]) out[j] = kNegInf;
    }
  }
};

// Transposes rows [j0, j0+n) of x (Tk, D) into xt (D, kBlock).
void transpose_block(const float* x, int j0, int n, int D, float* xt) {
  for (int j = 0; j < n; ++j) {
    const float* row = x + size_t(j0 + j) * D;
    for (int d = 0; d < D; ++d) xt[size_t(d) * kBlock + j] = row[d];
  }
}

RowScorer make_scorer(const AttentionShape& s, int b, int h) {
  const uint8_t* plane =
      s.mask == nullptr ? nullptr
                        : s.mask + (s.mask_per_batch ? size_t(b) * s.seq_q * s.seq_k : 0);
  return RowScorer{s, plane, s.alibi_slopes ? s.alibi_slopes[h] : 0.0f, s.seq_k - s.seq_q,
                   s.positions ? s.positions + size_t(b) * s.seq_k : nullptr};
}

}  // namespace

void CpuBackend::attention_forward(const AttentionShape& s, const float* q, const float* k,
                                   const float* v, float* out, float* lse) {
  const int D = s.head_dim, Tq = s.seq_q, Tk = s.seq_k;
  const int tasks = s.batch * s.heads;
  // Reduced-precision math modes: the products see 16-bit inputs.
  std::vector<float> q_round, k_round, v_round;
  // k and v planes may be spaced wider than Tk * D (a KV cache); the rounded
  // copies keep that layout.
  const size_t kv_plane = size_t(s.kv_plane());
  const size_t q_size = size_t(tasks) * Tq * D,
               kv_size = tasks == 0 ? 0 : size_t(tasks - 1) * kv_plane + size_t(Tk) * D;
  q = round_to_math_mode(q, q_size, math_mode(), q_round);
  k = round_to_math_mode(k, kv_size, math_mode(), k_round);
  v = round_to_math_mode(v, kv_size, math_mode(), v_round);
#pragma omp parallel
  {
    std::vector<float> kt(size_t(D) * kBlock), scores(kBlock), acc(D);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / s.heads, h = task % s.heads;
      const RowScorer scorer = make_scorer(s, b, h);
      const float* qb = q + size_t(task) * Tq * D;
      const float* kb = k + size_t(task) * kv_plane;
      const float* vb = v + size_t(task) * kv_plane;
      float* ob = out + size_t(task) * Tq * D;
      float* lseb = lse + size_t(task) * Tq;
      // Query rows of one block share each transposed key block.
      for (int i0 = 0; i0 < Tq; i0 += kBlock) {
        const int i1 = std::min(Tq, i0 + kBlock);
        const int key_end = scorer.visible_end(i1 - 1);
        std::vector<float> row_max(i1 - i0, kNegInf), row_sum(i1 - i0, 0.0f);
        for (int i = i0; i < i1; ++i) std::memset(ob + size_t(i) * D, 0, sizeof(float) * D);
        for (int j0 = 0; j0 < key_end; j0 += kBlock) {
          const int n = std::min(kBlock, key_end - j0);
          transpose_block(kb, j0, n, D, kt.data());
          for (int i = i0; i < i1; ++i) {
            scorer.score(qb + size_t(i) * D, kt.data(), i, j0, n, scores.data());
            float block_max = kNegInf;
            for (int j = 0; j < n; ++j) block_max = std::max(block_max, scores[j]);
            if (block_max == kNegInf) continue;
            float& m = row_max[i - i0];
            const float new_max = std::max(m, block_max);
            const float correction = m == kNegInf ? 0.0f : exp_approx(m - new_max);
            float block_sum = 0.0f;
#pragma omp simd reduction(+ : block_sum)
            for (int j = 0; j < n; ++j) {
              const float p = exp_approx(scores[j] - new_max);
              scores[j] = scores[j] == kNegInf ? 0.0f : p;
              block_sum += scores[j];
            }
            row_sum[i - i0] = row_sum[i - i0] * correction + block_sum;
            m = new_max;
            float* o = ob + size_t(i) * D;
#pragma omp simd
            for (int d = 0; d < D; ++d) o[d] *= correction;
            for (int j = 0; j < n; ++j) {
              const float p = scores[j];
              if (p == 0.0f) continue;
              const float* vr = vb + size_t(j0 + j) * D;
#pragma omp simd
              for (int d = 0; d < D; ++d) o[d] += p * vr[d];
            }
          }
        }
        for (int i = i0; i < i1; ++i) {
          const float l = row_sum[i - i0];
          float* o = ob + size_t(i) * D;
          if (l == 0.0f) {  // every key hidden: output zeros
            lseb[i] = kNegInf;
            continue;
          }
          const float inv = 1.0f / l;
#pragma omp simd
          for (int d = 0; d < D; ++d) o[d] *= inv;
          lseb[i] = row_max[i - i0] + std::log(l);
        }
      }
    }
  }
}

void CpuBackend::attention_backward(const AttentionShape& s, const float* q, const float* k,
                                    const float* v, const float* out, const float* lse,
                                    const float* dout, float* dq, float* dk, float* dv,
                                    bool accumulate) {
  TURBINE_CHECK(s.kv_plane() == int64_t(s.seq_k) * s.head_dim,
                "attention_backward: k and v must be dense (kv_stride {})", s.kv_stride);
  const int D = s.head_dim, Tq = s.seq_q, Tk = s.seq_k;
  const int tasks = s.batch * s.heads;
  std::vector<float> q_round, k_round, v_round, dout_round;
  const size_t q_size = size_t(tasks) * Tq * D, kv_size = size_t(tasks) * Tk * D;
  q = round_to_math_mode(q, q_size, math_mode(), q_round);
  k = round_to_math_mode(k, kv_size, math_mode(), k_round);
  v = round_to_math_mode(v, kv_size, math_mode(), v_round);
  dout = round_to_math_mode(dout, q_size, math_mode(), dout_round);
#pragma omp parallel
  {
    std::vector<float> kt(size_t(D) * kBlock), vt(size_t(D) * kBlock), p(kBlock), dp(kBlock),
        delta(Tq);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / s.heads, h = task % s.heads;
      const RowScorer scorer = make_scorer(s, b, h);
      const size_t q_off = size_t(task) * Tq * D, k_off = size_t(task) * Tk * D;
      const float *qb = q + q_off, *ob = out + q_off, *dob = dout + q_off;
      const float *kb = k + k_off, *vb = v + k_off;
      float *dqb = dq + q_off, *dkb = dk + k_off, *dvb = dv + k_off;
      const float* lseb = lse + size_t(task) * Tq;
      if (!accumulate) {
        std::memset(dqb, 0, sizeof(float) * Tq * D);
        std::memset(dkb, 0, sizeof(float) * Tk * D);
        std::memset(dvb, 0, sizeof(float) * Tk * D);
      }
      // delta_i = dO_i . O_i, the softmax backward's row term.
      for (int i = 0; i < Tq; ++i) {
        float total = 0.0f;
#pragma omp simd reduction(+ : total)
        for (int d = 0; d < D; ++d) total += dob[size_t(i) * D + d] * ob[size_t(i) * D + d];
        delta[i] = total;
      }
      for (int j0 = 0; j0 < Tk; j0 += kBlock) {
        const int n = std::min(kBlock, Tk - j0);
        transpose_block(kb, j0, n, D, kt.data());
        transpose_block(vb, j0, n, D, vt.data());
        // With causality, queries before the block's first key see none of it.
        const int first_query = s.causal ? std::max(0, j0 - scorer.offset) : 0;
        for (int i = first_query; i < Tq; ++i) {
          if (lseb[i] == kNegInf) continue;
          const float* q_row = qb + size_t(i) * D;
          const float* do_row = dob + size_t(i) * D;
          scorer.score(q_row, kt.data(), i, j0, n, p.data());
#pragma omp simd
          for (int j = 0; j < n; ++j) p[j] = p[j] == kNegInf ? 0.0f : exp_approx(p[j] - lseb[i]);
          for (int j = 0; j < n; ++j) dp[j] = 0.0f;
          for (int d = 0; d < D; ++d) {
            const float g = do_row[d];
            const float* vt_row = vt.data() + size_t(d) * kBlock;
#pragma omp simd
            for (int j = 0; j < n; ++j) dp[j] += g * vt_row[j];
          }
          float* dq_row = dqb + size_t(i) * D;
          for (int j = 0; j < n; ++j) {
            const float pj = p[j];
            if (pj == 0.0f) continue;
            const float ds = pj * (dp[j] - delta[i]) * s.scale;
            const float* k_row = kb + size_t(j0 + j) * D;
            float* dk_row = dkb + size_t(j0 + j) * D;
            float* dv_row = dvb + size_t(j0 + j) * D;
#pragma omp simd
            for (int d = 0; d < D; ++d) {
              dv_row[d] += pj * do_row[d];
              dq_row[d] += ds * k_row[d];
              dk_row[d] += ds * q_row[d];
            }
          }
        }
      }
    }
  }
}

}  // namespace turbine::kernels
