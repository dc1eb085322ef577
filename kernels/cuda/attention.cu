// Attention on CUDA, flash-style (Dao et al. 2022, with FlashAttention-2's
// split of the work), the twin of kernels/cpu/attention.cpp: same scores
// (scale * q.k - slope * (i - j)), causal rule, mask, positions, and rows
// with no visible key (zero output, lse = -inf). q (B,H,Tq,D), k, v
// (B,H,Tk,D), out (B,H,Tq,D), lse (B,H,Tq).
//   forward:  one block per 64 queries walks the key tiles with an online
//             softmax in registers, stopping at the causal diagonal.
//   backward: delta = rowsum(dout * out); then one block per 64 keys walks
//             the query tiles and accumulates dk, dv in registers, and one
//             block per 64 queries walks the key tiles for dq. Each output
//             row has one owner, so there are no atomics and the result is
//             deterministic; the price is recomputing S and dP for dq.
// Each warp owns 16 rows of a block, and every product is a warp-level
// (16 x K) * (K x N) in the accumulator layout of the m16n8k16 mma. In bf16
// and f16 math modes the products run on tensor cores (mma.sync, f32
// accumulation): q, k, v and dout are rounded to 16 bits as they enter
// shared memory (the CPU rounds the same inputs), and P and dS are rounded
// before their products, as flash kernels do. In f32 mode the same loops
// run on CUDA cores with f32 FMA from f32 tiles. q, k, v, out, dout and the
// gradients are stored as G (device.cuh): f32, or 16-bit activations, widened
// as tiles are loaded and rounded once as rows are stored.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                   // a warp's rows: the mma's M
constexpr int kBlockRows = kWarpRows * kWarps;  // queries (forward, dq) or keys (dk, dv) per block
constexpr int kKeyTile = 64;                    // keys per step of forward and dq
constexpr int kDeltaThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kInf = INFINITY;

// Math modes as types. Storage is what shared-memory tiles hold. Row
// padding keeps the fragment reads free of bank conflicts: an odd stride in
// f32 (lanes read 8 rows, or 4 rows, at one column), 8 halves in 16 bits
// (32-bit reads of 8 rows at 4 columns land on 32 distinct banks, and rows
// stay 16-byte aligned).
struct MathF32 {
  using Storage = float;
  static constexpr bool kTensorCores = false;
  static constexpr int kPad = 1;
  __device__ static float round(float x) { return x; }
};

struct MathBf16 {
  using Storage = uint16_t;
  static constexpr bool kTensorCores = true;
  static constexpr int kPad = 8;
  __device__ static uint16_t bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  __device__ static float round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
  // Two values in one register, the first in the low half (the mma's order).
  __device__ static uint32_t pack(float lo, float hi) {
    return uint32_t(bits(lo)) | (uint32_t(bits(hi)) << 16);
  }
};

struct MathF16 {
  using Storage = uint16_t;
  static constexpr bool kTensorCores = true;
  static constexpr int kPad = 8;
  __device__ static uint16_t bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
  __device__ static float round(float x) { return __half2float(__float2half_rn(x)); }
  __device__ static uint32_t pack(float lo, float hi) {
    return uint32_t(bits(lo)) | (uint32_t(bits(hi)) << 16);
  }
};

// d += a * b for one m16n8k16 tile: 16-bit inputs, f32 accumulators.
template <class Math>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
#ifdef TURBINE_CUDA_EMULATION
  // The CPU emulator (tests/cuda_emu): the same warp-wide product, from the
  // PTX ISA's fragment layouts.
  if constexpr (std::is_same_v<Math, MathBf16>) {
    turbine_emu::mma_m16n8k16_bf16(d, a, b);
  } else {
    turbine_emu::mma_m16n8k16_f16(d, a, b);
  }
#else
  if constexpr (std::is_same_v<Math, MathBf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#endif
}

// Two adjacent 16-bit values of a tile (the first at an even index).
__device__ __forceinline__ uint32_t load_pair(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Warp-level products. A warp's tile C is (16, 8 * NT) in the mma's
// accumulator layout: lane = 4 * g + t holds rows g (c[nt][0], c[nt][1]) and
// g + 8 (c[nt][2], c[nt][3]) at columns 8 * nt + 2t and 8 * nt + 2t + 1.
//
// c += a * b with a (16, K) in shared memory, row r at a + r * lda, and b
// (K, 8 * NT) in shared memory, element (k, n) at b[n * ldn + k * ldk].
// Tensor cores need ldk == 1 (pairs along k are one 32-bit word); the f32
// path takes any layout, so it never needs a transposed copy.
template <class Math, int NT, int K>
__device__ __forceinline__ void warp_gemm_ss(float (&c)[NT][4], const typename Math::Storage* a,
                                             int lda, const typename Math::Storage* b, int ldn,
                                             int ldk) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  if constexpr (Math::kTensorCores) {
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      const uint16_t* a0 = a + g * lda + kk * 16 + 2 * t;
      const uint32_t af[4] = {load_pair(a0), load_pair(a0 + 8 * lda), load_pair(a0 + 8),
                              load_pair(a0 + 8 * lda + 8)};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint16_t* b0 = b + (nt * 8 + g) * ldn + kk * 16 + 2 * t;
        const uint32_t bf[2] = {load_pair(b0), load_pair(b0 + 8)};
        mma_16816<Math>(c[nt], af, bf);
      }
    }
  } else {
#pragma unroll 2
    for (int k = 0; k < K; ++k) {
      const float a0 = a[g * lda + k], a1 = a[(g + 8) * lda + k];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float bv = b[(nt * 8 + 2 * t + e) * ldn + k * ldk];
          c[nt][e] = fmaf(a0, bv, c[nt][e]);
          c[nt][2 + e] = fmaf(a1, bv, c[nt][2 + e]);
        }
      }
    }
  }
}

// c += p * b with p (16, K) a warp's accumulator tile in registers (K / 8
// tiles: probabilities or dS), b as in warp_gemm_ss. On tensor cores p is
// rounded to 16 bits: two accumulator tiles side by side are exactly the
// mma's A fragment (FlashAttention-2's register reuse). In f32 the lanes of
// a quad hand each other their columns by shuffles.
template <class Math, int NT, int K>
__device__ __forceinline__ void warp_gemm_rs(float (&c)[NT][4], const float (&p)[K / 8][4],
                                             const typename Math::Storage* b, int ldn, int ldk) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  if constexpr (Math::kTensorCores) {
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      const uint32_t af[4] = {Math::pack(p[2 * kk][0], p[2 * kk][1]),
                              Math::pack(p[2 * kk][2], p[2 * kk][3]),
                              Math::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                              Math::pack(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint16_t* b0 = b + (nt * 8 + g) * ldn + kk * 16 + 2 * t;
        const uint32_t bf[2] = {load_pair(b0), load_pair(b0 + 8)};
        mma_16816<Math>(c[nt], af, bf);
      }
    }
  } else {
    (void)g;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      // Column k of rows g and g + 8 sits in lane 4g + (k % 8) / 2.
      const int source = (lane & ~3) | ((k % 8) / 2);
      const float p0 = __shfl_sync(kFullMask, p[k / 8][k % 2], source);
      const float p1 = __shfl_sync(kFullMask, p[k / 8][2 + k % 2], source);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float bv = b[(nt * 8 + 2 * t + e) * ldn + k * ldk];
          c[nt][e] = fmaf(p0, bv, c[nt][e]);
          c[nt][2 + e] = fmaf(p1, bv, c[nt][2 + e]);
        }
      }
    }
  }
}

using cuda::F32Storage;

// Four values of a row from column d, zero past D. vec4 (D % 4 == 0 and
// 16-byte aligned f32 tensors) reads them in one load; 16-bit rows are read
// one value at a time and widened.
template <typename G>
__device__ __forceinline__ float4 load4(const typename G::type* row, int d, int D, bool vec4) {
  if constexpr (std::is_same_v<G, F32Storage>) {
    if (vec4) {
      return d < D ? __ldg(reinterpret_cast<const float4*>(row + d))
                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    return make_float4(d < D ? __ldg(row + d) : 0.0f, d + 1 < D ? __ldg(row + d + 1) : 0.0f,
                       d + 2 < D ? __ldg(row + d + 2) : 0.0f,
                       d + 3 < D ? __ldg(row + d + 3) : 0.0f);
  } else {
    const auto at = [&](int c) { return c < D ? cuda::to_f32<G>(row[c]) : 0.0f; };
    return make_float4(at(d), at(d + 1), at(d + 2), at(d + 3));
  }
}

// Rows [row0, row0 + kRows) of a (rows, D) f32 matrix into a (kRows, kDp)
// tile with row stride ld, rounded to the math type; zero past the matrix
// (rows) and past D (columns), so padded products add nothing.
template <class Math, int kRows, int kDp, typename G>
__device__ __forceinline__ void load_tile(typename Math::Storage* dst, int ld,
                                          const typename G::type* src, int row0, int rows, int D,
                                          bool vec4) {
  constexpr int kChunksPerRow = kDp / 4;
  for (int c = threadIdx.x; c < kRows * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, d = (c % kChunksPerRow) * 4;
    const float4 v = row0 + r < rows ? load4<G>(src + int64_t(row0 + r) * D, d, D, vec4)
                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    typename Math::Storage* out = dst + r * ld + d;
    if constexpr (Math::kTensorCores) {
      *reinterpret_cast<uint2*>(out) = make_uint2(Math::pack(v.x, v.y), Math::pack(v.z, v.w));
    } else {
      out[0] = v.x;
      out[1] = v.y;
      out[2] = v.z;
      out[3] = v.w;
    }
  }
}

// The same rows transposed, for tensor cores: dst (kDp, kRows) with row
// stride ld, element (d, r) = matrix (row0 + r, d). A thread takes two
// adjacent rows so that each store is one 32-bit pair along the new rows.
template <class Math, int kRows, int kDp, typename G>
__device__ __forceinline__ void load_tile_transposed(uint16_t* dst, int ld,
                                                     const typename G::type* src, int row0,
                                                     int rows, int D, bool vec4) {
  constexpr int kPairs = kRows / 2;
  for (int c = threadIdx.x; c < kPairs * (kDp / 4); c += kThreads) {
    const int r = (c % kPairs) * 2, d = (c / kPairs) * 4;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4 v0 = row0 + r < rows ? load4<G>(src + int64_t(row0 + r) * D, d, D, vec4) : zero;
    const float4 v1 =
        row0 + r + 1 < rows ? load4<G>(src + int64_t(row0 + r + 1) * D, d, D, vec4) : zero;
    uint16_t* out = dst + d * ld + r;
    *reinterpret_cast<uint32_t*>(out) = Math::pack(v0.x, v1.x);
    *reinterpret_cast<uint32_t*>(out + ld) = Math::pack(v0.y, v1.y);
    *reinterpret_cast<uint32_t*>(out + 2 * ld) = Math::pack(v0.z, v1.z);
    *reinterpret_cast<uint32_t*>(out + 3 * ld) = Math::pack(v0.w, v1.w);
  }
}

// Which keys a query sees, and its ALiBi bias, for one (batch, head): the
// CPU's RowScorer. i and j are query and key indices.
struct ScoreRule {
  const uint8_t* mask;       // this batch's (Tq, Tk) plane, or null
  const int64_t* positions;  // this batch's (T) positions, or null
  float scale, slope;
  int seq_q, seq_k;
  int offset;  // Tk - Tq: the absolute position of query 0
  bool causal;

  // Keys [0, visible_end(i)) may be visible to query i. With positions
  // (increasing, Tq == Tk) key j <= i is visible exactly when j <= i.
  __device__ int visible_end(int i) const { return causal ? min(seq_k, offset + i + 1) : seq_k; }
  __device__ bool visible(int i, int j) const {
    return i < seq_q && j < visible_end(i) &&
           (mask == nullptr || mask[int64_t(i) * seq_k + j] != 0);
  }
  __device__ float query_position(int i) const {
    return positions ? float(positions[i]) : float(offset + i);
  }
  __device__ float key_position(int j) const { return positions ? float(positions[j]) : float(j); }
  // Whether some pair of queries [i0, i0 + ni) and keys [j0, j0 + nj) may be
  // hidden or out of range; only then are scores checked one by one.
  __device__ bool needs_check(int i0, int ni, int j0, int nj) const {
    return mask != nullptr || i0 + ni > seq_q || j0 + nj > seq_k ||
           (causal && j0 + nj - 1 > offset + i0);
  }
};

// Where a block works: the (batch, head) bh, that head's score rule, and
// the offsets of its rows in the (B,H,Tq,D) and (B,H,Tk,D) tensors.
struct HeadPlace {
  int bh;
  ScoreRule rule;
  int64_t q_offset, kv_offset;
};

// The problem, as kernels see it.
struct Problem {
  int heads, seq_q, seq_k, head_dim;
  int64_t kv_stride;  // between (b, h) planes of k and v (a KV cache's T_max * D)
  float scale;
  bool causal, mask_per_batch;
  bool vec4;                 // float4 loads of q, k, v, dout rows
  const float* alibi;        // device (heads), or null
  const uint8_t* mask;       // (B or 1, Tq, Tk), or null
  const int64_t* positions;  // (B, T), or null

  __device__ ScoreRule rule(int b, int h) const {
    ScoreRule r;
    r.mask = mask == nullptr ? nullptr
                             : mask + (mask_per_batch ? int64_t(b) * seq_q * seq_k : int64_t(0));
    r.positions = positions == nullptr ? nullptr : positions + int64_t(b) * seq_k;
    r.scale = scale;
    r.slope = alibi == nullptr ? 0.0f : alibi[h];
    r.seq_q = seq_q;
    r.seq_k = seq_k;
    r.offset = seq_k - seq_q;
    r.causal = causal;
    return r;
  }
  __device__ HeadPlace place(int bh) const {
    return {bh, rule(bh / heads, bh % heads), int64_t(bh) * seq_q * head_dim,
            int64_t(bh) * kv_stride};
  }
};

// Row r (0 or 1) of the two a lane holds in its warp's accumulator tile
// (rows g and g + 8 for lane 4g + t), the tile's first row being row_base.
__device__ __forceinline__ int lane_row(int row_base, int lane, int r) {
  return row_base + lane / 4 + 8 * r;
}

// The positions of keys [j0, j0 + kKeyTile) into shared memory (0 past Tk),
// by the whole block.
__device__ __forceinline__ void stage_key_positions(float* key_pos, const ScoreRule& rule, int j0,
                                                    int Tk) {
  for (int r = threadIdx.x; r < kKeyTile; r += kThreads)
    key_pos[r] = j0 + r < Tk ? rule.key_position(j0 + r) : 0.0f;
}

// Turns a warp's dot products into scores in place: scale, ALiBi, -inf where
// hidden (only when check). Rows are queries (forward, dq) or keys (dk, dv,
// which work on S transposed). row_pos: the lane's two rows' positions;
// col_pos: positions of columns [col0, col0 + 8 * NT), in shared memory.
template <bool kRowsAreQueries, int NT>
__device__ __forceinline__ void apply_score_rule(float (&s)[NT][4], const ScoreRule& rule,
                                                 int row_base, int col0, const float (&row_pos)[2],
                                                 const float* col_pos, bool check) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e / 2, col = nt * 8 + 2 * t + e % 2;
      float x = s[nt][e] * rule.scale;
      if (rule.slope != 0.0f) {
        const float query_pos = kRowsAreQueries ? row_pos[r] : col_pos[col];
        const float key_pos = kRowsAreQueries ? col_pos[col] : row_pos[r];
        x += -rule.slope * (query_pos - key_pos);
      }
      if (check) {
        const int row = row_base + g + 8 * r;
        const int i = kRowsAreQueries ? row : col0 + col, j = kRowsAreQueries ? col0 + col : row;
        if (!rule.visible(i, j)) x = -kInf;
      }
      s[nt][e] = x;
    }
  }
}

// One step of the online softmax over a tile of scores: s becomes
// p = exp(s - m) with m the running max of each row; the running sum l and
// the output o are rescaled to the new max. A lane's sums are partial (its
// columns only): every lane of a quad rescales by the same factor, so the
// quad adds them up once at the end.
template <int NT, int DT>
__device__ __forceinline__ void online_softmax(float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                               float (&o)[DT][4]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = -kInf;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
      tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 2));
    const float m_new = fmaxf(m[r], tile_max);
    // While every key so far is hidden, subtract 0 rather than -inf, so that
    // exp(-inf - -inf) does not make a NaN: p and the correction are 0.
    const float m_base = m_new == -kInf ? 0.0f : m_new;
    const float correction = exp2f((m[r] - m_base) * kLog2e);
    m[r] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float p = exp2f((s[nt][2 * r + e] - m_base) * kLog2e);
        s[nt][2 * r + e] = p;
        sum += p;
      }
    }
    l[r] = l[r] * correction + sum;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      o[dt][2 * r] *= correction;
      o[dt][2 * r + 1] *= correction;
    }
  }
}

// Writes (or adds to, when accumulating) a warp's (16, 8 * DT) tile times
// a per-row scale into rows [row_base, row_base + 16) of dst (rows, D),
// skipping rows and columns outside it.
template <typename G, int DT>
__device__ __forceinline__ void store_rows(typename G::type* dst, const float (&acc)[DT][4],
                                           const float (&row_scale)[2], int row_base, int rows,
                                           int D, bool accumulate) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_base + g + 8 * r;
    if (i >= rows) continue;
    typename G::type* row = dst + int64_t(i) * D;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int d = dt * 8 + 2 * t + e;
        if (d >= D) continue;
        const float x = acc[dt][2 * r + e] * row_scale[r];
        row[d] = cuda::from_f32<G>(accumulate ? cuda::to_f32<G>(row[d]) + x : x);
      }
    }
  }
}

constexpr size_t align16(size_t bytes) {
  return (bytes + 15) / 16 * 16;
}

// ---- Forward ----

template <typename G>
struct ForwardArgs {
  Problem pr;
  const typename G::type* q;
  const typename G::type* k;
  const typename G::type* v;
  typename G::type* out;
  float* lse;
};

// Shared memory of the forward kernel (byte offsets), for the kernel and its
// launch alike. V is kept transposed on tensor cores (the B operand of P.V
// wants pairs along keys).
template <class Math, int kDp>
struct ForwardSmem {
  using S = typename Math::Storage;
  static constexpr int ld = kDp + Math::kPad;  // (rows, kDp) tiles
  static constexpr int ldt = kKeyTile + 8;     // V transposed: (kDp, kKeyTile)
  static constexpr size_t q = 0;
  static constexpr size_t k = q + align16(sizeof(S) * kBlockRows * ld);
  static constexpr size_t v = k + align16(sizeof(S) * kKeyTile * ld);
  static constexpr size_t key_pos =
      v + align16(sizeof(S) * (Math::kTensorCores ? kDp * ldt : kKeyTile * ld));
  static constexpr size_t bytes = key_pos + sizeof(float) * kKeyTile;
};

template <class Math, int kDp, typename G>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const ForwardArgs<G> a) {
  using S = typename Math::Storage;
  using L = ForwardSmem<Math, kDp>;
  constexpr int kKeyTiles8 = kKeyTile / 8, kDimTiles8 = kDp / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  S* const q_tile = reinterpret_cast<S*>(smem + L::q);
  S* const k_tile = reinterpret_cast<S*>(smem + L::k);
  S* const v_tile = reinterpret_cast<S*>(smem + L::v);
  float* const key_pos = reinterpret_cast<float*>(smem + L::key_pos);

  const Problem& pr = a.pr;
  const int Tq = pr.seq_q, Tk = pr.seq_k, D = pr.head_dim;
  const auto [bh, rule, q_offset, kv_offset] = pr.place(blockIdx.x);
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBlockRows;  // longest causal rows first
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_base = i0 + warp * kWarpRows;
  float query_pos[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = lane_row(row_base, lane, r);
    query_pos[r] = i < Tq ? rule.query_position(i) : 0.0f;
  }

  load_tile<Math, kBlockRows, kDp, G>(q_tile, L::ld, a.q + q_offset, i0, Tq, D, pr.vec4);
  // Causal: keys past the last row's diagonal are hidden from the whole block.
  const int key_end = rule.visible_end(min(i0 + kBlockRows, Tq) - 1);
  float o[kDimTiles8][4] = {};
  float m[2] = {-kInf, -kInf}, l[2] = {0.0f, 0.0f};
  for (int j0 = 0; j0 < key_end; j0 += kKeyTile) {
    __syncthreads();  // the previous tile's readers are done
    load_tile<Math, kKeyTile, kDp, G>(k_tile, L::ld, a.k + kv_offset, j0, Tk, D, pr.vec4);
    if constexpr (Math::kTensorCores) {
      load_tile_transposed<Math, kKeyTile, kDp, G>(v_tile, L::ldt, a.v + kv_offset, j0, Tk, D,
                                                   pr.vec4);
    } else {
      load_tile<Math, kKeyTile, kDp, G>(v_tile, L::ld, a.v + kv_offset, j0, Tk, D, pr.vec4);
    }
    stage_key_positions(key_pos, rule, j0, Tk);
    __syncthreads();

    float s[kKeyTiles8][4] = {};
    // S = Q K^T: B (k = d, n = key) is K's row `key`.
    warp_gemm_ss<Math, kKeyTiles8, kDp>(s, q_tile + warp * kWarpRows * L::ld, L::ld, k_tile, L::ld,
                                        1);
    apply_score_rule<true>(s, rule, row_base, j0, query_pos, key_pos,
                           rule.needs_check(i0, kBlockRows, j0, kKeyTile));
    online_softmax(s, m, l, o);
    // O += P V: B (k = key, n = d) is V transposed on tensor cores.
    if constexpr (Math::kTensorCores) {
      warp_gemm_rs<Math, kDimTiles8, kKeyTile>(o, s, v_tile, L::ldt, 1);
    } else {
      warp_gemm_rs<Math, kDimTiles8, kKeyTile>(o, s, v_tile, 1, L::ld);
    }
  }

  float inverse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(kFullMask, l[r], 1);
    l[r] += __shfl_xor_sync(kFullMask, l[r], 2);
    // No visible key: zeros out (o is 0) and lse = -inf, as on the CPU.
    inverse[r] = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
    const int i = lane_row(row_base, lane, r);
    if (i < Tq && lane % 4 == 0)
      a.lse[int64_t(bh) * Tq + i] = l[r] == 0.0f ? -kInf : m[r] + logf(l[r]);
  }
  store_rows<G>(a.out + q_offset, o, inverse, row_base, Tq, D, false);
}

// ---- Backward ----

template <typename G>
struct BackwardArgs {
  Problem pr;
  const typename G::type* q;
  const typename G::type* k;
  const typename G::type* v;
  const typename G::type* out;
  const float* lse;
  const typename G::type* dout;
  float* delta;  // (B,H,Tq): written by the first kernel, read by the others
  typename G::type* dq;
  typename G::type* dk;
  typename G::type* dv;
  bool accumulate;
};

// delta_i = dout_i . out_i (dout rounded like the products' inputs, as on
// the CPU), one warp per row.
template <class Math, typename G>
__global__ void __launch_bounds__(kDeltaThreads)
    attention_delta_kernel(const typename G::type* out, const typename G::type* dout, float* delta,
                           int64_t rows, int D) {
  constexpr int kWarpsPerBlock = kDeltaThreads / 32;
  const int lane = threadIdx.x % 32;
  const int64_t stride = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += stride) {
    const typename G::type* o = out + row * D;
    const typename G::type* g = dout + row * D;
    float sum = 0.0f;
    for (int d = lane; d < D; d += 32)
      sum += Math::round(cuda::to_f32<G>(g[d])) * cuda::to_f32<G>(o[d]);
#pragma unroll
    for (int width = 16; width > 0; width /= 2) sum += __shfl_xor_sync(kFullMask, sum, width);
    if (lane == 0) delta[row] = sum;
  }
}

// The log-sum-exp to subtract for query i: +inf for rows with no visible key
// (and rows past Tq), which turns every p of the row into exp(-inf) = 0 -
// the CPU skips such rows.
__device__ __forceinline__ float lse_base(const float* lse, int i, int Tq) {
  const float x = i < Tq ? lse[i] : -kInf;
  return x == -kInf ? kInf : x;
}

// dq: one block per 64 queries (the forward's split), K transposed on
// tensor cores for dS K.
template <class Math, int kDp>
struct DqSmem {
  using S = typename Math::Storage;
  static constexpr int ld = kDp + Math::kPad;
  static constexpr int ldt = kKeyTile + 8;  // K transposed: (kDp, kKeyTile)
  static constexpr size_t q = 0;
  static constexpr size_t dout = q + align16(sizeof(S) * kBlockRows * ld);
  static constexpr size_t k = dout + align16(sizeof(S) * kBlockRows * ld);
  static constexpr size_t v = k + align16(sizeof(S) * kKeyTile * ld);
  static constexpr size_t kt = v + align16(sizeof(S) * kKeyTile * ld);
  static constexpr size_t key_pos =
      kt + (Math::kTensorCores ? align16(sizeof(S) * kDp * ldt) : size_t(0));
  static constexpr size_t bytes = key_pos + sizeof(float) * kKeyTile;
};

template <class Math, int kDp, typename G>
__global__ void __launch_bounds__(kThreads) attention_backward_dq_kernel(const BackwardArgs<G> a) {
  using S = typename Math::Storage;
  using L = DqSmem<Math, kDp>;
  constexpr int kKeyTiles8 = kKeyTile / 8, kDimTiles8 = kDp / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  S* const q_tile = reinterpret_cast<S*>(smem + L::q);
  S* const dout_tile = reinterpret_cast<S*>(smem + L::dout);
  S* const k_tile = reinterpret_cast<S*>(smem + L::k);
  S* const v_tile = reinterpret_cast<S*>(smem + L::v);
  S* const kt_tile = reinterpret_cast<S*>(smem + L::kt);
  float* const key_pos = reinterpret_cast<float*>(smem + L::key_pos);

  const Problem& pr = a.pr;
  const int Tq = pr.seq_q, Tk = pr.seq_k, D = pr.head_dim;
  const auto [bh, rule, q_offset, kv_offset] = pr.place(blockIdx.x);
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBlockRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_base = i0 + warp * kWarpRows;
  float query_pos[2], row_lse[2], row_delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = lane_row(row_base, lane, r);
    query_pos[r] = i < Tq ? rule.query_position(i) : 0.0f;
    row_lse[r] = lse_base(a.lse + int64_t(bh) * Tq, i, Tq);
    row_delta[r] = i < Tq ? a.delta[int64_t(bh) * Tq + i] : 0.0f;
  }

  load_tile<Math, kBlockRows, kDp, G>(q_tile, L::ld, a.q + q_offset, i0, Tq, D, pr.vec4);
  load_tile<Math, kBlockRows, kDp, G>(dout_tile, L::ld, a.dout + q_offset, i0, Tq, D, pr.vec4);
  const int key_end = rule.visible_end(min(i0 + kBlockRows, Tq) - 1);
  float dq[kDimTiles8][4] = {};
  for (int j0 = 0; j0 < key_end; j0 += kKeyTile) {
    __syncthreads();
    load_tile<Math, kKeyTile, kDp, G>(k_tile, L::ld, a.k + kv_offset, j0, Tk, D, pr.vec4);
    load_tile<Math, kKeyTile, kDp, G>(v_tile, L::ld, a.v + kv_offset, j0, Tk, D, pr.vec4);
    if constexpr (Math::kTensorCores)
      load_tile_transposed<Math, kKeyTile, kDp, G>(kt_tile, L::ldt, a.k + kv_offset, j0, Tk, D,
                                                   pr.vec4);
    stage_key_positions(key_pos, rule, j0, Tk);
    __syncthreads();

    float s[kKeyTiles8][4] = {};
    warp_gemm_ss<Math, kKeyTiles8, kDp>(s, q_tile + warp * kWarpRows * L::ld, L::ld, k_tile, L::ld,
                                        1);
    apply_score_rule<true>(s, rule, row_base, j0, query_pos, key_pos,
                           rule.needs_check(i0, kBlockRows, j0, kKeyTile));
    // dP = dO V^T: B (k = d, n = key) is V's row `key`.
    float dp[kKeyTiles8][4] = {};
    warp_gemm_ss<Math, kKeyTiles8, kDp>(dp, dout_tile + warp * kWarpRows * L::ld, L::ld, v_tile,
                                        L::ld, 1);
    // dS = P * (dP - delta) * scale, in place of S.
#pragma unroll
    for (int nt = 0; nt < kKeyTiles8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f((s[nt][e] - row_lse[e / 2]) * kLog2e);
        s[nt][e] = p * (dp[nt][e] - row_delta[e / 2]) * pr.scale;
      }
    }
    // dQ += dS K: B (k = key, n = d) is K transposed on tensor cores.
    if constexpr (Math::kTensorCores) {
      warp_gemm_rs<Math, kDimTiles8, kKeyTile>(dq, s, kt_tile, L::ldt, 1);
    } else {
      warp_gemm_rs<Math, kDimTiles8, kKeyTile>(dq, s, k_tile, 1, L::ld);
    }
  }
  const float one[2] = {1.0f, 1.0f};
  store_rows<G>(a.dq + q_offset, dq, one, row_base, Tq, D, a.accumulate);
}

// dk, dv: one block per 64 keys, each warp 16 keys, walking query tiles of
// kQueryTile rows. The warp works on S transposed (keys as rows), so that
// P^T and dS^T are already the A operands of dV += P^T dO and dK += dS^T Q.
// Q and dO are also kept transposed on tensor cores, for those B operands.
template <class Math, int kDp, int kQueryTile>
struct DkdvSmem {
  using S = typename Math::Storage;
  static constexpr int ld = kDp + Math::kPad;
  static constexpr int ldt = kQueryTile + 8;  // Q, dO transposed: (kDp, kQueryTile)
  static constexpr size_t transposed = Math::kTensorCores ? align16(sizeof(S) * kDp * ldt) : 0;
  static constexpr size_t k = 0;
  static constexpr size_t v = k + align16(sizeof(S) * kBlockRows * ld);
  static constexpr size_t q = v + align16(sizeof(S) * kBlockRows * ld);
  static constexpr size_t dout = q + align16(sizeof(S) * kQueryTile * ld);
  static constexpr size_t qt = dout + align16(sizeof(S) * kQueryTile * ld);
  static constexpr size_t dout_t = qt + transposed;
  static constexpr size_t query_pos = dout_t + transposed;
  static constexpr size_t query_lse = query_pos + align16(sizeof(float) * kQueryTile);
  static constexpr size_t query_delta = query_lse + align16(sizeof(float) * kQueryTile);
  static constexpr size_t bytes = query_delta + sizeof(float) * kQueryTile;
};

template <class Math, int kDp, int kQueryTile, typename G>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_kernel(const BackwardArgs<G> a) {
  using S = typename Math::Storage;
  using L = DkdvSmem<Math, kDp, kQueryTile>;
  constexpr int kQueryTiles8 = kQueryTile / 8, kDimTiles8 = kDp / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  S* const k_tile = reinterpret_cast<S*>(smem + L::k);
  S* const v_tile = reinterpret_cast<S*>(smem + L::v);
  S* const q_tile = reinterpret_cast<S*>(smem + L::q);
  S* const dout_tile = reinterpret_cast<S*>(smem + L::dout);
  S* const qt_tile = reinterpret_cast<S*>(smem + L::qt);
  S* const dout_t_tile = reinterpret_cast<S*>(smem + L::dout_t);
  float* const query_pos = reinterpret_cast<float*>(smem + L::query_pos);
  float* const query_lse = reinterpret_cast<float*>(smem + L::query_lse);
  float* const query_delta = reinterpret_cast<float*>(smem + L::query_delta);

  const Problem& pr = a.pr;
  const int Tq = pr.seq_q, Tk = pr.seq_k, D = pr.head_dim;
  // pr.place(), written out: through it ptxas gives the sm_80 f32 build of
  // this kernel 254 registers instead of 168 (CUDA 13).
  const int bh = blockIdx.x, b = bh / pr.heads, h = bh % pr.heads;
  const int j0 = blockIdx.y * kBlockRows;  // the first keys see the most queries: first
  const ScoreRule rule = pr.rule(b, h);
  const int64_t q_offset = int64_t(bh) * Tq * D, kv_offset = int64_t(bh) * Tk * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
  const int row_base = j0 + warp * kWarpRows;  // the warp's first key
  float key_pos[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int j = lane_row(row_base, lane, r);
    key_pos[r] = j < Tk ? rule.key_position(j) : 0.0f;
  }

  load_tile<Math, kBlockRows, kDp, G>(k_tile, L::ld, a.k + kv_offset, j0, Tk, D, pr.vec4);
  load_tile<Math, kBlockRows, kDp, G>(v_tile, L::ld, a.v + kv_offset, j0, Tk, D, pr.vec4);
  // Causal: queries before the block's first key see none of it.
  const int first_query = pr.causal ? max(0, j0 - rule.offset) : 0;
  float dk[kDimTiles8][4] = {}, dv[kDimTiles8][4] = {};
  for (int i0 = first_query / kQueryTile * kQueryTile; i0 < Tq; i0 += kQueryTile) {
    __syncthreads();
    load_tile<Math, kQueryTile, kDp, G>(q_tile, L::ld, a.q + q_offset, i0, Tq, D, pr.vec4);
    load_tile<Math, kQueryTile, kDp, G>(dout_tile, L::ld, a.dout + q_offset, i0, Tq, D, pr.vec4);
    if constexpr (Math::kTensorCores) {
      load_tile_transposed<Math, kQueryTile, kDp, G>(qt_tile, L::ldt, a.q + q_offset, i0, Tq, D,
                                                     pr.vec4);
      load_tile_transposed<Math, kQueryTile, kDp, G>(dout_t_tile, L::ldt, a.dout + q_offset, i0, Tq,
                                                     D, pr.vec4);
    }
    for (int r = threadIdx.x; r < kQueryTile; r += kThreads) {
      const int i = i0 + r;
      query_pos[r] = i < Tq ? rule.query_position(i) : 0.0f;
      query_lse[r] = lse_base(a.lse + int64_t(bh) * Tq, i, Tq);
      query_delta[r] = i < Tq ? a.delta[int64_t(bh) * Tq + i] : 0.0f;
    }
    __syncthreads();

    // S^T = K Q^T: B (k = d, n = query) is Q's row `query`.
    float s[kQueryTiles8][4] = {};
    warp_gemm_ss<Math, kQueryTiles8, kDp>(s, k_tile + warp * kWarpRows * L::ld, L::ld, q_tile,
                                          L::ld, 1);
    apply_score_rule<false>(s, rule, row_base, i0, key_pos, query_pos,
                            rule.needs_check(i0, kQueryTile, j0, kBlockRows));
#pragma unroll
    for (int nt = 0; nt < kQueryTiles8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s[nt][e] = exp2f((s[nt][e] - query_lse[nt * 8 + 2 * t + e % 2]) * kLog2e);
    }
    // dV += P^T dO: B (k = query, n = d) is dO transposed on tensor cores.
    if constexpr (Math::kTensorCores) {
      warp_gemm_rs<Math, kDimTiles8, kQueryTile>(dv, s, dout_t_tile, L::ldt, 1);
    } else {
      warp_gemm_rs<Math, kDimTiles8, kQueryTile>(dv, s, dout_tile, 1, L::ld);
    }
    // dP^T = V dO^T: B (k = d, n = query) is dO's row `query`.
    float dp[kQueryTiles8][4] = {};
    warp_gemm_ss<Math, kQueryTiles8, kDp>(dp, v_tile + warp * kWarpRows * L::ld, L::ld, dout_tile,
                                          L::ld, 1);
#pragma unroll
    for (int nt = 0; nt < kQueryTiles8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        s[nt][e] = s[nt][e] * (dp[nt][e] - query_delta[nt * 8 + 2 * t + e % 2]) * pr.scale;
    }
    // dK += dS^T Q: B (k = query, n = d) is Q transposed on tensor cores.
    if constexpr (Math::kTensorCores) {
      warp_gemm_rs<Math, kDimTiles8, kQueryTile>(dk, s, qt_tile, L::ldt, 1);
    } else {
      warp_gemm_rs<Math, kDimTiles8, kQueryTile>(dk, s, q_tile, 1, L::ld);
    }
  }
  const float one[2] = {1.0f, 1.0f};
  store_rows<G>(a.dk + kv_offset, dk, one, row_base, Tk, D, a.accumulate);
  store_rows<G>(a.dv + kv_offset, dv, one, row_base, Tk, D, a.accumulate);
}

// ---- Launches ----

// Query tile of the dk/dv kernel: 32 rows at D = 128 keep dk, dv, S and dP
// in registers without spilling.
template <int kDp>
constexpr int kDkdvQueryTile = kDp > 64 ? 32 : 64;

int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

Problem make_problem(const char* op, const AttentionShape& s, const float* alibi,
                     bool rows_aligned) {
  TURBINE_CUDA_REQUIRE(s.head_dim >= 1 && s.head_dim <= 128,
                       "%s: head_dim %d is not supported on CUDA (1 to 128)", op, s.head_dim);
  TURBINE_CUDA_REQUIRE(int64_t(s.batch) * s.heads <= 0x7fffffff,
                       "%s: batch * heads = %lld is too large for one grid", op,
                       static_cast<long long>(int64_t(s.batch) * s.heads));
  TURBINE_CUDA_REQUIRE(
      ceil_div(s.seq_q, kBlockRows) <= 65535 && ceil_div(s.seq_k, kBlockRows) <= 65535,
      "%s: sequences of %d queries and %d keys are too long for one grid", op, s.seq_q, s.seq_k);
  Problem pr;
  pr.heads = s.heads;
  pr.seq_q = s.seq_q;
  pr.seq_k = s.seq_k;
  pr.head_dim = s.head_dim;
  pr.kv_stride = s.kv_plane();
  pr.scale = s.scale;
  pr.causal = s.causal;
  pr.mask_per_batch = s.mask_per_batch;
  pr.vec4 = s.head_dim % 4 == 0 && rows_aligned;
  pr.alibi = alibi;
  pr.mask = s.mask;
  pr.positions = s.positions;
  return pr;
}

// Calls fn(Math{}, std::integral_constant<int, kDp>{}) for the math mode,
// with the head dim padded to a compiled tile width (64 or 128).
template <class Fn>
void dispatch(MathMode mode, int head_dim, Fn&& fn) {
  const auto by_dim = [&](auto math) {
    if (head_dim <= 64) {
      fn(math, std::integral_constant<int, 64>{});
    } else {
      fn(math, std::integral_constant<int, 128>{});
    }
  };
  switch (mode) {
    case MathMode::f32:
      by_dim(MathF32{});
      break;
    case MathMode::bf16:
      by_dim(MathBf16{});
      break;
    case MathMode::f16:
      by_dim(MathF16{});
      break;
  }
}

template <class Args>
void launch(void (*kernel)(Args), dim3 grid, int threads, size_t smem_bytes, cudaStream_t stream,
            const Args& args) {
  if (grid.x == 0 || grid.y == 0) return;
  // Above 48 KiB a kernel must opt in to more shared memory.
  if (smem_bytes > 48 * 1024)
    TURBINE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem_bytes)));
  kernel<<<grid, threads, smem_bytes, stream>>>(args);
  TURBINE_CUDA_LAUNCH_CHECK();
}

// The launches for activations stored as G.
template <typename G>
void run_attention_forward(CudaBackend& be, const AttentionShape& s, const typename G::type* q,
                           const typename G::type* k, const typename G::type* v,
                           typename G::type* out, float* lse) {
  const int64_t tasks = int64_t(s.batch) * s.heads;
  const Problem pr =
      make_problem("attention_forward", s, be.stage_alibi(s.alibi_slopes, s.heads),
                   aligned16(q) && aligned16(k) && aligned16(v) && s.kv_plane() % 4 == 0);
  if (tasks == 0 || s.seq_q == 0) return;
  const ForwardArgs<G> args{pr, q, k, v, out, lse};
  const dim3 grid(static_cast<unsigned>(tasks),
                  static_cast<unsigned>(ceil_div(s.seq_q, kBlockRows)));
  dispatch(be.math_mode(), s.head_dim, [&](auto math, auto dim) {
    using Math = decltype(math);
    constexpr int kDp = decltype(dim)::value;
    launch(attention_forward_kernel<Math, kDp, G>, grid, kThreads, ForwardSmem<Math, kDp>::bytes,
           be.stream(), args);
  });
}

template <typename G>
void run_attention_backward(CudaBackend& be, const AttentionShape& s, const typename G::type* q,
                            const typename G::type* k, const typename G::type* v,
                            const typename G::type* out, const float* lse,
                            const typename G::type* dout, typename G::type* dq,
                            typename G::type* dk, typename G::type* dv, bool accumulate) {
  const int64_t tasks = int64_t(s.batch) * s.heads;
  TURBINE_CUDA_REQUIRE(s.kv_plane() == int64_t(s.seq_k) * s.head_dim,
                       "attention_backward: k and v must be dense (kv_stride %lld)",
                       static_cast<long long>(s.kv_stride));
  const Problem pr = make_problem("attention_backward", s, be.stage_alibi(s.alibi_slopes, s.heads),
                                  aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout));
  if (tasks == 0) return;
  const int64_t rows = tasks * s.seq_q;
  // delta lives in scratch for this call only.
  float* delta = static_cast<float*>(be.scratch(sizeof(float) * static_cast<size_t>(rows)));
  const BackwardArgs<G> args{pr, q, k, v, out, lse, dout, delta, dq, dk, dv, accumulate};
  const dim3 q_grid(static_cast<unsigned>(tasks),
                    static_cast<unsigned>(ceil_div(s.seq_q, kBlockRows)));
  const dim3 k_grid(static_cast<unsigned>(tasks),
                    static_cast<unsigned>(ceil_div(s.seq_k, kBlockRows)));
  dispatch(be.math_mode(), s.head_dim, [&](auto math, auto dim) {
    using Math = decltype(math);
    constexpr int kDp = decltype(dim)::value;
    constexpr int kQueryTile = kDkdvQueryTile<kDp>;
    if (rows > 0) {
      const int64_t blocks = (rows + kDeltaThreads / 32 - 1) / (kDeltaThreads / 32);
      const unsigned delta_blocks =
          static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
      attention_delta_kernel<Math, G>
          <<<delta_blocks, kDeltaThreads, 0, be.stream()>>>(out, dout, delta, rows, s.head_dim);
      TURBINE_CUDA_LAUNCH_CHECK();
    }
    launch(attention_backward_dq_kernel<Math, kDp, G>, q_grid, kThreads, DqSmem<Math, kDp>::bytes,
           be.stream(), args);
    launch(attention_backward_dkdv_kernel<Math, kDp, kQueryTile, G>, k_grid, kThreads,
           DkdvSmem<Math, kDp, kQueryTile>::bytes, be.stream(), args);
  });
}

}  // namespace

void CudaBackend::attention_forward(const AttentionShape& s, const float* q, const float* k,
                                    const float* v, float* out, float* lse) {
  run_attention_forward<F32Storage>(*this, s, q, k, v, out, lse);
}

void CudaBackend::attention_forward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                      const uint16_t* k, const uint16_t* v, uint16_t* out,
                                      float* lse) {
  cuda::with_half_storage(
      t, [&](auto g) { run_attention_forward<decltype(g)>(*this, s, q, k, v, out, lse); });
}

void CudaBackend::attention_backward(const AttentionShape& s, const float* q, const float* k,
                                     const float* v, const float* out, const float* lse,
                                     const float* dout, float* dq, float* dk, float* dv,
                                     bool accumulate) {
  run_attention_backward<F32Storage>(*this, s, q, k, v, out, lse, dout, dq, dk, dv, accumulate);
}

void CudaBackend::attention_backward16(FloatType t, const AttentionShape& s, const uint16_t* q,
                                       const uint16_t* k, const uint16_t* v, const uint16_t* out,
                                       const float* lse, const uint16_t* dout, uint16_t* dq,
                                       uint16_t* dk, uint16_t* dv, bool accumulate) {
  cuda::with_half_storage(t, [&](auto g) {
    run_attention_backward<decltype(g)>(*this, s, q, k, v, out, lse, dout, dq, dk, dv, accumulate);
  });
}

}  // namespace turbine::kernels
