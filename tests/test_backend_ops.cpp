// Backend conformance, after ggml's test-backend-ops: every kernels::Backend
// op runs on the CUDA backend and on the CPU backend from the same random
// inputs (Philox draws, never zeros), and each output is compared by its
// normalized mean squared error NMSE = sum((gpu - cpu)^2) / sum(cpu^2)
// against a threshold chosen per op and math mode (see Tolerances).
//
//   test_backend_ops [--cpu-only] [--list] [OP...]
//
// OP keeps the cases whose op name contains it (several may be given).
// --cpu-only puts the CPU backend on both sides, so the harness itself runs
// (and its comparator is checked) on a machine without a GPU. Without a CUDA
// device the GPU comparison prints SKIP and exits 77, which meson shows as
// SKIP. One line per case; a case whose op throws (a kernel that is still a
// stub, a CUDA error) is a FAIL with the message, and the run goes on.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/rng.hpp"
#include "kernels/backend.hpp"
#include "kernels/cpu/precision.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor.hpp"

using namespace turbine;
using kernels::AttentionShape;
using kernels::Backend;
using kernels::MathMode;

namespace {

// ---- tolerances ------------------------------------------------------------------
// One f32 rounding is 2^-24 relative, an NMSE of about 4e-15 per rounding;
// each tier leaves room for a different evaluation order or an FMA
// contraction and stays orders of magnitude below what a wrong index, mask,
// scale or constant produces (1e-6 and up, usually 1e-2).
namespace tol {
// Data movement, conversions, fills: bit-identical (the NaN class and
// payload-free value must agree; -0 equals +0).
constexpr double exact = 0;
// One or two roundings per element (add, scale, bias, dropout, AdamW's
// moments, embedding's sums over a few repeated ids).
constexpr double rounding = 1e-12;
// Sums over hundreds of rows in any order (bias and LayerNorm parameter
// gradients, the double-precision sum and sum of squares).
constexpr double reduction = 1e-11;
// exp/tanh/log/rsqrt per element and row reductions (GeLU, softmax, cross
// entropy, LayerNorm): the CPU uses its own polynomial exp (2 ulp), CUDA libm
// or intrinsics (a few ulp), and rows are summed in a different order.
constexpr double transcendental = 1e-10;
// AdamW's parameter update compared as (new - old): old * (1 - lr * wd) is
// rounded at ulp(p) ~ 1e-7 |p| while the update is ~lr |p| = 1e-3 |p|, so an
// FMA-vs-separate rounding of that one product moves the update by ~1e-4
// relative (NMSE ~1e-9).
constexpr double adamw_update = 1e-8;

// GEMM. f32: products of 4-byte floats summed over K <= 320 in another order
// (NMSE ~1e-13); TF32 tensor cores would show ~1e-7 and fail, as they should.
// bf16/f16: both sides round the inputs the same way (the CPU emulates it),
// the products are exact in f32 and only the f32 accumulation differs (tensor
// cores truncate, ~1e-12). A backend that skipped the input rounding shows
// 2.7e-6..5.9e-6 (bf16) and 4.2e-8..9.1e-8 (f16) on these cases (measured
// with the CPU in f32 on one side), so the thresholds sit between the two.
// cuBLAS's fast route may compute more precisely than the mode asks (TF32 or
// f32, seen on an H200): a result no further from the f32 product than the
// mode's rounding then passes too (Case::may_exceed_mode).
inline double gemm(MathMode mode) {
  switch (mode) {
    case MathMode::bf16:
      return 1e-7;
    case MathMode::f16:
      return 1e-8;
    default:
      return 1e-10;
  }
}

// Attention. f32: dot products over D, exp per score and an online softmax
// (~1e-12); backward has the dP - delta cancellation, hence 10x more room.
// bf16/f16: the CPU rounds q, k, v (and dout) only, while a tensor-core flash
// kernel also rounds the probabilities P (and dS in backward) to 16 bits for
// its second product: that alone is NMSE ~ (rms rounding)^2, about 3e-6
// (bf16) and 5e-8 (f16) per rounded tensor, ~1e-5 and ~2e-7 in all; the
// thresholds leave 10x. They cannot catch a kernel that ignores the mode
// (measured: 6e-6..5.5e-5 bf16, 7e-8..1.1e-6 f16), which the GEMM cases
// catch; masks, causality, ALiBi and positions are checked tightly by the
// f32 cases of the same shapes.
inline double attention(MathMode mode, bool backward) {
  switch (mode) {
    case MathMode::bf16:
      return 1e-4;
    case MathMode::f16:
      return 2e-6;
    default:
      return backward ? 1e-8 : 1e-9;
  }
}
}  // namespace tol

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr MathMode kModes[] = {MathMode::f32, MathMode::bf16, MathMode::f16};

// ---- host inputs ------------------------------------------------------------------

// Random host data from the counter-based RNG: each draw takes a new stream of
// the case's seed, so inputs differ between cases and between a case's tensors.
class Inputs {
 public:
  explicit Inputs(uint64_t seed) : seed_(seed) {}

  // Normal(mean, stddev), with exact zeros nudged away (dropout tells a
  // dropped element by its zero).
  std::vector<float> normal(size_t n, float stddev = 1.0f, float mean = 0.0f) {
    const uint64_t stream = stream_++;
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
      out[i] = mean + stddev * philox_normal(seed_, stream, 0, i);
      if (out[i] == 0.0f) out[i] = 1e-3f;
    }
    return out;
  }
  // Uniform integers in [lo, hi).
  std::vector<int64_t> integers(size_t n, int64_t lo, int64_t hi) {
    const uint64_t stream = stream_++;
    std::vector<int64_t> out(n);
    for (size_t i = 0; i < n; ++i) {
      const auto pick = static_cast<int64_t>(philox_uniform(seed_, stream, 0, i) * double(hi - lo));
      out[i] = lo + std::min(pick, hi - lo - 1);
    }
    return out;
  }
  // `picked` distinct values of [0, range) in random order, for each of `rows` rows.
  std::vector<int64_t> distinct(int rows, int range, int picked) {
    std::vector<int64_t> out;
    for (int r = 0; r < rows; ++r) {
      std::vector<int64_t> all(range);
      for (int i = 0; i < range; ++i) all[i] = i;
      const auto keys = integers(range, 0, 1 << 30);
      for (int i = range - 1; i > 0; --i)
        std::swap(all[i], all[keys[i] % (i + 1)]);  // Fisher-Yates
      out.insert(out.end(), all.begin(), all.begin() + picked);
    }
    return out;
  }
  std::vector<uint8_t> bytes(size_t n) {
    const auto values = integers(n, 0, 256);
    return {values.begin(), values.end()};
  }
  // Bits with probability p of being 1.
  std::vector<uint8_t> bits(size_t n, float p) {
    const uint64_t stream = stream_++;
    std::vector<uint8_t> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = philox_uniform(seed_, stream, 0, i) < p ? 1 : 0;
    return out;
  }

 private:
  uint64_t seed_;
  uint64_t stream_ = 0;
};

// The initial contents of an output buffer: random when the op accumulates
// into it, NaN otherwise (an op that reads a buffer it should only write
// then shows NaN where the reference has numbers).
std::vector<float> poison(size_t n) {
  return std::vector<float>(n, kNaN);
}
std::vector<float> initial(Inputs& in, size_t n, bool accumulate) {
  return accumulate ? in.normal(n) : poison(n);
}

// ---- the two sides ------------------------------------------------------------------

// A backend and the device whose memory it works in.
struct Side {
  Backend& backend;
  Device device;

  template <typename T>
  Tensor upload(const std::vector<T>& host) const {
    return Tensor::from_vector<T>({static_cast<int64_t>(host.size())}, host, device);
  }
};

// One output read back to the host, as doubles, with how it is compared.
struct Output {
  std::string name;
  std::vector<double> values;
  // Overrides the case's threshold (0: bit-identical).
  std::optional<double> max_nmse = std::nullopt;
  // The zeros must sit at the same elements (dropout's mask).
  bool zero_pattern = false;
  // The reference itself may hold inf or NaN.
  bool allow_nonfinite = false;
};
using Outputs = std::vector<Output>;

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out;
  if (t.dtype() == DType::f32) {
    for (float v : t.to_vector<float>()) out.push_back(v);
  } else if (t.dtype() == DType::u8) {
    for (uint8_t v : t.to_vector<uint8_t>()) out.push_back(v);
  } else {
    for (int64_t v : t.to_vector<int64_t>()) out.push_back(static_cast<double>(v));
  }
  return out;
}

// An output the op writes.
Output written(std::string name, const Tensor& t) {
  return {std::move(name), to_doubles(t)};
}

// An output the op wrote (accumulate false) or added to (accumulate true):
// an accumulated one is compared as (after - before), so random contents do
// not dilute the gradient's error and an op that overwrote shows at once.
Output result(std::string name, const Tensor& t, const std::vector<float>& before,
              bool accumulate) {
  Output out = written(std::move(name), t);
  if (accumulate)
    for (size_t i = 0; i < out.values.size(); ++i) out.values[i] -= double(before[i]);
  return out;
}

// ---- cases -------------------------------------------------------------------------

// Runs the op on one side from the case's host inputs and returns the outputs.
using Run = std::function<Outputs(const Side&)>;

struct Case {
  std::string op;      // the Backend method
  std::string params;  // shapes and flags
  MathMode mode = MathMode::f32;
  double max_nmse = 0;
  // Draws the host inputs (from the case's seed) and returns the runner.
  std::function<Run(Inputs&)> prepare;
  // A GEMM in a 16-bit mode on cuBLAS's FAST_16BF/16F route, which permits
  // the 16-bit tensor cores but does not require them: cuBLAS may compute
  // more precisely (TF32 or plain f32; seen on an H200 for every bf16 case
  // and some f16 ones). Such a result passes if it is no further from the
  // f32 product than the mode's own rounding is (tol::gemm's comment).
  bool may_exceed_mode = false;
};

void add(std::vector<Case>& cases, std::string op, std::string params, MathMode mode,
         double max_nmse, std::function<Run(Inputs&)> prepare) {
  cases.push_back({std::move(op), std::move(params), mode, max_nmse, std::move(prepare)});
}

// The cuBLAS route of the 16-bit GEMMs (not TURBINE_CUDA_GEMM=convert, whose
// 16-bit operand copies must round exactly as the CPU does).
bool fast_gemm_route() {
  const char* route = std::getenv("TURBINE_CUDA_GEMM");
  return route == nullptr || std::string_view(route) != "convert";
}

// A GEMM case in `mode`, marked when cuBLAS may compute it more precisely.
void add_gemm(std::vector<Case>& cases, std::string op, std::string params, MathMode mode,
              std::function<Run(Inputs&)> prepare) {
  add(cases, std::move(op), std::move(params), mode, tol::gemm(mode), std::move(prepare));
  cases.back().may_exceed_mode = mode != MathMode::f32 && fast_gemm_route();
}

std::string flag(const char* name, bool on) {
  return on ? fmt::format(" {}", name) : "";
}

// ---- memory ---------------------------------------------------------------------------

void add_memory_cases(std::vector<Case>& cases) {
  add(cases, "allocate", "sizes 1, 4097, 3 MiB; freed, allocated again", MathMode::f32, tol::exact,
      [](Inputs& in) {
        const std::vector<size_t> sizes = {1, 4097, size_t(3) << 20};
        std::vector<std::vector<uint8_t>> patterns;
        for (size_t n : sizes) patterns.push_back(in.bytes(n));
        return Run([=](const Side& s) {
          Outputs outs;
          // The second round may reuse blocks the first freed.
          for (int round = 0; round < 2; ++round) {
            for (size_t i = 0; i < sizes.size(); ++i) {
              void* p = s.backend.allocate(sizes[i]);
              s.backend.copy_from_host(p, patterns[i].data(), sizes[i]);
              std::vector<uint8_t> back(sizes[i]);
              s.backend.copy_to_host(back.data(), p, sizes[i]);
              s.backend.deallocate(p, sizes[i]);
              outs.push_back({fmt::format("round {} block {}", round, i),
                              std::vector<double>(back.begin(), back.end())});
            }
          }
          return outs;
        });
      });

  const size_t bytes = 1000003;
  add(cases, "copy", fmt::format("{} bytes, dst+5 <- src+3", bytes - 10), MathMode::f32, tol::exact,
      [=](Inputs& in) {
        const auto src = in.bytes(bytes), dst = in.bytes(bytes);
        return Run([=](const Side& s) {
          const Tensor a = s.upload(src), b = s.upload(dst);
          s.backend.copy(b.data<uint8_t>() + 5, a.data<uint8_t>() + 3, bytes - 10);
          return Outputs{written("dst", b)};
        });
      });
  add(cases, "copy_from_host", fmt::format("{} bytes, dst+7 <- host+1", bytes - 9), MathMode::f32,
      tol::exact, [=](Inputs& in) {
        const auto src = in.bytes(bytes), dst = in.bytes(bytes);
        return Run([=](const Side& s) {
          const Tensor b = s.upload(dst);
          s.backend.copy_from_host(b.data<uint8_t>() + 7, src.data() + 1, bytes - 9);
          return Outputs{written("dst", b)};
        });
      });
  add(cases, "copy_to_host", fmt::format("{} bytes, host <- src+3", bytes - 3), MathMode::f32,
      tol::exact, [=](Inputs& in) {
        const auto src = in.bytes(bytes);
        return Run([=](const Side& s) {
          const Tensor a = s.upload(src);
          std::vector<uint8_t> host(bytes - 3);
          s.backend.copy_to_host(host.data(), a.data<uint8_t>() + 3, host.size());
          return Outputs{{"host", std::vector<double>(host.begin(), host.end())}};
        });
      });

  // Streaming through pinned host buffers: upload asynchronously, a kernel
  // that waits for the upload (wait_for_transfers), a download queued after
  // the kernel, then the host waits; twice through the same buffers.
  add(cases, "copy_from_host_async", "pinned, 2 x 250007 floats, scaled between, then downloaded",
      MathMode::f32, tol::exact, [](Inputs& in) {
        const size_t n = 250007;
        const auto first = in.normal(n), second = in.normal(n);
        return Run([=](const Side& s) {
          Backend& be = s.backend;
          const size_t bytes = n * sizeof(float);
          auto* staged = static_cast<float*>(be.allocate_host(bytes));
          auto* back = static_cast<float*>(be.allocate_host(bytes));
          const Tensor device = s.upload(poison(n)), scaled = s.upload(poison(n));
          Outputs outs;
          for (const auto* values : {&first, &second}) {
            std::memcpy(staged, values->data(), bytes);
            be.copy_from_host_async(device.data<float>(), staged, bytes);
            be.wait_for_transfers();
            be.scale(device.data<float>(), scaled.data<float>(), n, -0.5f, false);
            be.copy_to_host_async(back, scaled.data<float>(), bytes);
            be.synchronize_transfers();  // back is ready, staged may be refilled
            outs.push_back({fmt::format("round {}", outs.size()), {back, back + n}});
          }
          be.deallocate_host(staged, bytes);
          be.deallocate_host(back, bytes);
          return outs;
        });
      });

  for (size_t n : {size_t(1), size_t(100003)}) {
    add(cases, "fill", fmt::format("n={} at x+3 of n+7", n), MathMode::f32, tol::exact,
        [=](Inputs& in) {
          const auto x = in.normal(n + 7);
          return Run([=](const Side& s) {
            const Tensor t = s.upload(x);
            s.backend.fill(t.data<float>() + 3, n, -2.75f);
            return Outputs{written("x", t)};
          });
        });
  }
}

// ---- conversions ----------------------------------------------------------------------

float f16_bits_to_f32(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

// f32 values across the 16-bit formats' ranges: normals, subnormals, values
// that underflow or overflow, exact ties (round to even), inf and NaN.
std::vector<float> conversion_inputs(Inputs& in, size_t n) {
  std::vector<float> x = in.normal(n);
  const auto exponents = in.integers(n, -30, 18);
  for (size_t i = 0; i < n; ++i) x[i] = std::ldexp(x[i], static_cast<int>(exponents[i]));
  // inf and NaN; f16's largest value and two that overflow it; ties that round
  // to even in f16 (1 + 2^-11, 1 + 3 * 2^-11) and in bf16 (1 + 2^-8, 1 + 3 * 2^-8);
  // f16's smallest subnormal and the tie below it; a value that overflows bf16; -0.
  const float specials[] = {kInf,      -kInf,      kNaN,       65504.0f,  65520.0f,
                            -70000.0f, 0x1.002p0f, 0x1.006p0f, 0x1.01p0f, 0x1.03p0f,
                            0x1p-24f,  0x1p-25f,   3.4e38f,    -0.0f};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 97 % n] = specials[i];
  return x;
}

std::vector<uint16_t> every_16_bit_pattern() {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  return all;
}

void add_conversion_cases(std::vector<Case>& cases) {
  const size_t n = 100003;
  using Convert = void (Backend::*)(const float*, uint16_t*, size_t);
  using Decode = float (*)(uint16_t);
  struct Narrowing {
    const char* op;
    Convert convert;
    Decode decode;
  };
  for (const Narrowing& c :
       {Narrowing{"convert_f32_to_bf16", &Backend::convert_f32_to_bf16, &kernels::bf16_to_f32},
        Narrowing{"convert_f32_to_f16", &Backend::convert_f32_to_f16, &f16_bits_to_f32}}) {
    add(cases, c.op, fmt::format("n={} (subnormals, ties, overflow, inf, NaN)", n), MathMode::f32,
        tol::exact, [=](Inputs& in) {
          const auto x = conversion_inputs(in, n);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x);
            const Tensor ty = s.upload(std::vector<uint16_t>(n, 0x7fff));
            (s.backend.*c.convert)(tx.data<float>(), ty.data<uint16_t>(), n);
            // Compared as the values the bits encode (any NaN equals any NaN).
            Output y{"y", {}, tol::exact, false, true};
            for (uint16_t bits : ty.to_vector<uint16_t>()) y.values.push_back(c.decode(bits));
            return Outputs{y};
          });
        });
  }
  using Widen = void (Backend::*)(const uint16_t*, float*, size_t);
  for (const auto& [op, widen] :
       {std::pair<const char*, Widen>{"convert_bf16_to_f32", &Backend::convert_bf16_to_f32},
        std::pair<const char*, Widen>{"convert_f16_to_f32", &Backend::convert_f16_to_f32}}) {
    add(cases, op, "all 65536 bit patterns", MathMode::f32, tol::exact, [=](Inputs&) {
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(every_16_bit_pattern());
        const Tensor ty = s.upload(std::vector<float>(65536, kNaN));
        (s.backend.*widen)(tx.data<uint16_t>(), ty.data<float>(), 65536);
        Output y = written("y", ty);
        y.allow_nonfinite = true;
        return Outputs{y};
      });
    });
  }
}

// ---- GEMM ---------------------------------------------------------------------------------

struct GemmSpec {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  int pad = 0;  // lda, ldb, ldc exceed the stored rows' lengths by this much
  float alpha = 1.0f, beta = 0.0f;
  int batch = 1;          // > 1: gemm_strided_batched
  int gap = 0;            // elements between consecutive matrices of a batch
  bool shared_b = false;  // stride_b = 0: one B for every matrix of the batch
};

std::string gemm_params(const GemmSpec& g) {
  std::string out = fmt::format("M={} N={} K={} ta={} tb={} pad={} alpha={} beta={}", g.M, g.N, g.K,
                                int(g.trans_a), int(g.trans_b), g.pad, g.alpha, g.beta);
  if (g.batch > 1)
    out += fmt::format(" batch={} gap={}{}", g.batch, g.gap, flag("stride_b=0", g.shared_b));
  return out;
}

// One operand's storage: `rows` stored rows of `cols` values, `ld` apart.
struct Operand {
  int rows, cols, ld;
  int64_t stride;  // between the batch's matrices
  size_t size(int batch) const { return size_t(batch - 1) * stride + size_t(rows) * ld; }
};

void add_gemm_case(std::vector<Case>& cases, const GemmSpec& g, MathMode mode) {
  const Operand a{g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, 0, 0};
  const Operand b{g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, 0, 0};
  auto laid_out = [&](Operand o, bool shared) {
    o.ld = o.cols + g.pad;
    o.stride = shared ? 0 : int64_t(o.rows) * o.ld + g.gap;
    return o;
  };
  const Operand A = laid_out(a, false), B = laid_out(b, g.shared_b),
                C = laid_out(Operand{g.M, g.N, 0, 0}, false);
  const int batch_b = g.shared_b ? 1 : g.batch;
  add_gemm(cases, g.batch > 1 ? "gemm_strided_batched" : "gemm", gemm_params(g), mode,
           [=](Inputs& in) {
             const auto a_host = in.normal(A.size(g.batch)), b_host = in.normal(B.size(batch_b));
             // C: NaN where beta = 0 (it must not be read), random elsewhere and in
             // the padding and gaps, which must come back untouched.
             std::vector<float> c_host = in.normal(C.size(g.batch));
             std::vector<bool> inside(c_host.size(), false);
             for (int m = 0; m < g.batch; ++m)
               for (int r = 0; r < g.M; ++r)
                 for (int c = 0; c < g.N; ++c) inside[m * C.stride + size_t(r) * C.ld + c] = true;
             if (g.beta == 0.0f)
               for (size_t i = 0; i < c_host.size(); ++i)
                 if (inside[i]) c_host[i] = kNaN;
             return Run([=](const Side& s) {
               const Tensor ta = s.upload(a_host), tb = s.upload(b_host), tc = s.upload(c_host);
               if (g.batch > 1) {
                 s.backend.gemm_strided_batched(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha,
                                                ta.data<float>(), A.ld, A.stride, tb.data<float>(),
                                                B.ld, B.stride, g.beta, tc.data<float>(), C.ld,
                                                C.stride, g.batch);
               } else {
                 s.backend.gemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, ta.data<float>(),
                                A.ld, tb.data<float>(), B.ld, g.beta, tc.data<float>(), C.ld);
               }
               const auto all = to_doubles(tc);
               Output result{"C", {}}, outside{"C padding and gaps", {}, tol::exact};
               for (size_t i = 0; i < all.size(); ++i)
                 (inside[i] ? result : outside).values.push_back(all[i]);
               return Outputs{result, outside};
             });
           });
}

void add_gemm_cases(std::vector<Case>& cases) {
  for (MathMode mode : kModes) {
    for (int trans = 0; trans < 4; ++trans) {
      const bool ta = trans & 1, tb = trans & 2;
      for (int pad : {0, 3}) {
        add_gemm_case(cases, {ta, tb, 67, 45, 130, pad, 1.0f, 0.0f}, mode);
        add_gemm_case(cases, {ta, tb, 67, 45, 130, pad, 0.5f, 0.75f}, mode);
      }
      // A larger product (several tiles) and the batched form with gaps.
      add_gemm_case(cases, {ta, tb, 256, 192, 320, 0, 1.0f, 1.0f}, mode);
      add_gemm_case(cases, {ta, tb, 33, 40, 72, 2, 1.0f, 0.0f, 3, 17}, mode);
      add_gemm_case(cases, {ta, tb, 64, 16, 64, 0, 0.125f, 1.0f, 4, 0}, mode);
    }
    add_gemm_case(cases, {false, true, 48, 80, 64, 0, 1.0f, 0.5f, 3, 5, true}, mode);
  }
  // K = 0: C = beta * C, as BLAS defines it (C unread when beta = 0).
  add_gemm_case(cases, {false, false, 5, 7, 0, 1, 1.0f, 0.5f}, MathMode::f32);
  add_gemm_case(cases, {false, false, 5, 7, 0, 1, 1.0f, 0.0f}, MathMode::f32);
}

// ---- GEMM with compact weights ------------------------------------------------------------

// W (N, K) in bf16/f16 bits or int8 with group scales, from normal values.
struct CompactHost {
  kernels::WeightType type;
  int group = 0;
  std::vector<uint16_t> bits;
  std::vector<int8_t> q;
  std::vector<float> scales;
};

CompactHost compact_weights(Inputs& in, kernels::WeightType type, int N, int K, int group) {
  CompactHost w{type, group, {}, {}, {}};
  const std::vector<float> values = in.normal(size_t(N) * K, 0.05f);
  if (type == kernels::WeightType::i8) {
    const auto q = in.integers(values.size(), -127, 128);
    w.q.assign(q.begin(), q.end());
    w.scales = in.normal(size_t(N) * (K / group), 1e-3f, 4e-3f);
  } else {
    for (float v : values)
      w.bits.push_back(type == kernels::WeightType::bf16 ? kernels::f32_to_bf16(v) : [&] {
        const _Float16 h = static_cast<_Float16>(v);
        uint16_t b;
        std::memcpy(&b, &h, 2);
        return b;
      }());
  }
  return w;
}

// Decoding (M <= 4: widened in the inner loop) and prefill (panels) shapes,
// K with and without a tail of fewer than 8, padded x and y, accumulation,
// per-channel and grouped int8 scales. The products are exact in f32 on both
// sides (16-bit and 8-bit values times f32); only the order of the f32 sums
// differs (and int8's scale, applied per group on the CPU and per weight on
// CUDA), so the f32 GEMM tolerance holds. The math mode must not apply.
void add_gemm_compact_cases(std::vector<Case>& cases) {
  using kernels::WeightType;
  struct Shape {
    int M, N, K, pad;
    bool accumulate;
  };
  for (WeightType type : {WeightType::bf16, WeightType::f16, WeightType::i8}) {
    for (const Shape& sh :
         {Shape{1, 301, 131, 0, false}, Shape{3, 64, 256, 5, true}, Shape{4, 130, 72, 0, false},
          Shape{37, 300, 192, 3, false}, Shape{70, 96, 128, 0, true}}) {
      std::vector<int> groups = {0};                // no scales
      if (type == WeightType::i8) groups = {sh.K};  // one scale per output channel
      if (type == WeightType::i8 && sh.K % 64 == 0 && sh.K > 64) groups.push_back(64);
      for (int group : groups) {
        for (MathMode mode : {MathMode::f32, MathMode::bf16}) {
          if (mode != MathMode::f32 && sh.M != 37) continue;
          add(cases, "gemm_compact",
              fmt::format("{} M={} N={} K={} pad={}{}{}", kernels::weight_type_name(type), sh.M,
                          sh.N, sh.K, sh.pad, group ? fmt::format(" group={}", group) : "",
                          flag("accumulate", sh.accumulate)),
              mode, tol::gemm(MathMode::f32), [=](Inputs& in) {
                const int ldx = sh.K + sh.pad, ldy = sh.N + sh.pad;
                const auto x = in.normal(size_t(sh.M) * ldx);
                const CompactHost w = compact_weights(in, type, sh.N, sh.K, group);
                const auto y0 = initial(in, size_t(sh.M) * ldy, sh.accumulate);
                return Run([=](const Side& s) {
                  const Tensor tx = s.upload(x), ty = s.upload(y0);
                  const Tensor data = type == WeightType::i8 ? s.upload(w.q) : s.upload(w.bits);
                  const Tensor scales =
                      s.upload(w.scales.empty() ? std::vector<float>{0.0f} : w.scales);
                  kernels::CompactWeight cw{type, data.raw_data(),
                                            type == WeightType::i8 ? scales.data<float>() : nullptr,
                                            group};
                  s.backend.gemm_compact(sh.M, sh.N, sh.K, tx.data<float>(), ldx, cw,
                                         ty.data<float>(), ldy, sh.accumulate);
                  // Only the (M, N) block: the padding keeps y0's values (NaN or random).
                  const auto all = to_doubles(ty);
                  Output block{"y", {}}, padding{"y padding", {}, tol::exact, false, true};
                  for (int m = 0; m < sh.M; ++m)
                    for (int c = 0; c < ldy; ++c) {
                      const size_t i = size_t(m) * ldy + c;
                      (c < sh.N ? block : padding)
                          .values.push_back(c < sh.N && sh.accumulate ? all[i] - y0[i] : all[i]);
                    }
                  return Outputs{block, padding};
                });
              });
        }
      }
    }
  }
}

// ---- elementwise ------------------------------------------------------------------------

void add_elementwise_cases(std::vector<Case>& cases) {
  const size_t n = 100003;
  enum class Alias { none, a, b };
  for (Alias alias : {Alias::none, Alias::a, Alias::b}) {
    const char* where = alias == Alias::none ? "y separate" : alias == Alias::a ? "y = a" : "y = b";
    add(cases, "add", fmt::format("n={} alpha=0.75 beta=-1.25 {}", n, where), MathMode::f32,
        tol::rounding, [=](Inputs& in) {
          const auto a = in.normal(n), b = in.normal(n, 2.0f);
          const auto y0 = initial(in, n, false);
          return Run([=](const Side& s) {
            const Tensor ta = s.upload(a), tb = s.upload(b), ty = s.upload(y0);
            float* y = alias == Alias::a   ? ta.data<float>()
                       : alias == Alias::b ? tb.data<float>()
                                           : ty.data<float>();
            s.backend.add(ta.data<float>(), tb.data<float>(), y, n, 0.75f, -1.25f);
            const Tensor& out = alias == Alias::a ? ta : alias == Alias::b ? tb : ty;
            return Outputs{written("y", out)};
          });
        });
  }
  for (bool acc : {false, true}) {
    add(cases, "scale", fmt::format("n={} alpha=-0.3{}", n, flag("accumulate", acc)), MathMode::f32,
        tol::rounding, [=](Inputs& in) {
          const auto x = in.normal(n), y0 = initial(in, n, acc);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), ty = s.upload(y0);
            s.backend.scale(tx.data<float>(), ty.data<float>(), n, -0.3f, acc);
            return Outputs{result("y", ty, y0, acc)};
          });
        });
  }
  for (auto [rows, cols] : {std::pair{37, 1000}, std::pair{256, 768}}) {
    add(cases, "add_bias", fmt::format("rows={} cols={}", rows, cols), MathMode::f32, tol::rounding,
        [=](Inputs& in) {
          const auto y0 = in.normal(size_t(rows) * cols), bias = in.normal(cols, 0.5f);
          return Run([=](const Side& s) {
            const Tensor ty = s.upload(y0), tb = s.upload(bias);
            s.backend.add_bias(ty.data<float>(), tb.data<float>(), rows, cols);
            return Outputs{result("y", ty, y0, true)};
          });
        });
    for (bool acc : {false, true}) {
      cases.push_back(
          {"bias_backward", fmt::format("rows={} cols={}{}", rows, cols, flag("accumulate", acc)),
           MathMode::f32, tol::reduction, [=](Inputs& in) {
             const auto dy = in.normal(size_t(rows) * cols), db0 = initial(in, cols, acc);
             return Run([=](const Side& s) {
               const Tensor tdy = s.upload(dy), tdb = s.upload(db0);
               s.backend.bias_backward(tdy.data<float>(), tdb.data<float>(), rows, cols, acc);
               return Outputs{result("dbias", tdb, db0, acc)};
             });
           }});
    }
  }
  // Sums return doubles: the contract is accumulation in double.
  using Reduce = double (Backend::*)(const float*, size_t);
  for (const auto& [op, reduce] :
       {std::pair<const char*, Reduce>{"sum", &Backend::sum},
        std::pair<const char*, Reduce>{"sum_squares", &Backend::sum_squares}}) {
    for (size_t count : {size_t(1), size_t(33), (size_t(1) << 20) + 7}) {
      for (float mean : {0.0f, 0.25f}) {
        cases.push_back(
            {op, fmt::format("n={} mean={}", count, mean), MathMode::f32, tol::reduction,
             [=](Inputs& in) {
               const auto x = in.normal(count, 1.0f, mean);
               return Run([=](const Side& s) {
                 const Tensor tx = s.upload(x);
                 return Outputs{{"result", {(s.backend.*reduce)(tx.data<float>(), count)}}};
               });
             }});
      }
    }
  }
  cases.push_back(
      {"gelu_forward", fmt::format("n={}", n), MathMode::f32, tol::transcendental, [=](Inputs& in) {
         const auto x = in.normal(n, 3.0f), y0 = initial(in, n, false);
         return Run([=](const Side& s) {
           const Tensor tx = s.upload(x), ty = s.upload(y0);
           s.backend.gelu_forward(tx.data<float>(), ty.data<float>(), n);
           return Outputs{written("y", ty)};
         });
       }});
  for (bool acc : {false, true}) {
    add(cases, "gelu_backward", fmt::format("n={}{}", n, flag("accumulate", acc)), MathMode::f32,
        tol::transcendental, [=](Inputs& in) {
          const auto x = in.normal(n, 3.0f), dy = in.normal(n), dx0 = initial(in, n, acc);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), tdy = s.upload(dy), tdx = s.upload(dx0);
            s.backend.gelu_backward(tx.data<float>(), tdy.data<float>(), tdx.data<float>(), n, acc);
            return Outputs{result("dx", tdx, dx0, acc)};
          });
        });
  }
}

// ---- dropout, AdamW, loss-scale check -------------------------------------------------------

void add_dropout_cases(std::vector<Case>& cases) {
  struct Rng {
    float p;
    uint64_t seed, stream, offset;
    size_t n;
  };
  // Offsets not a multiple of 4 and a stream above 2^32 exercise the counter's
  // high words and the four-lanes-per-call split.
  for (const Rng& r : {Rng{0.1f, 1234, 7, 0, 100003},
                       Rng{0.5f, 0x5eedd50u, (uint64_t(3) << 40) | 5, 12345, 65537}}) {
    const std::string rng = fmt::format("n={} p={} seed={:#x} stream={:#x} offset={}", r.n, r.p,
                                        r.seed, r.stream, r.offset);
    add(cases, "dropout_forward", rng, MathMode::f32, tol::rounding, [=](Inputs& in) {
      const auto x = in.normal(r.n), y0 = initial(in, r.n, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), ty = s.upload(y0);
        s.backend.dropout_forward(tx.data<float>(), ty.data<float>(), r.n, r.p, r.seed, r.stream,
                                  r.offset);
        Output y = written("y", ty);
        y.zero_pattern = true;  // the mask must be the CPU's, element for element
        return Outputs{y};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "dropout_backward", rng + flag("accumulate", acc), MathMode::f32, tol::rounding,
          [=](Inputs& in) {
            const auto dy = in.normal(r.n), dx0 = initial(in, r.n, acc);
            return Run([=](const Side& s) {
              const Tensor tdy = s.upload(dy), tdx = s.upload(dx0);
              s.backend.dropout_backward(tdy.data<float>(), tdx.data<float>(), r.n, r.p, r.seed,
                                         r.stream, r.offset, acc);
              Output dx = result("dx", tdx, dx0, acc);
              dx.zero_pattern = true;
              return Outputs{dx};
            });
          });
    }
  }
}

void add_optimizer_cases(std::vector<Case>& cases) {
  const size_t n = 100003;
  // Step 3 of AdamW with gradients ~1e-3, so eps = 1e-6 is visible next to sqrt(v).
  const float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-6f, wd = 0.1f;
  const float bc1 = 1.0f - std::pow(beta1, 3.0f), bc2 = 1.0f - std::pow(beta2, 3.0f);
  cases.push_back(
      {"adamw_step",
       fmt::format("n={} lr={} betas=({}, {}) eps={} wd={} step=3", n, lr, beta1, beta2, eps, wd),
       MathMode::f32, tol::rounding, [=](Inputs& in) {
         const auto param = in.normal(n), grad = in.normal(n, 1e-3f), m = in.normal(n, 1e-3f);
         auto v = in.normal(n, 1e-3f);
         for (float& x : v) x *= x;
         return Run([=](const Side& s) {
           const Tensor tp = s.upload(param), tg = s.upload(grad), tm = s.upload(m),
                        tv = s.upload(v);
           s.backend.adamw_step(tp.data<float>(), tg.data<float>(), tm.data<float>(),
                                tv.data<float>(), n, lr, beta1, beta2, eps, wd, bc1, bc2);
           // The update is ~lr |p|: compared as new - old, with its own threshold.
           Output update = result("param update", tp, param, true);
           update.max_nmse = tol::adamw_update;
           return Outputs{update, written("m", tm), written("v", tv)};
         });
       }});
}

void add_loss_scale_cases(std::vector<Case>& cases) {
  struct Check {
    size_t n;
    float alpha;
    size_t bad_at;  // index of the non-finite element, or n for none
    float bad;
  };
  const size_t big = (size_t(1) << 20) + 5;
  for (const Check& c : {Check{big, 1.0f / 65536, big, 0}, Check{1000, 0.37f, 1000, 0},
                         Check{big, 1.0f / 1024, big - 1, kInf}, Check{4099, 0.5f, 2050, kNaN},
                         Check{33, 2.0f, 0, -kInf}}) {
    const std::string params =
        c.bad_at == c.n ? fmt::format("n={} alpha={} all finite", c.n, c.alpha)
                        : fmt::format("n={} alpha={} x[{}]={}", c.n, c.alpha, c.bad_at, c.bad);
    add(cases, "unscale_and_check", params, MathMode::f32, tol::exact, [=](Inputs& in) {
      auto x = in.normal(c.n, 100.0f);
      if (c.bad_at < c.n) x[c.bad_at] = c.bad;
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x);
        const bool finite = s.backend.unscale_and_check(tx.data<float>(), c.n, c.alpha);
        Output scaled = written("x", tx);
        scaled.allow_nonfinite = c.bad_at < c.n;
        return Outputs{{"all finite", {finite ? 1.0 : 0.0}}, scaled};
      });
    });
  }
}

// ---- rows: LayerNorm, softmax, cross entropy, embedding -------------------------------------

void add_layer_norm_cases(std::vector<Case>& cases) {
  const float eps = 1e-5f;
  for (auto [rows, cols] : {std::pair{64, 1024}, std::pair{37, 100}, std::pair{4, 4096}}) {
    const std::string shape = fmt::format("rows={} cols={} eps={}", rows, cols, eps);
    const size_t n = size_t(rows) * cols;
    auto draw = [=](Inputs& in) {
      return std::array{in.normal(n, 2.0f, 0.5f), in.normal(cols, 0.1f, 1.0f),
                        in.normal(cols, 0.1f)};
    };
    cases.push_back(
        {"layer_norm_forward", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
           const auto [x, w, b] = draw(in);
           return Run([=](const Side& s) {
             const Tensor tx = s.upload(x), tw = s.upload(w), tb = s.upload(b);
             const Tensor ty = s.upload(poison(n)), tm = s.upload(poison(rows)),
                          tr = s.upload(poison(rows));
             s.backend.layer_norm_forward(tx.data<float>(), tw.data<float>(), tb.data<float>(),
                                          ty.data<float>(), tm.data<float>(), tr.data<float>(),
                                          rows, cols, eps);
             return Outputs{written("y", ty), written("mean", tm), written("rstd", tr)};
           });
         }});
    for (auto [acc_dx, acc_params] : {std::pair{false, false}, std::pair{true, true},
                                      std::pair{true, false}, std::pair{false, true}}) {
      cases.push_back(
          {"layer_norm_backward",
           shape + flag("accumulate_dx", acc_dx) + flag("accumulate_params", acc_params),
           MathMode::f32, tol::transcendental, [=](Inputs& in) {
             const auto [x, w, b] = draw(in);
             // mean and rstd as the CPU's forward saves them.
             std::vector<float> y(n), mean(rows), rstd(rows);
             kernels::cpu_backend().layer_norm_forward(x.data(), w.data(), b.data(), y.data(),
                                                       mean.data(), rstd.data(), rows, cols, eps);
             const auto dy = in.normal(n), dx0 = initial(in, n, acc_dx),
                        dw0 = initial(in, cols, acc_params), db0 = initial(in, cols, acc_params);
             return Run([=](const Side& s) {
               const Tensor tx = s.upload(x), tw = s.upload(w), tm = s.upload(mean),
                            tr = s.upload(rstd), tdy = s.upload(dy), tdx = s.upload(dx0),
                            tdw = s.upload(dw0), tdb = s.upload(db0);
               s.backend.layer_norm_backward(tx.data<float>(), tw.data<float>(), tm.data<float>(),
                                             tr.data<float>(), tdy.data<float>(), tdx.data<float>(),
                                             tdw.data<float>(), tdb.data<float>(), rows, cols,
                                             acc_dx, acc_params);
               return Outputs{result("dx", tdx, dx0, acc_dx),
                              result("dweight", tdw, dw0, acc_params),
                              result("dbias", tdb, db0, acc_params)};
             });
           }});
    }
  }
}

void add_softmax_cases(std::vector<Case>& cases) {
  for (auto [rows, cols] : {std::pair{64, 1000}, std::pair{4, 50257}, std::pair{128, 33}}) {
    const std::string shape = fmt::format("rows={} cols={}", rows, cols);
    const size_t n = size_t(rows) * cols;
    add(cases, "softmax_forward", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
      const auto x = in.normal(n, 3.0f), y0 = initial(in, n, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), ty = s.upload(y0);
        s.backend.softmax_forward(tx.data<float>(), ty.data<float>(), rows, cols);
        return Outputs{written("y", ty)};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "softmax_backward", shape + flag("accumulate", acc), MathMode::f32,
          tol::transcendental, [=](Inputs& in) {
            const auto x = in.normal(n, 3.0f);
            std::vector<float> y(n);
            kernels::cpu_backend().softmax_forward(x.data(), y.data(), rows, cols);
            const auto dy = in.normal(n), dx0 = initial(in, n, acc);
            return Run([=](const Side& s) {
              const Tensor ty = s.upload(y), tdy = s.upload(dy), tdx = s.upload(dx0);
              s.backend.softmax_backward(ty.data<float>(), tdy.data<float>(), tdx.data<float>(),
                                         rows, cols, acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
    }
  }
}

void add_cross_entropy_cases(std::vector<Case>& cases) {
  const int64_t ignore = -100;
  // GPT-2's and BLOOM's vocabularies, with few rows; and many short rows.
  for (auto [rows, vocab] : {std::pair{64, 1000}, std::pair{8, 50257}, std::pair{4, 250880}}) {
    const std::string shape =
        fmt::format("rows={} vocab={} ignore_index={} (2 rows ignored)", rows, vocab, ignore);
    const size_t n = size_t(rows) * vocab;
    auto draw = [=](Inputs& in) {
      auto logits = in.normal(n, 2.0f);
      auto targets = in.integers(rows, 0, vocab);
      targets[0] = vocab - 1;  // the last column
      targets[1] = ignore;
      targets[rows - 1] = ignore;
      if (rows > 3) targets[2] = 0;
      return std::pair{logits, targets};
    };
    cases.push_back(
        {"cross_entropy_forward", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
           const auto [logits, targets] = draw(in);
           return Run([=](const Side& s) {
             const Tensor tl = s.upload(logits), tt = s.upload(targets);
             const Tensor losses = s.upload(poison(rows)), lse = s.upload(poison(rows));
             s.backend.cross_entropy_forward(tl.data<float>(), tt.data<int64_t>(),
                                             losses.data<float>(), lse.data<float>(), rows, vocab,
                                             ignore);
             return Outputs{written("losses", losses), written("lse", lse)};
           });
         }});
    for (bool acc : {false, true}) {
      add(cases, "cross_entropy_backward", shape + " dloss=0.37" + flag("accumulate", acc),
          MathMode::f32, tol::transcendental, [=](Inputs& in) {
            const auto [logits, targets] = draw(in);
            std::vector<float> losses(rows), lse(rows);
            kernels::cpu_backend().cross_entropy_forward(
                logits.data(), targets.data(), losses.data(), lse.data(), rows, vocab, ignore);
            const auto d0 = initial(in, n, acc);
            return Run([=](const Side& s) {
              const Tensor tl = s.upload(logits), tt = s.upload(targets), tlse = s.upload(lse),
                           td = s.upload(d0);
              s.backend.cross_entropy_backward(tl.data<float>(), tt.data<int64_t>(),
                                               tlse.data<float>(), 0.37f, td.data<float>(), rows,
                                               vocab, ignore, acc);
              return Outputs{result("dlogits", td, d0, acc)};
            });
          });
    }
  }
}

void add_embedding_cases(std::vector<Case>& cases) {
  for (auto [vocab, dim, n] : {std::tuple{1000, 96, 256}, std::tuple{5003, 130, 300}}) {
    const std::string shape =
        fmt::format("vocab={} dim={} ids={} (half of them among 40 ids)", vocab, dim, n);
    // Repeated ids: the backward's scatter-add must sum them.
    auto ids_of = [=](Inputs& in) {
      auto ids = in.integers(n, 0, vocab);
      const auto few = in.integers(n / 2, 0, 40);
      std::copy(few.begin(), few.end(), ids.begin());
      ids[n - 1] = vocab - 1;
      return ids;
    };
    add(cases, "embedding_forward", shape, MathMode::f32, tol::exact, [=](Inputs& in) {
      const auto ids = ids_of(in);
      const auto table = in.normal(size_t(vocab) * dim), out0 = initial(in, size_t(n) * dim, false);
      return Run([=](const Side& s) {
        const Tensor ti = s.upload(ids), tt = s.upload(table), to = s.upload(out0);
        s.backend.embedding_forward(ti.data<int64_t>(), tt.data<float>(), to.data<float>(), n,
                                    vocab, dim);
        return Outputs{written("out", to)};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "embedding_backward", shape + flag("accumulate", acc), MathMode::f32,
          tol::rounding, [=](Inputs& in) {
            const auto ids = ids_of(in);
            const auto dout = in.normal(size_t(n) * dim),
                       d0 = initial(in, size_t(vocab) * dim, acc);
            return Run([=](const Side& s) {
              const Tensor ti = s.upload(ids), tdo = s.upload(dout), td = s.upload(d0);
              s.backend.embedding_backward(ti.data<int64_t>(), tdo.data<float>(), td.data<float>(),
                                           n, vocab, dim, acc);
              return Outputs{result("dtable", td, d0, acc)};
            });
          });
    }
  }
}

// ---- gather/scatter and head layouts ----------------------------------------------------------

void add_row_cases(std::vector<Case>& cases) {
  const int B = 3, T = 50, K = 20, C = 96;
  const std::string shape = fmt::format("B={} T={} picked={} C={}", B, T, K, C);
  const size_t full = size_t(B) * T * C, part = size_t(B) * K * C;
  for (bool acc : {false, true}) {
    add(cases, "gather_rows", shape + flag("accumulate", acc), MathMode::f32, tol::exact,
        [=](Inputs& in) {
          const auto x = in.normal(full), y0 = initial(in, part, acc);
          const auto index = in.distinct(B, T, K);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), ti = s.upload(index), ty = s.upload(y0);
            s.backend.gather_rows(tx.data<float>(), ti.data<int64_t>(), ty.data<float>(), B, T, K,
                                  C, acc);
            return Outputs{result("y", ty, y0, acc)};
          });
        });
    // Rows not picked keep their contents: y starts random either way.
    add(cases, "scatter_rows", shape + flag("accumulate", acc), MathMode::f32, tol::exact,
        [=](Inputs& in) {
          const auto src = in.normal(part), y0 = in.normal(full);
          const auto index = in.distinct(B, T, K);
          return Run([=](const Side& s) {
            const Tensor tsrc = s.upload(src), ti = s.upload(index), ty = s.upload(y0);
            s.backend.scatter_rows(tsrc.data<float>(), ti.data<int64_t>(), ty.data<float>(), B, T,
                                   K, C, acc);
            return Outputs{written("y", ty)};
          });
        });
  }
  add(cases, "zero_rows", shape, MathMode::f32, tol::exact, [=](Inputs& in) {
    const auto y0 = in.normal(full);
    const auto index = in.distinct(B, T, K);
    return Run([=](const Side& s) {
      const Tensor ti = s.upload(index), ty = s.upload(y0);
      s.backend.zero_rows(ty.data<float>(), ti.data<int64_t>(), B, T, K, C);
      return Outputs{written("y", ty)};
    });
  });
}

void add_layout_cases(std::vector<Case>& cases) {
  for (auto [B, T, H, D] : {std::tuple{2, 37, 6, 64}, std::tuple{3, 16, 4, 8}}) {
    const std::string shape = fmt::format("B={} T={} H={} D={}", B, T, H, D);
    const size_t part = size_t(B) * T * H * D;
    add(cases, "split_qkv", shape, MathMode::f32, tol::exact, [=](Inputs& in) {
      const auto qkv = in.normal(3 * part);
      return Run([=](const Side& s) {
        const Tensor tqkv = s.upload(qkv), q = s.upload(poison(part)), k = s.upload(poison(part)),
                     v = s.upload(poison(part));
        s.backend.split_qkv(tqkv.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
                            B, T, H, D);
        return Outputs{written("q", q), written("k", k), written("v", v)};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "merge_qkv", shape + flag("accumulate", acc), MathMode::f32, tol::exact,
          [=](Inputs& in) {
            const auto dq = in.normal(part), dk = in.normal(part), dv = in.normal(part),
                       d0 = initial(in, 3 * part, acc);
            return Run([=](const Side& s) {
              const Tensor tq = s.upload(dq), tk = s.upload(dk), tv = s.upload(dv),
                           td = s.upload(d0);
              s.backend.merge_qkv(tq.data<float>(), tk.data<float>(), tv.data<float>(),
                                  td.data<float>(), B, T, H, D, acc);
              return Outputs{result("dqkv", td, d0, acc)};
            });
          });
      using Permute = void (Backend::*)(const float*, float*, int, int, int, int, bool);
      for (const auto& [op, permute] :
           {std::pair<const char*, Permute>{"merge_heads", &Backend::merge_heads},
            std::pair<const char*, Permute>{"split_heads", &Backend::split_heads}}) {
        cases.push_back(
            {op, shape + flag("accumulate", acc), MathMode::f32, tol::exact, [=](Inputs& in) {
               const auto x = in.normal(part), y0 = initial(in, part, acc);
               return Run([=](const Side& s) {
                 const Tensor tx = s.upload(x), ty = s.upload(y0);
                 (s.backend.*permute)(tx.data<float>(), ty.data<float>(), B, H, T, D, acc);
                 return Outputs{result("y", ty, y0, acc)};
               });
             }});
      }
    }
  }
}

// ---- attention ----------------------------------------------------------------------------

enum class Mask { none, shared, per_batch, hidden_rows };

struct AttentionSpec {
  int B, H, Tq, Tk, D;
  bool causal = false, alibi = false;
  Mask mask = Mask::none;
  bool positions = false;
};

std::string attention_params(const AttentionSpec& a) {
  static const char* mask_names[] = {"", " mask=shared", " mask=per-batch",
                                     " mask=shared with hidden rows"};
  return fmt::format("B={} H={} Tq={} Tk={} D={}{}{}{}{}", a.B, a.H, a.Tq, a.Tk, a.D,
                     flag("causal", a.causal), flag("alibi", a.alibi),
                     mask_names[static_cast<int>(a.mask)], flag("positions", a.positions));
}

// An attention problem's host data; the shape's pointers are set per side.
struct AttentionProblem {
  AttentionSpec spec;
  std::vector<float> q, k, v, slopes;
  std::vector<uint8_t> mask;
  std::vector<int64_t> positions;

  AttentionProblem(const AttentionSpec& a, Inputs& in) : spec(a) {
    const size_t q_size = size_t(a.B) * a.H * a.Tq * a.D, kv_size = size_t(a.B) * a.H * a.Tk * a.D;
    q = in.normal(q_size, 1.5f);  // scores with std ~1.5: rows whose max moves between key blocks
    k = in.normal(kv_size);
    v = in.normal(kv_size);
    if (a.alibi) slopes = ops::alibi_slopes(a.H);
    if (a.mask != Mask::none) {
      const int planes = a.mask == Mask::per_batch ? a.B : 1;
      mask = in.bits(size_t(planes) * a.Tq * a.Tk, 0.75f);
      // Each query keeps its own position's key, so no row is hidden by chance.
      for (int p = 0; p < planes; ++p)
        for (int i = 0; i < a.Tq; ++i) mask[(size_t(p) * a.Tq + i) * a.Tk + (a.Tk - a.Tq + i)] = 1;
      if (a.mask == Mask::hidden_rows) {  // every key hidden: zeros out, lse = -inf
        for (int row : {0, a.Tq / 2}) std::fill_n(&mask[size_t(row) * a.Tk], a.Tk, 0);
        std::fill_n(&mask[size_t(1) * a.Tk], a.Tk, 0);
        mask[size_t(1) * a.Tk] = 1;  // and a row that sees one key
      }
    }
    if (a.positions) {  // the kept tokens of sequences twice as long, in order
      positions = in.distinct(a.B, 2 * a.Tq, a.Tq);
      for (int b = 0; b < a.B; ++b)
        std::sort(positions.begin() + size_t(b) * a.Tq, positions.begin() + size_t(b + 1) * a.Tq);
    }
  }

  // The shape with mask and positions at the given (side's) addresses.
  AttentionShape shape(const uint8_t* mask_ptr, const int64_t* positions_ptr) const {
    AttentionShape s;
    s.batch = spec.B;
    s.heads = spec.H;
    s.seq_q = spec.Tq;
    s.seq_k = spec.Tk;
    s.head_dim = spec.D;
    s.scale = 1.0f / std::sqrt(float(spec.D));
    s.causal = spec.causal;
    s.alibi_slopes = slopes.empty() ? nullptr : slopes.data();  // host memory on every backend
    s.mask = mask.empty() ? nullptr : mask_ptr;
    s.mask_per_batch = spec.mask == Mask::per_batch;
    s.positions = positions.empty() ? nullptr : positions_ptr;
    return s;
  }
  size_t q_size() const { return q.size(); }
  size_t kv_size() const { return k.size(); }
  size_t rows() const { return size_t(spec.B) * spec.H * spec.Tq; }
};

// Mask and positions in a side's memory (empty tensors when unused).
struct AttentionSideData {
  Tensor mask, positions;
  AttentionSideData(const AttentionProblem& p, const Side& s) {
    if (!p.mask.empty()) mask = s.upload(p.mask);
    if (!p.positions.empty()) positions = s.upload(p.positions);
  }
  AttentionShape shape(const AttentionProblem& p) const {
    return p.shape(mask.defined() ? mask.data<uint8_t>() : nullptr,
                   positions.defined() ? positions.data<int64_t>() : nullptr);
  }
};

void add_attention_cases(std::vector<Case>& cases) {
  const AttentionSpec specs[] = {
      {2, 3, 64, 64, 64, true},
      {2, 6, 80, 80, 64, true, true},  // BLOOM's slopes for a head count not a power of two
      {1, 4, 32, 96, 128, false},
      {2, 2, 40, 100, 8, true, true},  // causal with Tq < Tk: queries sit at the end
      {2, 3, 48, 72, 64, false, true, Mask::shared},
      {3, 2, 64, 64, 128, true, true, Mask::per_batch},
      {2, 4, 48, 48, 64, true, true, Mask::none, true},
      {2, 2, 40, 40, 8, true, true, Mask::per_batch, true},
      {1, 2, 1, 33, 64, true, true},      // one query: a generation step
      {1, 2, 256, 256, 128, true, true},  // several key blocks per query block
      {2, 2, 24, 24, 8, true, false, Mask::hidden_rows},
  };
  for (const AttentionSpec& a : specs) {
    for (MathMode mode : kModes) {
      const bool hidden = a.mask == Mask::hidden_rows;
      cases.push_back(
          {"attention_forward", attention_params(a), mode, tol::attention(mode, false),
           [=](Inputs& in) {
             const AttentionProblem p(a, in);
             return Run([=](const Side& s) {
               const AttentionSideData d(p, s);
               const Tensor q = s.upload(p.q), k = s.upload(p.k), v = s.upload(p.v);
               const Tensor out = s.upload(poison(p.q_size())), lse = s.upload(poison(p.rows()));
               s.backend.attention_forward(d.shape(p), q.data<float>(), k.data<float>(),
                                           v.data<float>(), out.data<float>(), lse.data<float>());
               Output lse_out = written("lse", lse);
               lse_out.allow_nonfinite = hidden;
               return Outputs{written("out", out), lse_out};
             });
           }});
      // The same keys and values read in place from a KV cache: planes of
      // T_max = Tk + 11 rows whose unused rows are NaN (a read past Tk shows).
      if (!a.positions && (a.Tq == 1 || a.Tq < a.Tk)) {
        cases.push_back(
            {"attention_forward", attention_params(a) + " kv cache T_max=Tk+11", mode,
             tol::attention(mode, false), [=](Inputs& in) {
               const AttentionProblem p(a, in);
               const int t_max = a.Tk + 11, D = a.D;
               const size_t plane = size_t(a.Tk) * D, cache_plane = size_t(t_max) * D;
               std::vector<float> k_cache(size_t(a.B) * a.H * cache_plane, kNaN), v_cache = k_cache;
               for (size_t bh = 0; bh < size_t(a.B) * a.H; ++bh)
                 for (size_t i = 0; i < plane; ++i) {
                   k_cache[bh * cache_plane + i] = p.k[bh * plane + i];
                   v_cache[bh * cache_plane + i] = p.v[bh * plane + i];
                 }
               return Run([=](const Side& s) {
                 const AttentionSideData d(p, s);
                 const Tensor q = s.upload(p.q), k = s.upload(k_cache), v = s.upload(v_cache);
                 const Tensor out = s.upload(poison(p.q_size())), lse = s.upload(poison(p.rows()));
                 AttentionShape shape = d.shape(p);
                 shape.kv_stride = int64_t(cache_plane);
                 s.backend.attention_forward(shape, q.data<float>(), k.data<float>(),
                                             v.data<float>(), out.data<float>(), lse.data<float>());
                 return Outputs{written("out", out), written("lse", lse)};
               });
             }});
      }
      for (bool acc : {false, true}) {
        cases.push_back(
            {"attention_backward", attention_params(a) + flag("accumulate", acc), mode,
             tol::attention(mode, true), [=](Inputs& in) {
               const AttentionProblem p(a, in);
               // out and lse from the CPU's forward in the same mode.
               std::vector<float> out(p.q_size()), lse(p.rows());
               {
                 kernels::MathModeGuard guard(kernels::cpu_backend(), mode);
                 kernels::cpu_backend().attention_forward(
                     p.shape(p.mask.data(), p.positions.data()), p.q.data(), p.k.data(), p.v.data(),
                     out.data(), lse.data());
               }
               const auto dout = in.normal(p.q_size()), dq0 = initial(in, p.q_size(), acc),
                          dk0 = initial(in, p.kv_size(), acc), dv0 = initial(in, p.kv_size(), acc);
               return Run([=](const Side& s) {
                 const AttentionSideData d(p, s);
                 const Tensor q = s.upload(p.q), k = s.upload(p.k), v = s.upload(p.v),
                              to = s.upload(out), tl = s.upload(lse), tdo = s.upload(dout),
                              dq = s.upload(dq0), dk = s.upload(dk0), dv = s.upload(dv0);
                 s.backend.attention_backward(d.shape(p), q.data<float>(), k.data<float>(),
                                              v.data<float>(), to.data<float>(), tl.data<float>(),
                                              tdo.data<float>(), dq.data<float>(), dk.data<float>(),
                                              dv.data<float>(), acc);
                 return Outputs{result("dq", dq, dq0, acc), result("dk", dk, dk0, acc),
                                result("dv", dv, dv0, acc)};
               });
             }});
      }
    }
  }
}

// ---- PPO and image-model kernels (issue 12) ---------------------------------------------
// Tolerances: selections and data movement (relu, clamp, minimum/maximum,
// copies, im2col, max pooling and its argmax) are bit-identical; the
// backward gathers of col2im and pooling add the same values in the same
// order on both sides (kernels/window2d.hpp), so they are exact too except
// where a product meets an add (avg pooling's 1/k^2, accumulate), which nvcc
// may fuse into an FMA: tol::rounding. exp/log per element and log_softmax's
// rows are tol::transcendental, as softmax; reduce_sum adds in double in a
// different order, then rounds once to f32: tol::reduction.

void add_pointwise_cases(std::vector<Case>& cases) {
  const size_t n = 100003;
  using kernels::BinaryOp;
  using kernels::Broadcast;
  using kernels::UnaryOp;
  for (UnaryOp op :
       {UnaryOp::exp, UnaryOp::log, UnaryOp::relu, UnaryOp::clamp, UnaryOp::log_sigmoid}) {
    const bool selects = op == UnaryOp::relu || op == UnaryOp::clamp;
    const float lo = -0.5f, hi = 1.25f;
    auto draw = [=](Inputs& in) {
      auto x = in.normal(n, 2.0f);
      if (op == UnaryOp::log)
        for (float& v : x) v = std::abs(v);
      if (op == UnaryOp::clamp) {  // the inclusive edges
        x[0] = lo;
        x[1] = hi;
      }
      return x;
    };
    const std::string params = fmt::format("{} n={}{}", kernels::unary_op_name(op), n,
                                           op == UnaryOp::clamp ? " [-0.5, 1.25]" : "");
    add(cases, "unary_forward", params, MathMode::f32, selects ? tol::exact : tol::transcendental,
        [=](Inputs& in) {
          const auto x = draw(in), y0 = initial(in, n, false);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), ty = s.upload(y0);
            s.backend.unary_forward(op, tx.data<float>(), ty.data<float>(), n, lo, hi);
            return Outputs{written("y", ty)};
          });
        });
    for (bool acc : {false, true}) {
      add(cases, "unary_backward", params + flag("accumulate", acc), MathMode::f32, tol::rounding,
          [=](Inputs& in) {
            const auto x = draw(in), dy = in.normal(n), dx0 = initial(in, n, acc);
            std::vector<float> y(n);
            kernels::cpu_backend().unary_forward(op, x.data(), y.data(), n, lo, hi);
            return Run([=](const Side& s) {
              const Tensor tx = s.upload(x), ty = s.upload(y), tdy = s.upload(dy),
                           tdx = s.upload(dx0);
              s.backend.unary_backward(op, tx.data<float>(), ty.data<float>(), tdy.data<float>(),
                                       tdx.data<float>(), n, lo, hi, acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
    }
  }
  // Same shape, a trailing operand, a per-row (keepdim) one, a per-channel one.
  const Broadcast shapes[] = {{1, 100003, 1}, {300, 97, 1}, {1, 300, 97}, {4, 16, 49}};
  for (BinaryOp op : {BinaryOp::mul, BinaryOp::minimum, BinaryOp::maximum}) {
    for (const Broadcast& b : shapes) {
      const std::string params = fmt::format("{} outer={} mid={} inner={}",
                                             kernels::binary_op_name(op), b.outer, b.mid, b.inner);
      // Ties (a == b) every 7th element: minimum/maximum split the gradient there.
      auto draw = [=](Inputs& in) {
        auto a = in.normal(b.numel());
        const auto small = in.normal(size_t(b.mid));
        for (size_t i = 0; i < a.size(); i += 7) a[i] = small[(i / b.inner) % b.mid];
        return std::pair{a, small};
      };
      add(cases, "binary_forward", params, MathMode::f32,
          op == BinaryOp::mul ? tol::rounding : tol::exact, [=](Inputs& in) {
            const auto [a, small] = draw(in);
            const auto y0 = initial(in, b.numel(), false);
            return Run([=](const Side& s) {
              const Tensor ta = s.upload(a), tb = s.upload(small), ty = s.upload(y0);
              s.backend.binary_forward(op, ta.data<float>(), tb.data<float>(), ty.data<float>(), b);
              return Outputs{written("y", ty)};
            });
          });
      for (auto [acc_a, acc_b] :
           {std::pair{false, false}, std::pair{true, true}, std::pair{false, true}}) {
        add(cases, "binary_backward",
            params + flag("accumulate_da", acc_a) + flag("accumulate_db", acc_b), MathMode::f32,
            tol::rounding, [=](Inputs& in) {
              const auto [a, small] = draw(in);
              const auto dy = in.normal(b.numel()), da0 = initial(in, b.numel(), acc_a),
                         db0 = initial(in, b.numel(), acc_b);
              return Run([=](const Side& s) {
                const Tensor ta = s.upload(a), tb = s.upload(small), tdy = s.upload(dy),
                             tda = s.upload(da0), tdb = s.upload(db0);
                s.backend.binary_backward(op, ta.data<float>(), tb.data<float>(), tdy.data<float>(),
                                          tda.data<float>(), tdb.data<float>(), b, acc_a, acc_b);
                return Outputs{result("da", tda, da0, acc_a), result("db_full", tdb, db0, acc_b)};
              });
            });
      }
    }
  }
  // Everything into one value, row sums, column sums, per-channel sums.
  const Broadcast reductions[] = {{1, 1, (1 << 20) + 7}, {1, 1000, 333}, {500, 64, 1}, {8, 16, 49}};
  for (const Broadcast& b : reductions) {
    const std::string params =
        fmt::format("outer={} mid={} inner={} alpha=0.5", b.outer, b.mid, b.inner);
    for (bool acc : {false, true}) {
      add(cases, "reduce_sum", params + flag("accumulate", acc), MathMode::f32, tol::reduction,
          [=](Inputs& in) {
            const auto x = in.normal(b.numel(), 1.0f, 0.25f), y0 = initial(in, size_t(b.mid), acc);
            return Run([=](const Side& s) {
              const Tensor tx = s.upload(x), ty = s.upload(y0);
              s.backend.reduce_sum(tx.data<float>(), ty.data<float>(), b, 0.5f, acc);
              return Outputs{result("y", ty, y0, acc)};
            });
          });
      if (b.numel() > (1u << 20)) continue;
      add(cases, "expand", params + flag("accumulate", acc), MathMode::f32, tol::rounding,
          [=](Inputs& in) {
            const auto x = in.normal(size_t(b.mid)), y0 = initial(in, b.numel(), acc);
            return Run([=](const Side& s) {
              const Tensor tx = s.upload(x), ty = s.upload(y0);
              s.backend.expand(tx.data<float>(), ty.data<float>(), b, 0.5f, acc);
              return Outputs{result("y", ty, y0, acc)};
            });
          });
    }
  }
  // concat's block copy: 300 rows of 77 from a (300, 100) into a (300, 250) at column 40.
  for (bool acc : {false, true}) {
    add(cases, "copy_rows_strided",
        "rows=300 cols=77 src_stride=100 dst_stride=250 at +40" + flag("accumulate", acc),
        MathMode::f32, tol::exact, [=](Inputs& in) {
          const auto src = in.normal(300 * 100), dst0 = in.normal(300 * 250);
          return Run([=](const Side& s) {
            const Tensor ts = s.upload(src), td = s.upload(dst0);
            s.backend.copy_rows_strided(ts.data<float>(), 100, td.data<float>() + 40, 250, 300, 77,
                                        acc);
            return Outputs{written("dst (untouched elements included)", td)};
          });
        });
  }
}

void add_log_prob_cases(std::vector<Case>& cases) {
  for (auto [rows, cols] : {std::pair{64, 1000}, std::pair{4, 50257}, std::pair{128, 33}}) {
    const std::string shape = fmt::format("rows={} cols={}", rows, cols);
    const size_t n = size_t(rows) * cols;
    add(cases, "log_softmax_forward", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
      const auto x = in.normal(n, 3.0f), y0 = initial(in, n, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), ty = s.upload(y0);
        s.backend.log_softmax_forward(tx.data<float>(), ty.data<float>(), rows, cols);
        return Outputs{written("y", ty)};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "log_softmax_backward", shape + flag("accumulate", acc), MathMode::f32,
          tol::transcendental, [=](Inputs& in) {
            const auto x = in.normal(n, 3.0f);
            std::vector<float> y(n);
            kernels::cpu_backend().log_softmax_forward(x.data(), y.data(), rows, cols);
            const auto dy = in.normal(n), dx0 = initial(in, n, acc);
            return Run([=](const Side& s) {
              const Tensor ty = s.upload(y), tdy = s.upload(dy), tdx = s.upload(dx0);
              s.backend.log_softmax_backward(ty.data<float>(), tdy.data<float>(), tdx.data<float>(),
                                             rows, cols, acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
      add(cases, "token_log_prob_backward", shape + flag("accumulate", acc), MathMode::f32,
          tol::transcendental, [=](Inputs& in) {
            const auto logits = in.normal(n, 2.0f);
            auto targets = in.integers(rows, 0, cols);
            targets[0] = cols - 1;
            std::vector<float> losses(rows), lse(rows);
            kernels::cpu_backend().cross_entropy_forward(logits.data(), targets.data(),
                                                         losses.data(), lse.data(), rows, cols, -1);
            const auto dlogp = in.normal(rows), d0 = initial(in, n, acc);
            return Run([=](const Side& s) {
              const Tensor tl = s.upload(logits), tt = s.upload(targets), tlse = s.upload(lse),
                           tg = s.upload(dlogp), td = s.upload(d0);
              s.backend.token_log_prob_backward(tl.data<float>(), tt.data<int64_t>(),
                                                tlse.data<float>(), tg.data<float>(),
                                                td.data<float>(), rows, cols, acc);
              return Outputs{result("dlogits", td, d0, acc)};
            });
          });
    }
  }
}

std::string window_params(const kernels::Window2d& w) {
  return fmt::format("N={} C={} H={} W={} k={}x{} stride={} pad={}", w.batch, w.channels, w.height,
                     w.width, w.kernel_h, w.kernel_w, w.stride_h, w.pad_h);
}

void add_window_cases(std::vector<Case>& cases) {
  using kernels::Window2d;
  auto sizes = [](const Window2d& w) {
    return std::pair{size_t(w.batch) * w.channels * w.height * w.width,
                     size_t(w.batch) * w.channels * w.out_h() * w.out_w()};
  };
  // LeNet's first conv on Fashion-MNIST, a padded ResNet-style 3x3, an odd strided one.
  for (const Window2d& w :
       {Window2d{4, 1, 28, 28, 5, 5, 1, 1, 0, 0}, Window2d{2, 8, 14, 14, 3, 3, 1, 1, 1, 1},
        Window2d{2, 3, 13, 11, 3, 3, 2, 2, 1, 1}}) {
    const size_t pixels = sizes(w).first;
    const size_t cols =
        size_t(w.channels) * w.kernel_h * w.kernel_w * w.batch * w.out_h() * w.out_w();
    add(cases, "im2col", window_params(w), MathMode::f32, tol::exact, [=](Inputs& in) {
      const auto x = in.normal(pixels), c0 = initial(in, cols, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), tc = s.upload(c0);
        s.backend.im2col(w, tx.data<float>(), tc.data<float>());
        return Outputs{written("cols", tc)};
      });
    });
    for (bool acc : {false, true}) {
      add(cases, "col2im", window_params(w) + flag("accumulate", acc), MathMode::f32, tol::exact,
          [=](Inputs& in) {
            const auto c = in.normal(cols), dx0 = initial(in, pixels, acc);
            return Run([=](const Side& s) {
              const Tensor tc = s.upload(c), tdx = s.upload(dx0);
              s.backend.col2im(w, tc.data<float>(), tdx.data<float>(), acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
    }
  }
  // conv2d's GEMMs: the weight shared by every image (stride 0) against each
  // image's im2col matrix, forward and dx.
  for (MathMode mode : {MathMode::f32, MathMode::bf16}) {
    const int O = 12, ckk = 75, plane = 24 * 24, images = 3;
    add_gemm(
        cases, "gemm_strided_batched",
        fmt::format("conv2d layout O={} CKK={} plane={} images={} stride_a=0", O, ckk, plane,
                    images),
        mode, [=](Inputs& in) {
          const auto weight = in.normal(size_t(O) * ckk),
                     colsv = in.normal(size_t(ckk) * images * plane),
                     dy = in.normal(size_t(images) * O * plane);
          return Run([=](const Side& s) {
            const Tensor tw = s.upload(weight), tc = s.upload(colsv), tdy = s.upload(dy),
                         ty = s.upload(poison(size_t(images) * O * plane)),
                         tdc = s.upload(poison(size_t(ckk) * images * plane));
            s.backend.gemm_strided_batched(false, false, O, plane, ckk, 1.0f, tw.data<float>(), ckk,
                                           0, tc.data<float>(), plane, int64_t(ckk) * plane, 0.0f,
                                           ty.data<float>(), plane, int64_t(O) * plane, images);
            s.backend.gemm_strided_batched(true, false, ckk, plane, O, 1.0f, tw.data<float>(), ckk,
                                           0, tdy.data<float>(), plane, int64_t(O) * plane, 0.0f,
                                           tdc.data<float>(), plane, int64_t(ckk) * plane, images);
            return Outputs{written("y", ty), written("dcols", tdc)};
          });
        });
  }
  // Pooling: LeNet's 2x2, and overlapping 3x3 stride 2 (ResNet's stem) with padding.
  for (const Window2d& w :
       {Window2d{4, 6, 24, 24, 2, 2, 2, 2, 0, 0}, Window2d{2, 8, 15, 15, 3, 3, 2, 2, 1, 1},
        Window2d{2, 4, 9, 10, 3, 3, 1, 1, 1, 1}}) {
    const auto [pixels, outputs] = sizes(w);
    // Values on a 0.25 grid: ties in most windows test "first maximum".
    auto draw = [=](Inputs& in) {
      auto x = in.normal(pixels);
      for (float& v : x) v = std::round(v * 4.0f) / 4.0f + 0.125f;
      return x;
    };
    add(cases, "max_pool2d_forward", window_params(w) + " (ties)", MathMode::f32, tol::exact,
        [=](Inputs& in) {
          const auto x = draw(in), y0 = initial(in, outputs, false);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), ty = s.upload(y0),
                         ti = s.upload(std::vector<int32_t>(outputs, -7));
            s.backend.max_pool2d_forward(w, tx.data<float>(), ty.data<float>(), ti.data<int32_t>());
            Output argmax{"argmax", {}};
            for (int32_t v : ti.to_vector<int32_t>()) argmax.values.push_back(v);
            return Outputs{written("y", ty), argmax};
          });
        });
    add(cases, "avg_pool2d_forward", window_params(w), MathMode::f32, tol::rounding,
        [=](Inputs& in) {
          const auto x = in.normal(pixels), y0 = initial(in, outputs, false);
          return Run([=](const Side& s) {
            const Tensor tx = s.upload(x), ty = s.upload(y0);
            s.backend.avg_pool2d_forward(w, tx.data<float>(), ty.data<float>());
            return Outputs{written("y", ty)};
          });
        });
    for (bool acc : {false, true}) {
      add(cases, "max_pool2d_backward", window_params(w) + " (ties)" + flag("accumulate", acc),
          MathMode::f32, tol::exact, [=](Inputs& in) {
            const auto x = draw(in);
            std::vector<float> y(outputs);
            std::vector<int32_t> argmax(outputs);
            kernels::cpu_backend().max_pool2d_forward(w, x.data(), y.data(), argmax.data());
            const auto dy = in.normal(outputs), dx0 = initial(in, pixels, acc);
            return Run([=](const Side& s) {
              const Tensor ti = s.upload(argmax), tdy = s.upload(dy), tdx = s.upload(dx0);
              s.backend.max_pool2d_backward(w, ti.data<int32_t>(), tdy.data<float>(),
                                            tdx.data<float>(), acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
      add(cases, "avg_pool2d_backward", window_params(w) + flag("accumulate", acc), MathMode::f32,
          tol::rounding, [=](Inputs& in) {
            const auto dy = in.normal(outputs), dx0 = initial(in, pixels, acc);
            return Run([=](const Side& s) {
              const Tensor tdy = s.upload(dy), tdx = s.upload(dx0);
              s.backend.avg_pool2d_backward(w, tdy.data<float>(), tdx.data<float>(), acc);
              return Outputs{result("dx", tdx, dx0, acc)};
            });
          });
    }
  }
}

// GroupNorm and BatchNorm2d (issue 17): statistics, the normalization and
// its backward. The CPU sums in double, the GPU in float trees: within
// tol::transcendental, as LayerNorm.
void add_channel_norm_cases(std::vector<Case>& cases) {
  using kernels::ChannelNorm;
  const float eps = 1e-5f;
  for (const ChannelNorm& n : {ChannelNorm{4, 16, 49, 4, true}, ChannelNorm{2, 32, 784, 8, true},
                               ChannelNorm{16, 8, 196, 8, false}, ChannelNorm{3, 5, 1, 5, false}}) {
    const std::string shape =
        fmt::format("{} N={} C={} plane={} groups={}", n.per_image ? "group_norm" : "batch_norm",
                    n.batch, n.channels, n.plane, n.groups);
    const size_t total = size_t(n.batch) * n.channels * n.plane, stats = size_t(n.stats()),
                 channels = size_t(n.channels);
    auto draw = [=](Inputs& in) {
      return std::array{in.normal(total, 2.0f, 0.5f), in.normal(channels, 0.1f, 1.0f),
                        in.normal(channels, 0.1f)};
    };
    // The statistics as the CPU computes them.
    auto cpu_stats = [=](const std::vector<float>& x) {
      std::vector<float> mean(stats), var(stats);
      kernels::cpu_backend().channel_norm_stats(n, x.data(), mean.data(), var.data());
      return std::pair{mean, var};
    };
    add(cases, "channel_norm_stats", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
      const auto x = draw(in)[0];
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), tm = s.upload(poison(stats)), tv = s.upload(poison(stats));
        s.backend.channel_norm_stats(n, tx.data<float>(), tm.data<float>(), tv.data<float>());
        return Outputs{written("mean", tm), written("var", tv)};
      });
    });
    add(cases, "channel_norm_forward", shape, MathMode::f32, tol::transcendental, [=](Inputs& in) {
      const auto [x, w, b] = draw(in);
      const auto [mean, var] = cpu_stats(x);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), tw = s.upload(w), tb = s.upload(b), tm = s.upload(mean),
                     tv = s.upload(var), ty = s.upload(poison(total));
        s.backend.channel_norm_forward(n, tx.data<float>(), tm.data<float>(), tv.data<float>(), eps,
                                       tw.data<float>(), tb.data<float>(), ty.data<float>());
        return Outputs{written("y", ty)};
      });
    });
    for (bool through : {true, false})
      for (bool acc : {false, true}) {
        add(cases, "channel_norm_backward",
            shape + flag("through_stats", through) + flag("accumulate", acc), MathMode::f32,
            tol::transcendental, [=](Inputs& in) {
              const auto [x, w, b] = draw(in);
              const auto [mean, var] = cpu_stats(x);
              const auto dy = in.normal(total), dx0 = initial(in, total, acc),
                         dw0 = initial(in, channels, acc), db0 = initial(in, channels, acc);
              return Run([=](const Side& s) {
                const Tensor tx = s.upload(x), tw = s.upload(w), tm = s.upload(mean),
                             tv = s.upload(var), tdy = s.upload(dy), tdx = s.upload(dx0),
                             tdw = s.upload(dw0), tdb = s.upload(db0);
                s.backend.channel_norm_backward(n, tx.data<float>(), tm.data<float>(),
                                                tv.data<float>(), eps, tw.data<float>(),
                                                tdy.data<float>(), through, tdx.data<float>(),
                                                tdw.data<float>(), tdb.data<float>(), acc, acc);
                return Outputs{result("dx", tdx, dx0, acc), result("dweight", tdw, dw0, acc),
                               result("dbias", tdb, db0, acc)};
              });
            });
      }
  }
}

// ---- 16-bit activations (issue 12) -------------------------------------------------------
// Every *16 kernel in bf16 and f16, against the CPU's (which widens to f32,
// runs the f32 kernel and rounds each output once). Both sides round the
// same f32 results, so they differ only where their f32 arithmetic differs
// (order, FMA, libm) and a value sits at a 16-bit rounding boundary: a flip
// of one 16-bit ulp on ~1e-4 of the elements, NMSE ~1e-9 (bf16) and ~1e-10
// (f16). A kernel that truncates instead of rounding to nearest shows ~1e-6
// (bf16) and ~2e-8 (f16); one that reads or writes the other 16-bit format
// shows ~1e-2 and up. Data movement is bit-identical.

using kernels::FloatType;
constexpr FloatType kHalves[] = {FloatType::bf16, FloatType::f16};

namespace tol {
inline double half(FloatType t) {
  return t == FloatType::bf16 ? 1e-7 : 3e-9;
}
}  // namespace tol

std::vector<uint16_t> round16(FloatType t, const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  kernels::cpu_backend().convert(FloatType::f32, x.data(), t, out.data(), x.size());
  return out;
}

std::vector<double> decode16(FloatType t, const std::vector<uint16_t>& bits) {
  std::vector<double> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i)
    out[i] = t == FloatType::bf16 ? kernels::bf16_to_f32(bits[i]) : f16_bits_to_f32(bits[i]);
  return out;
}

// 16-bit inputs: normal draws rounded; an output's initial contents: random
// when accumulated, NaN otherwise.
std::vector<uint16_t> normal16(FloatType t, Inputs& in, size_t n, float stddev = 1.0f) {
  return round16(t, in.normal(n, stddev));
}
std::vector<uint16_t> initial16(FloatType t, Inputs& in, size_t n, bool accumulate) {
  return round16(t, initial(in, n, accumulate));
}

Output written16(FloatType t, std::string name, const Tensor& bits) {
  return {std::move(name), decode16(t, bits.to_vector<uint16_t>())};
}
Output result16(FloatType t, std::string name, const Tensor& bits,
                const std::vector<uint16_t>& before, bool accumulate) {
  Output out = written16(t, std::move(name), bits);
  if (accumulate) {
    const std::vector<double> b = decode16(t, before);
    for (size_t i = 0; i < out.values.size(); ++i) out.values[i] -= b[i];
  }
  return out;
}

uint16_t* u16(const Tensor& t) {
  return t.data<uint16_t>();
}

void add16(std::vector<Case>& cases, std::string op, FloatType t, std::string params,
           double max_nmse, std::function<Run(Inputs&)> prepare) {
  add(cases, std::move(op), fmt::format("{} {}", kernels::float_type_name(t), params),
      MathMode::f32, max_nmse, std::move(prepare));
}

void add_gemm_mixed_cases(std::vector<Case>& cases) {
  struct Spec {
    bool ta, tb;
    int M, N, K, batch;
    bool a16, b16, c16;
    float beta;
    const char* what;
  };
  // A linear layer's three products (x W^T; dy W into an accumulated dx;
  // dy^T x into an f32 dW) and a batched all-16-bit one.
  const Spec specs[] = {{false, true, 200, 96, 160, 1, true, false, true, 0.0f, "forward x W^T"},
                        {false, false, 200, 160, 96, 1, true, false, true, 1.0f, "dx += dy W"},
                        {true, false, 96, 160, 200, 1, true, true, false, 1.0f, "dW += dy^T x"},
                        {false, false, 33, 40, 72, 3, true, true, true, 0.0f, "batched"}};
  for (const Spec& g : specs)
    for (FloatType t : kHalves)
      for (MathMode mode : {MathMode::f32, MathMode::bf16}) {
        // By value: the case runs after this loop's t is gone.
        const auto type = [t](bool half) { return half ? t : FloatType::f32; };
        const std::string params = fmt::format(
            "{} M={} N={} K={} batch={} A {} B {} C {} beta={}{}", g.what, g.M, g.N, g.K, g.batch,
            kernels::float_type_name(type(g.a16)), kernels::float_type_name(type(g.b16)),
            kernels::float_type_name(type(g.c16)), g.beta,
            mode == MathMode::f32 ? "" : " (bf16 math)");
        add(cases, "gemm_mixed", params, mode, tol::half(t), [=](Inputs& in) {
          const size_t a_n = size_t(g.batch) * g.M * g.K, b_n = size_t(g.batch) * g.K * g.N,
                       c_n = size_t(g.batch) * g.M * g.N;
          const auto a = in.normal(a_n), b = in.normal(b_n), c = initial(in, c_n, g.beta != 0);
          return Run([=](const Side& s) {
            // An operand goes up in 16-bit (rounded) or f32 as its type says.
            const auto up = [&](const std::vector<float>& x, bool half) {
              return half ? s.upload(round16(t, x)) : s.upload(x);
            };
            const Tensor ta = up(a, g.a16), tb = up(b, g.b16), tc = up(c, g.c16);
            kernels::MixedGemm m;
            m.trans_a = g.ta;
            m.trans_b = g.tb;
            m.M = g.M;
            m.N = g.N;
            m.K = g.K;
            m.beta = g.beta;
            m.A = ta.raw_data();
            m.a_type = type(g.a16);
            m.lda = g.ta ? g.M : g.K;
            m.stride_a = int64_t(g.M) * g.K;
            m.B = tb.raw_data();
            m.b_type = type(g.b16);
            m.ldb = g.tb ? g.K : g.N;
            m.stride_b = int64_t(g.K) * g.N;
            m.C = tc.raw_data();
            m.c_type = type(g.c16);
            m.ldc = g.N;
            m.stride_c = int64_t(g.M) * g.N;
            m.batch = g.batch;
            kernels::MathModeGuard guard(s.backend, mode);
            s.backend.gemm_mixed(m);
            if (!g.c16) return Outputs{result("C", tc, c, g.beta != 0)};
            return Outputs{result16(t, "C", tc, round16(t, c), g.beta != 0)};
          });
        });
      }
}

void add_elementwise16_cases(std::vector<Case>& cases) {
  const size_t n = 100003;
  const int rows = 300, cols = 333;
  const size_t rc = size_t(rows) * cols;
  for (FloatType t : kHalves) {
    const double tolerance = tol::half(t);
    add16(cases, "add16", t, fmt::format("n={} y = 0.5 a - 2 b", n), tolerance, [=](Inputs& in) {
      const auto a = normal16(t, in, n), b = normal16(t, in, n), y0 = initial16(t, in, n, false);
      return Run([=](const Side& s) {
        const Tensor ta = s.upload(a), tb = s.upload(b), ty = s.upload(y0);
        s.backend.add16(t, u16(ta), u16(tb), u16(ty), n, 0.5f, -2.0f);
        return Outputs{written16(t, "y", ty)};
      });
    });
    for (bool acc : {false, true}) {
      add16(cases, "scale16", t, fmt::format("n={} alpha=-0.75{}", n, flag("accumulate", acc)),
            tolerance, [=](Inputs& in) {
              const auto x = normal16(t, in, n), y0 = initial16(t, in, n, acc);
              return Run([=](const Side& s) {
                const Tensor tx = s.upload(x), ty = s.upload(y0);
                s.backend.scale16(t, u16(tx), u16(ty), n, -0.75f, acc);
                return Outputs{result16(t, "y", ty, y0, acc)};
              });
            });
      add16(cases, "bias_backward16", t,
            fmt::format("rows={} cols={}{}", rows, cols, flag("accumulate", acc)), tol::reduction,
            [=](Inputs& in) {
              const auto dy = normal16(t, in, rc);
              const auto db0 = initial(in, cols, acc);
              return Run([=](const Side& s) {
                const Tensor tdy = s.upload(dy), tdb = s.upload(db0);
                s.backend.bias_backward16(t, u16(tdy), tdb.data<float>(), rows, cols, acc);
                return Outputs{result("dbias", tdb, db0, acc)};
              });
            });
      add16(cases, "gelu_backward16", t, fmt::format("n={}{}", n, flag("accumulate", acc)),
            tolerance, [=](Inputs& in) {
              const auto x = normal16(t, in, n, 3.0f), dy = normal16(t, in, n),
                         dx0 = initial16(t, in, n, acc);
              return Run([=](const Side& s) {
                const Tensor tx = s.upload(x), tdy = s.upload(dy), tdx = s.upload(dx0);
                s.backend.gelu_backward16(t, u16(tx), u16(tdy), u16(tdx), n, acc);
                return Outputs{result16(t, "dx", tdx, dx0, acc)};
              });
            });
    }
    add16(cases, "add_bias16", t, fmt::format("rows={} cols={}", rows, cols), tolerance,
          [=](Inputs& in) {
            const auto y0 = normal16(t, in, rc);
            const auto bias = in.normal(cols);
            return Run([=](const Side& s) {
              const Tensor ty = s.upload(y0), tb = s.upload(bias);
              s.backend.add_bias16(t, u16(ty), tb.data<float>(), rows, cols);
              return Outputs{written16(t, "y", ty)};
            });
          });
    add16(cases, "gelu_forward16", t, fmt::format("n={}", n), tolerance, [=](Inputs& in) {
      const auto x = normal16(t, in, n, 3.0f), y0 = initial16(t, in, n, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), ty = s.upload(y0);
        s.backend.gelu_forward16(t, u16(tx), u16(ty), n);
        return Outputs{written16(t, "y", ty)};
      });
    });
    // Dropout: the same counter-based mask on both sides, so the zeros match.
    add16(cases, "dropout_forward16", t, fmt::format("n={} p=0.3", n), tolerance, [=](Inputs& in) {
      const auto x = normal16(t, in, n), y0 = initial16(t, in, n, false);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), ty = s.upload(y0);
        s.backend.dropout_forward16(t, u16(tx), u16(ty), n, 0.3f, 1234, 5, 77);
        Output y = written16(t, "y", ty);
        y.zero_pattern = true;
        return Outputs{y};
      });
    });
    for (bool acc : {false, true})
      add16(cases, "dropout_backward16", t, fmt::format("n={} p=0.3{}", n, flag("accumulate", acc)),
            tolerance, [=](Inputs& in) {
              const auto dy = normal16(t, in, n), dx0 = initial16(t, in, n, acc);
              return Run([=](const Side& s) {
                const Tensor tdy = s.upload(dy), tdx = s.upload(dx0);
                s.backend.dropout_backward16(t, u16(tdy), u16(tdx), n, 0.3f, 1234, 5, 77, acc);
                return Outputs{result16(t, "dx", tdx, dx0, acc)};
              });
            });
  }
}

void add_norm_loss16_cases(std::vector<Case>& cases) {
  const int rows = 37, cols = 1000;
  const size_t n = size_t(rows) * cols;
  const float eps = 1e-5f;
  for (FloatType t : kHalves) {
    const double tolerance = tol::half(t);
    const std::string shape = fmt::format("rows={} cols={}", rows, cols);
    add16(cases, "layer_norm_forward16", t, shape, tolerance, [=](Inputs& in) {
      const auto x = round16(t, in.normal(n, 2.0f, 0.5f));
      const auto w = in.normal(cols, 0.1f, 1.0f), b = in.normal(cols, 0.1f);
      return Run([=](const Side& s) {
        const Tensor tx = s.upload(x), tw = s.upload(w), tb = s.upload(b);
        const Tensor ty = s.upload(std::vector<uint16_t>(n, 0x7fc0)), tm = s.upload(poison(rows)),
                     tr = s.upload(poison(rows));
        s.backend.layer_norm_forward16(t, u16(tx), tw.data<float>(), tb.data<float>(), u16(ty),
                                       tm.data<float>(), tr.data<float>(), rows, cols, eps);
        return Outputs{written16(t, "y", ty), written("mean", tm), written("rstd", tr)};
      });
    });
    for (bool acc : {false, true})
      add16(cases, "layer_norm_backward16", t, shape + flag("accumulate", acc), tolerance,
            [=](Inputs& in) {
              const auto x = round16(t, in.normal(n, 2.0f, 0.5f));
              const auto w = in.normal(cols, 0.1f, 1.0f), b = in.normal(cols, 0.1f);
              std::vector<uint16_t> y(n);
              std::vector<float> mean(rows), rstd(rows);
              kernels::cpu_backend().layer_norm_forward16(t, x.data(), w.data(), b.data(), y.data(),
                                                          mean.data(), rstd.data(), rows, cols,
                                                          eps);
              const auto dy = normal16(t, in, n), dx0 = initial16(t, in, n, acc);
              const auto dw0 = initial(in, cols, acc), db0 = initial(in, cols, acc);
              return Run([=](const Side& s) {
                const Tensor tx = s.upload(x), tw = s.upload(w), tm = s.upload(mean),
                             tr = s.upload(rstd), tdy = s.upload(dy), tdx = s.upload(dx0),
                             tdw = s.upload(dw0), tdb = s.upload(db0);
                s.backend.layer_norm_backward16(
                    t, u16(tx), tw.data<float>(), tm.data<float>(), tr.data<float>(), u16(tdy),
                    u16(tdx), tdw.data<float>(), tdb.data<float>(), rows, cols, acc, acc);
                Output dw = result("dweight", tdw, dw0, acc), db = result("dbias", tdb, db0, acc);
                dw.max_nmse = db.max_nmse = tol::transcendental;
                return Outputs{result16(t, "dx", tdx, dx0, acc), dw, db};
              });
            });
    // Cross entropy on 16-bit logits: f32 losses and log-sum-exps.
    const int vocab = 1000;
    add16(cases, "cross_entropy_forward16", t, fmt::format("rows={} vocab={}", rows, vocab),
          tol::transcendental, [=](Inputs& in) {
            const auto logits = round16(t, in.normal(size_t(rows) * vocab, 3.0f));
            auto targets = in.integers(rows, 0, vocab);
            targets[5] = -100;  // ignored
            return Run([=](const Side& s) {
              const Tensor tl = s.upload(logits), tt = s.upload(targets),
                           loss = s.upload(poison(rows)), lse = s.upload(poison(rows));
              s.backend.cross_entropy_forward16(t, u16(tl), tt.data<int64_t>(), loss.data<float>(),
                                                lse.data<float>(), rows, vocab, -100);
              return Outputs{written("losses", loss), written("lse", lse)};
            });
          });
    for (bool acc : {false, true})
      add16(cases, "cross_entropy_backward16", t,
            fmt::format("rows={} vocab={}{}", rows, vocab, flag("accumulate", acc)), tolerance,
            [=](Inputs& in) {
              const auto logits = round16(t, in.normal(size_t(rows) * vocab, 3.0f));
              auto targets = in.integers(rows, 0, vocab);
              targets[5] = -100;
              std::vector<float> losses(rows), lse(rows);
              kernels::cpu_backend().cross_entropy_forward16(
                  t, logits.data(), targets.data(), losses.data(), lse.data(), rows, vocab, -100);
              const auto d0 = initial16(t, in, size_t(rows) * vocab, acc);
              return Run([=](const Side& s) {
                const Tensor tl = s.upload(logits), tt = s.upload(targets), tlse = s.upload(lse),
                             td = s.upload(d0);
                s.backend.cross_entropy_backward16(t, u16(tl), tt.data<int64_t>(),
                                                   tlse.data<float>(), 0.03f, u16(td), rows, vocab,
                                                   -100, acc);
                return Outputs{result16(t, "dlogits", td, d0, acc)};
              });
            });
  }
}

void add_layout16_cases(std::vector<Case>& cases) {
  const int B = 2, T = 37, H = 3, D = 24;
  const size_t n = size_t(B) * T * H * D;
  const std::string shape = fmt::format("B={} T={} H={} D={}", B, T, H, D);
  for (FloatType t : kHalves) {
    add16(cases, "split_qkv16", t, shape, tol::exact, [=](Inputs& in) {
      const auto qkv = normal16(t, in, 3 * n);
      return Run([=](const Side& s) {
        const Tensor x = s.upload(qkv), q = s.upload(std::vector<uint16_t>(n)),
                     k = s.upload(std::vector<uint16_t>(n)), v = s.upload(std::vector<uint16_t>(n));
        s.backend.split_qkv16(t, u16(x), u16(q), u16(k), u16(v), B, T, H, D);
        return Outputs{written16(t, "q", q), written16(t, "k", k), written16(t, "v", v)};
      });
    });
    for (bool acc : {false, true}) {
      const double moved = acc ? tol::half(t) : tol::exact;
      add16(cases, "merge_qkv16", t, shape + flag("accumulate", acc), moved, [=](Inputs& in) {
        const auto dq = normal16(t, in, n), dk = normal16(t, in, n), dv = normal16(t, in, n),
                   d0 = initial16(t, in, 3 * n, acc);
        return Run([=](const Side& s) {
          const Tensor a = s.upload(dq), b = s.upload(dk), c = s.upload(dv), d = s.upload(d0);
          s.backend.merge_qkv16(t, u16(a), u16(b), u16(c), u16(d), B, T, H, D, acc);
          return Outputs{result16(t, "dqkv", d, d0, acc)};
        });
      });
      add16(cases, "merge_heads16", t, shape + flag("accumulate", acc), moved, [=](Inputs& in) {
        const auto x = normal16(t, in, n), y0 = initial16(t, in, n, acc);
        return Run([=](const Side& s) {
          const Tensor tx = s.upload(x), ty = s.upload(y0);
          s.backend.merge_heads16(t, u16(tx), u16(ty), B, H, T, D, acc);
          return Outputs{result16(t, "y", ty, y0, acc)};
        });
      });
      add16(cases, "split_heads16", t, shape + flag("accumulate", acc), moved, [=](Inputs& in) {
        const auto x = normal16(t, in, n), y0 = initial16(t, in, n, acc);
        return Run([=](const Side& s) {
          const Tensor tx = s.upload(x), ty = s.upload(y0);
          s.backend.split_heads16(t, u16(tx), u16(ty), B, H, T, D, acc);
          return Outputs{result16(t, "y", ty, y0, acc)};
        });
      });
    }
    // Random-LTD's rows: K = 20 of T = 37 per batch.
    const int K = 20, C = 64;
    const std::string rows = fmt::format("B={} T={} K={} C={}", B, T, K, C);
    for (bool acc : {false, true})
      add16(cases, "gather_rows16", t, rows + flag("accumulate", acc),
            acc ? tol::half(t) : tol::exact, [=](Inputs& in) {
              const auto index = in.distinct(B, T, K);
              const auto x = normal16(t, in, size_t(B) * T * C),
                         y0 = initial16(t, in, size_t(B) * K * C, acc);
              return Run([=](const Side& s) {
                const Tensor tx = s.upload(x), ti = s.upload(index), ty = s.upload(y0);
                s.backend.gather_rows16(t, u16(tx), ti.data<int64_t>(), u16(ty), B, T, K, C, acc);
                return Outputs{result16(t, "y", ty, y0, acc)};
              });
            });
    add16(cases, "scatter_rows16", t, rows + " accumulate", tol::half(t), [=](Inputs& in) {
      const auto index = in.distinct(B, T, K);
      const auto src = normal16(t, in, size_t(B) * K * C), y0 = normal16(t, in, size_t(B) * T * C);
      return Run([=](const Side& s) {
        const Tensor ts = s.upload(src), ti = s.upload(index), ty = s.upload(y0);
        s.backend.scatter_rows16(t, u16(ts), ti.data<int64_t>(), u16(ty), B, T, K, C, true);
        return Outputs{written16(t, "y", ty)};
      });
    });
    add16(cases, "zero_rows16", t, rows, tol::exact, [=](Inputs& in) {
      const auto index = in.distinct(B, T, K);
      const auto y0 = normal16(t, in, size_t(B) * T * C);
      return Run([=](const Side& s) {
        const Tensor ti = s.upload(index), ty = s.upload(y0);
        s.backend.zero_rows16(t, u16(ty), ti.data<int64_t>(), B, T, K, C);
        return Outputs{written16(t, "y", ty)};
      });
    });
  }
}

void add_attention16_cases(std::vector<Case>& cases) {
  const AttentionSpec specs[] = {
      {2, 6, 80, 80, 64, true, true},                    // BLOOM's training attention
      {2, 4, 48, 48, 64, true, true, Mask::none, true},  // random-LTD's kept positions
  };
  for (const AttentionSpec& a : specs)
    for (FloatType t : kHalves) {
      add16(cases, "attention_forward16", t, attention_params(a), tol::half(t), [=](Inputs& in) {
        const AttentionProblem p(a, in);
        const auto q = round16(t, p.q), k = round16(t, p.k), v = round16(t, p.v);
        return Run([=](const Side& s) {
          const AttentionSideData d(p, s);
          const Tensor tq = s.upload(q), tk = s.upload(k), tv = s.upload(v),
                       out = s.upload(std::vector<uint16_t>(p.q_size(), 0x7fc0)),
                       lse = s.upload(poison(p.rows()));
          s.backend.attention_forward16(t, d.shape(p), u16(tq), u16(tk), u16(tv), u16(out),
                                        lse.data<float>());
          Output l = written("lse", lse);
          l.max_nmse = tol::attention(MathMode::f32, false);
          return Outputs{written16(t, "out", out), l};
        });
      });
      for (bool acc : {false, true})
        add16(cases, "attention_backward16", t, attention_params(a) + flag("accumulate", acc),
              tol::half(t), [=](Inputs& in) {
                const AttentionProblem p(a, in);
                const auto q = round16(t, p.q), k = round16(t, p.k), v = round16(t, p.v);
                std::vector<uint16_t> out(p.q_size());
                std::vector<float> lse(p.rows());
                kernels::cpu_backend().attention_forward16(
                    t, p.shape(p.mask.data(), p.positions.data()), q.data(), k.data(), v.data(),
                    out.data(), lse.data());
                const auto dout = normal16(t, in, p.q_size()),
                           dq0 = initial16(t, in, p.q_size(), acc),
                           dk0 = initial16(t, in, p.kv_size(), acc),
                           dv0 = initial16(t, in, p.kv_size(), acc);
                return Run([=](const Side& s) {
                  const AttentionSideData d(p, s);
                  const Tensor tq = s.upload(q), tk = s.upload(k), tv = s.upload(v),
                               to = s.upload(out), tl = s.upload(lse), tdo = s.upload(dout),
                               dq = s.upload(dq0), dk = s.upload(dk0), dv = s.upload(dv0);
                  s.backend.attention_backward16(t, d.shape(p), u16(tq), u16(tk), u16(tv), u16(to),
                                                 tl.data<float>(), u16(tdo), u16(dq), u16(dk),
                                                 u16(dv), acc);
                  return Outputs{result16(t, "dq", dq, dq0, acc), result16(t, "dk", dk, dk0, acc),
                                 result16(t, "dv", dv, dv0, acc)};
                });
              });
    }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  add_memory_cases(cases);
  add_conversion_cases(cases);
  add_gemm_cases(cases);
  add_gemm_compact_cases(cases);
  add_elementwise_cases(cases);
  add_dropout_cases(cases);
  add_optimizer_cases(cases);
  add_loss_scale_cases(cases);
  add_layer_norm_cases(cases);
  add_softmax_cases(cases);
  add_cross_entropy_cases(cases);
  add_embedding_cases(cases);
  add_row_cases(cases);
  add_layout_cases(cases);
  add_attention_cases(cases);
  // PPO and image-model kernels (issue 12).
  add_pointwise_cases(cases);
  add_log_prob_cases(cases);
  add_window_cases(cases);
  add_channel_norm_cases(cases);
  // 16-bit activations (issue 12).
  add_gemm_mixed_cases(cases);
  add_elementwise16_cases(cases);
  add_norm_loss16_cases(cases);
  add_layout16_cases(cases);
  add_attention16_cases(cases);
  return cases;
}

// ---- comparison ------------------------------------------------------------------------------

struct Verdict {
  bool ok = true;
  double nmse = 0;     // the worst output's, against the case's threshold
  std::string detail;  // why not ok
};

void reject(Verdict& v, const std::string& why) {
  v.ok = false;
  if (!v.detail.empty()) v.detail += "; ";
  v.detail += why;
}

bool same_nonfinite(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b;  // infinities of the same sign
}

// Compares the test side's outputs with the reference's, output by output.
Verdict judge(double case_max, const Outputs& test, const Outputs& ref) {
  Verdict v;
  if (test.size() != ref.size()) {
    reject(v, fmt::format("{} outputs against the reference's {}", test.size(), ref.size()));
    return v;
  }
  for (size_t o = 0; o < ref.size(); ++o) {
    const Output &t = test[o], &r = ref[o];
    if (t.values.size() != r.values.size()) {
      reject(v, fmt::format("'{}' has {} values, the reference {}", r.name, t.values.size(),
                            r.values.size()));
      continue;
    }
    double diff = 0, base = 0;
    size_t nonfinite_ref = 0, nonfinite_mismatch = 0, zero_mismatch = 0;
    for (size_t i = 0; i < r.values.size(); ++i) {
      const double a = t.values[i], b = r.values[i];
      if ((a == 0) != (b == 0)) ++zero_mismatch;
      if (!std::isfinite(b)) ++nonfinite_ref;
      if (!std::isfinite(a) || !std::isfinite(b)) {
        if (!same_nonfinite(a, b)) ++nonfinite_mismatch;
        continue;
      }
      diff += (a - b) * (a - b);
      base += b * b;
    }
    const double nmse = base > 0 ? diff / base : (diff > 0 ? kInf : 0.0);
    const double limit = r.max_nmse.value_or(case_max);
    if (nonfinite_ref > 0 && !r.allow_nonfinite)
      reject(v, fmt::format("reference '{}' has {} non-finite values (the harness or the CPU "
                            "op is wrong)",
                            r.name, nonfinite_ref));
    if (nonfinite_mismatch > 0)
      reject(v, fmt::format("'{}': {} of {} values non-finite on one side only (or different "
                            "inf/NaN)",
                            r.name, nonfinite_mismatch, r.values.size()));
    if (r.zero_pattern && zero_mismatch > 0)
      reject(v, fmt::format("'{}': {} of {} values zero on one side only (mask differs)", r.name,
                            zero_mismatch, r.values.size()));
    if (nmse > limit) reject(v, fmt::format("'{}': nmse {:.3e} > {:.0e}", r.name, nmse, limit));
    if (!r.max_nmse) v.nmse = std::max(v.nmse, nmse);
  }
  return v;
}

// The comparator must tell agreement from each kind of disagreement; checked
// before every run, so a harness bug cannot pass everything.
bool comparator_works() {
  const Outputs ref = {{"x", {1.0, -2.0, 0.5, 3.0}}};
  auto with = [&](std::vector<double> values, auto&& tweak) {
    Outputs out = {{"x", std::move(values)}};
    tweak(out[0]);
    return out;
  };
  auto none = [](Output&) {};
  struct Expect {
    const char* what;
    Verdict verdict;
    bool ok;
  };
  const Expect expectations[] = {
      {"equal", judge(0, ref, ref), true},
      {"1e-3 relative off in one value, limit 1e-10",
       judge(1e-10, with({1.001, -2.0, 0.5, 3.0}, none), ref), false},
      {"1e-6 relative off, exact output",
       judge(1, with({1.000001, -2.0, 0.5, 3.0}, none),
             with({1.0, -2.0, 0.5, 3.0}, [](Output& o) { o.max_nmse = 0; })),
       false},
      {"NaN where the reference has a number", judge(1, with({kNaN, -2.0, 0.5, 3.0}, none), ref),
       false},
      {"NaN in the reference", judge(1, ref, with({kNaN, -2.0, 0.5, 3.0}, none)), false},
      {"matching inf, allowed",
       judge(0, with({kInf, -2.0, 0.5, 3.0}, none),
             with({kInf, -2.0, 0.5, 3.0}, [](Output& o) { o.allow_nonfinite = true; })),
       true},
      {"inf against -inf",
       judge(1, with({-kInf, -2.0, 0.5, 3.0}, none),
             with({kInf, -2.0, 0.5, 3.0}, [](Output& o) { o.allow_nonfinite = true; })),
       false},
      {"zero against 1e-30 in a mask",
       judge(1, with({1e-30, -2.0, 0.5, 3.0}, none),
             with({0.0, -2.0, 0.5, 3.0}, [](Output& o) { o.zero_pattern = true; })),
       false},
      {"fewer values", judge(1, with({1.0, -2.0, 0.5}, none), ref), false},
      {"missing output", judge(1, {}, ref), false},
  };
  bool all = true;
  for (const Expect& e : expectations) {
    if (e.verdict.ok == e.ok) continue;
    fmt::print("FAIL  harness self-test: '{}' judged {} ({})\n", e.what,
               e.verdict.ok ? "equal" : "different", e.verdict.detail);
    all = false;
  }
  return all;
}

// ---- main -----------------------------------------------------------------------------------

void usage() {
  fmt::print(
      "usage: test_backend_ops [--cpu-only] [--list] [OP...]\n"
      "  Compares every kernel backend op on cuda:0 with the CPU backend.\n"
      "  OP           run only the cases whose op name contains OP (several allowed)\n"
      "  --cpu-only   run the CPU backend on both sides (checks the harness; no GPU needed)\n"
      "  --list       list the selected cases and exit\n"
      "Exit: 0 all OK, 1 a case failed, 77 no CUDA device (SKIP), 2 bad arguments.\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool cpu_only = false, list = false;
  std::vector<std::string> filters;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--cpu-only") {
      cpu_only = true;
    } else if (arg == "--list") {
      list = true;
    } else if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    } else if (arg.starts_with("-")) {
      fmt::print(stderr, "test_backend_ops: unknown option '{}'\n", arg);
      usage();
      return 2;
    } else {
      filters.push_back(arg);
    }
  }

  const std::vector<Case> cases = all_cases();
  std::vector<size_t> selected;
  for (size_t i = 0; i < cases.size(); ++i) {
    const bool match = filters.empty() || std::any_of(filters.begin(), filters.end(), [&](auto& f) {
                         return cases[i].op.find(f) != std::string::npos;
                       });
    if (match) selected.push_back(i);
  }
  if (list) {
    for (size_t i : selected)
      fmt::print("{:<24} {:<4} {}\n", cases[i].op, kernels::math_mode_name(cases[i].mode),
                 cases[i].params);
    return 0;
  }
  if (selected.empty()) {
    fmt::print(stderr, "test_backend_ops: no op name contains {}; --list shows the cases\n",
               fmt::join(filters, " or "));
    return 2;
  }
  if (!comparator_works()) return 1;

  const Side reference{kernels::cpu_backend(), Device::cpu()};
  if (!cpu_only && kernels::cuda_device_count() == 0) {
    fmt::print(
        "SKIP: no CUDA device (cuda_device_count() is 0: no GPU or driver here, or a build "
        "without the CUDA backend); --cpu-only checks the harness on the CPU\n");
    return 77;
  }
  std::optional<Side> test;
  try {
    test.emplace(cpu_only ? reference : Side{backend_for(Device::cuda(0)), Device::cuda(0)});
  } catch (const std::exception& e) {
    fmt::print("FAIL  the CUDA backend could not start: {}\n", e.what());
    return 1;
  }
  fmt::print("backend_ops: {} against {} on {} of {} cases{}\n", test->backend.name(),
             reference.backend.name(), selected.size(), cases.size(),
             filters.empty() ? "" : fmt::format(" (ops matching {})", fmt::join(filters, ", ")));
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  size_t failed = 0;
  for (size_t i : selected) {
    const Case& c = cases[i];
    Verdict v;
    // Each case its own seed, so no two cases see the same numbers.
    Inputs in(0x7e57ba5eULL + 7919 * i);
    auto run_on = [&](const Side& side, const Run& run, Outputs& out) {
      try {
        kernels::MathModeGuard guard(side.backend, c.mode);
        out = run(side);
        return true;
      } catch (const std::exception& e) {
        reject(v, fmt::format("{} threw: {}", side.backend.name(), e.what()));
      } catch (...) {
        reject(v, fmt::format("{} threw a non-standard exception", side.backend.name()));
      }
      return false;
    };
    Run run;
    try {
      run = c.prepare(in);
    } catch (const std::exception& e) {
      reject(v, fmt::format("preparing the inputs threw: {}", e.what()));
    }
    Outputs ref, got;
    const bool compared = run && run_on(reference, run, ref) && run_on(*test, run, got);
    if (compared) v = judge(c.max_nmse, got, ref);
    std::string more_precise;
    if (!v.ok && compared && c.may_exceed_mode) {
      // No further from the f32 product than the mode's own rounding?
      try {
        kernels::MathModeGuard guard(reference.backend, MathMode::f32);
        const Outputs exact = run(reference);
        const double got_error = judge(kInf, got, exact).nmse,
                     rounding = judge(kInf, ref, exact).nmse;
        if (got_error <= rounding) {
          more_precise = fmt::format(
              "      more precise than {} (cuBLAS's choice): nmse {:.2e} against the f32 product, "
              "the mode's rounding {:.2e}\n",
              kernels::math_mode_name(c.mode), got_error, rounding);
          v = Verdict{true, v.nmse, ""};
        }
      } catch (const std::exception& e) {
        v.detail += fmt::format("; the f32 reference threw: {}", e.what());
      }
    }
    if (!v.ok) ++failed;
    fmt::print("{:<4}  {:<24} {:<4}  nmse {:<9}  max {:<5}  {}\n", v.ok ? "OK" : "FAIL", c.op,
               kernels::math_mode_name(c.mode), compared ? fmt::format("{:.2e}", v.nmse) : "-",
               fmt::format("{:.0e}", c.max_nmse), c.params);
    if (!v.ok) fmt::print("      {}\n", v.detail);
    fmt::print("{}", more_precise);
    // A 16-bit mode failing: is the GPU computing more precisely than the
    // mode (cuBLAS's FAST_16BF may pick TF32), or wrongly?
    if (!v.ok && compared && c.mode != MathMode::f32) {
      try {
        kernels::MathModeGuard guard(reference.backend, MathMode::f32);
        const Verdict plain = judge(c.max_nmse, got, run(reference));
        fmt::print("      against the CPU in f32 instead: nmse {:.2e}\n", plain.nmse);
      } catch (const std::exception& e) {
        fmt::print("      the f32 reference threw: {}\n", e.what());
      }
    }
    std::fflush(stdout);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("backend_ops: {} cases, {} OK, {} FAIL ({} against {}, {:.1f} s)\n", selected.size(),
             selected.size() - failed, failed, test->backend.name(), reference.backend.name(),
             seconds);
  return failed == 0 ? 0 : 1;
}
