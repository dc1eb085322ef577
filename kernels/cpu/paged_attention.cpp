// The paged KV cache's kernels on the CPU (layouts in kernels/backend.hpp,
// PagedAttentionShape): writing a step's keys and values into their pool
// slots, and attention through the block tables. One task per (sequence,
// head) walks that sequence's new tokens; for each, the scores of all its
// visible keys are computed block by block into a row, then softmax and the
// weighted sum of values, exactly (the row fits: a context's scores).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::paged_kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                                const int32_t* slots, int tokens, int heads, int head_dim,
                                int block_size) {
  const size_t row = size_t(head_dim) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < tokens; ++t) {
      const int64_t slot = slots[t], block = slot / block_size, offset = slot % block_size;
      const size_t dst = size_t(((block * heads + h) * block_size + offset) * head_dim);
      const size_t src = (size_t(h) * tokens + t) * size_t(head_dim);
      std::memcpy(k_pool + dst, k + src, row);
      std::memcpy(v_pool + dst, v + src, row);
    }
}

void CpuBackend::paged_attention(const PagedAttentionShape& s, const float* q, const float* k_pool,
                                 const float* v_pool, const int32_t* block_tables,
                                 const int32_t* seq_info, float* out) {
  const int D = s.head_dim, bs = s.block_size;
  const int tasks = s.sequences * s.heads;
#pragma omp parallel
  {
    std::vector<float> scores;
    std::vector<float> acc(size_t(D), 0.0f);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int seq = task / s.heads, h = task % s.heads;
      const int first = seq_info[seq * 3], q_len = seq_info[seq * 3 + 1],
                context = seq_info[seq * 3 + 2];
      const int32_t* table = block_tables + size_t(seq) * size_t(s.max_blocks);
      const float slope = s.alibi_slopes ? s.alibi_slopes[h] : 0.0f;
      scores.resize(size_t(std::max(context, 1)));
      for (int i = 0; i < q_len; ++i) {
        const int token = first + i, position = context - q_len + i;
        const float* qi = q + (size_t(h) * s.tokens + token) * size_t(D);
        float top = -INFINITY;
        for (int j = 0; j <= position; ++j) {
          const float* kj =
              k_pool + ((size_t(table[j / bs]) * s.heads + h) * bs + size_t(j % bs)) * size_t(D);
          float dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int d = 0; d < D; ++d) dot += qi[d] * kj[d];
          scores[size_t(j)] = s.scale * dot - slope * float(position - j);
          top = std::max(top, scores[size_t(j)]);
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        float total = 0;
        for (int j = 0; j <= position; ++j) {
          const float p = std::exp(scores[size_t(j)] - top);
          total += p;
          const float* vj =
              v_pool + ((size_t(table[j / bs]) * s.heads + h) * bs + size_t(j % bs)) * size_t(D);
#pragma omp simd
          for (int d = 0; d < D; ++d) acc[size_t(d)] += p * vj[d];
        }
        float* o = out + (size_t(h) * s.tokens + token) * size_t(D);
        const float inv = 1.0f / total;
        for (int d = 0; d < D; ++d) o[d] = acc[size_t(d)] * inv;
      }
    }
  }
}

}  // namespace turbine::kernels
