// The CPU backend's GEMM (oneDNN) against a plain triple loop in double:
// every transpose, padded leading dimensions, alpha and beta, K = 0, strided
// batches, and the name a job prints for the kernel. The library changed
// from OpenBLAS to oneDNN; this pins the row-major BLAS semantics it must keep.
// Also: gemm_compact (bf16/f16/int8 weights) against its definition, and
// stop signals arriving during GEMMs leave them (and the heap) intact.
#define BOOST_TEST_MODULE cpu_gemm
#include <signal.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "core/rng.hpp"
#include "core/signals.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/gemm_kernel.hpp"
#include "kernels/cpu/precision.hpp"
#include "tensor/tensor.hpp"

using namespace turbine;

// Stop signals are installed before any test starts a thread (as a job's
// main does before MPI_Init).
struct InstallStopSignals {
  InstallStopSignals() { install_stop_signals(); }
};
BOOST_TEST_GLOBAL_FIXTURE(InstallStopSignals);

namespace {

struct Case {
  bool trans_a, trans_b;
  int M, N, K, pad;
  float alpha, beta;
  int batch = 1;
  kernels::MathMode mode = kernels::MathMode::f32;
};

// Values in [-1, 1) from Philox, never all zeros.
std::vector<float> draw(size_t n, uint64_t stream) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(philox4x32(11, stream, i)[0] >> 8) / 8388608.0f - 1;
  return v;
}

void check(const Case& c) {
  // Row-major op(A) (M, K), op(B) (K, N); stored A is (K, M) when transposed.
  const int a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  const int lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  const int64_t sa = int64_t(a_rows) * lda + 5, sb = int64_t(b_rows) * ldb + 3,
                sc = int64_t(c.M) * ldc + 1;
  const std::vector<float> a = draw(sa * c.batch, 1), b = draw(sb * c.batch, 2);
  std::vector<float> y = draw(sc * c.batch, 3);
  const std::vector<float> y0 = y;
  kernels::Backend& be = backend_for(Device::cpu());
  kernels::MathModeGuard guard(be, c.mode);
  if (c.batch == 1)
    be.gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a.data(), lda, b.data(), ldb, c.beta,
            y.data(), ldc);
  else
    be.gemm_strided_batched(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a.data(), lda, sa,
                            b.data(), ldb, sb, c.beta, y.data(), ldc, sc, c.batch);
  const double eps = std::numeric_limits<float>::epsilon();
  for (int p = 0; p < c.batch; ++p)
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) {
        double sum = 0, magnitude = 0;
        for (int k = 0; k < c.K; ++k) {
          // In a 16-bit mode the inputs are rounded to it; the products stay exact.
          const double x = kernels::round_to(
              a[p * sa + (c.trans_a ? int64_t(k) * lda + i : int64_t(i) * lda + k)], c.mode);
          const double w = kernels::round_to(
              b[p * sb + (c.trans_b ? int64_t(j) * ldb + k : int64_t(k) * ldb + j)], c.mode);
          sum += x * w;
          magnitude += std::abs(x * w);
        }
        const double old = y0[p * sc + int64_t(i) * ldc + j];
        const double expected = c.alpha * sum + (c.beta == 0 ? 0.0 : c.beta * old);
        // The f32 rounding bound of a K-term dot product, plus the update.
        const double tol =
            (c.K + 2) * eps * (std::abs(c.alpha) * magnitude + std::abs(c.beta * old));
        BOOST_TEST_REQUIRE(std::abs(y[p * sc + int64_t(i) * ldc + j] - expected) <= tol + 1e-30,
                           "T" << c.trans_a << c.trans_b << " M" << c.M << " N" << c.N << " K"
                               << c.K << " pad " << c.pad << " batch " << p << " at (" << i << ", "
                               << j << ")");
      }
  // Padding between rows and batches is left alone.
  for (int p = 0; p < c.batch; ++p)
    for (int i = 0; i < c.M; ++i)
      for (int j = c.N; j < (i + 1 < c.M ? ldc : int(sc - int64_t(i) * ldc)); ++j)
        BOOST_TEST_REQUIRE(y[p * sc + int64_t(i) * ldc + j] == y0[p * sc + int64_t(i) * ldc + j]);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_transpose_padding_alpha_beta) {
  for (int t = 0; t < 4; ++t)
    for (int pad : {0, 3})
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 0.75f}, {-1.0f, 1.0f}})
        check({bool(t & 1), bool(t & 2), 67, 45, 130, pad, alpha, beta});
}

BOOST_AUTO_TEST_CASE(tall_skinny_and_large) {
  check({false, true, 300, 40, 96, 0, 1.0f, 0.0f});     // forward: x W^T
  check({true, false, 40, 96, 300, 0, 1.0f, 1.0f});     // weight gradient, accumulated
  check({false, false, 257, 129, 513, 1, 1.0f, 0.0f});  // several blocks, odd edges
}

// A linear layer on a decode batch: few rows of x against a transposed W,
// which the backend computes as (W x^T)^T (sgemm_nt); its edges, padding and
// beta, and the direct route on either side of it.
BOOST_AUTO_TEST_CASE(few_rows_against_a_transposed_b) {
  for (int M : {kernels::kNtDirectRows, kernels::kNtDirectRows + 1, 32, 200,
                kernels::kNtSwapRowsEnd - 1, kernels::kNtSwapRowsEnd})
    for (int pad : {0, 3})
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 0.75f}})
        check({false, true, M, 2 * M + 67, 70, pad, alpha, beta});
}

BOOST_AUTO_TEST_CASE(empty_inner_dimension_scales_c) {
  check({false, false, 5, 7, 0, 1, 1.0f, 0.5f});
  check({false, false, 5, 7, 0, 1, 1.0f, 0.0f});
  check({true, true, 5, 7, 3, 0, 0.0f, 2.0f});  // alpha 0: C = beta C
}

BOOST_AUTO_TEST_CASE(strided_batches) {
  for (int t = 0; t < 4; ++t) check({bool(t & 1), bool(t & 2), 33, 40, 72, 2, 1.0f, 0.5f, 3});
}

// The bf16 math mode: inputs rounded to bf16, f32 sums. On a CPU with bf16
// dot products (AVX512-BF16, AMX) this is oneDNN's bf16 matmul, elsewhere
// the rounded f32 sgemm; both meet the same bound.
BOOST_AUTO_TEST_CASE(bf16_mode_every_transpose_padding_alpha_beta_and_batches) {
  BOOST_TEST_MESSAGE("bf16 GEMM: "
                     << (kernels::native_bf16_gemm() ? "oneDNN bf16 matmul" : "rounded sgemm"));
  for (auto mode : {kernels::MathMode::bf16, kernels::MathMode::f16}) {
    for (int t = 0; t < 4; ++t)
      for (int pad : {0, 3})
        for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 0.75f}})
          check({bool(t & 1), bool(t & 2), 67, 45, 130, pad, alpha, beta, 1, mode});
    for (int t = 0; t < 4; ++t)
      check({bool(t & 1), bool(t & 2), 33, 40, 72, 2, 1.0f, 0.5f, 3, mode});
    check({false, true, 300, 40, 96, 0, 1.0f, 0.0f, 1, mode});
  }
}

// gemm_mixed in the bf16 mode with 16-bit activations: bf16 x against an f32
// W into a bf16 y (a linear layer's forward), and bf16 dy^T x into an f32
// dW with beta 1: the f32 bound of the rounded inputs, plus y's one rounding.
BOOST_AUTO_TEST_CASE(bf16_mode_mixed_operands) {
  kernels::Backend& be = backend_for(Device::cpu());
  kernels::MathModeGuard guard(be, kernels::MathMode::bf16);
  const int M = 70, N = 50, K = 90;
  const std::vector<float> x = draw(size_t(M) * K, 4), w = draw(size_t(N) * K, 5),
                           y0 = draw(size_t(M) * N, 6);
  std::vector<uint16_t> xb(x.size()), yb(y0.size());
  be.convert_f32_to_bf16(x.data(), xb.data(), x.size());
  be.convert_f32_to_bf16(y0.data(), yb.data(), y0.size());
  for (float beta : {0.0f, 1.0f}) {
    std::vector<uint16_t> y = yb;
    kernels::MixedGemm g;
    g.trans_b = true;
    g.M = M;
    g.N = N;
    g.K = K;
    g.beta = beta;
    g.A = xb.data();
    g.a_type = kernels::FloatType::bf16;
    g.lda = K;
    g.B = w.data();
    g.ldb = K;
    g.C = y.data();
    g.c_type = kernels::FloatType::bf16;
    g.ldc = N;
    be.gemm_mixed(g);
    const double eps = std::numeric_limits<float>::epsilon();
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double sum = 0, magnitude = 0;
        for (int k = 0; k < K; ++k) {
          const double p = double(kernels::bf16_to_f32(xb[size_t(i) * K + k])) *
                           kernels::round_to(w[size_t(j) * K + k], kernels::MathMode::bf16);
          sum += p;
          magnitude += std::abs(p);
        }
        const double old = beta == 0 ? 0.0 : kernels::bf16_to_f32(yb[size_t(i) * N + j]);
        const double expected = sum + old;
        const double got = kernels::bf16_to_f32(y[size_t(i) * N + j]);
        const double tol = (K + 2) * eps * (magnitude + std::abs(old)) + std::abs(expected) / 256;
        BOOST_TEST_REQUIRE(std::abs(got - expected) <= tol, "beta " << beta << " at (" << i
                                                                    << ", " << j << ")");
      }
  }
}

BOOST_AUTO_TEST_CASE(kernel_is_named) {
  const std::string name = kernels::cpu_gemm_kernel_name();
  BOOST_TEST(name.find("oneDNN") == 0u);
  BOOST_TEST(name.find("dnnl_sgemm") != std::string::npos);
  BOOST_TEST(name.find("other") == std::string::npos);  // an ISA it could not name
}

// gemm_compact: y = x W^T with W in bf16, f16 or int8 with group scales,
// against the definition in double, in both regimes (few rows widened in
// registers, many by panels), with padded rows, accumulation and K tails;
// the thread's math mode must not change a bit.
BOOST_AUTO_TEST_SUITE(compact_weights)

BOOST_AUTO_TEST_CASE(every_type_and_regime_against_the_definition) {
  using kernels::WeightType;
  kernels::Backend& be = backend_for(Device::cpu());
  for (WeightType type : {WeightType::bf16, WeightType::f16, WeightType::i8}) {
    for (int M : {1, 4, 5, 33}) {
      for (bool accumulate : {false, true}) {
        const int N = 70, K = type == WeightType::i8 ? 128 : 131, group = 32, ldx = K + 3,
                  ldy = N + 2;
        const std::vector<float> x = draw(size_t(M) * ldx, 6), w_values = draw(size_t(N) * K, 7);
        std::vector<uint16_t> bits(size_t(N) * K);
        std::vector<int8_t> q(size_t(N) * K);
        std::vector<float> scales(size_t(N) * (K / group));
        std::vector<double> w(size_t(N) * K);  // what W stands for
        for (size_t i = 0; i < w.size(); ++i) {
          if (type == WeightType::bf16) {
            bits[i] = kernels::f32_to_bf16(w_values[i]);
            w[i] = kernels::bf16_to_f32(bits[i]);
          } else if (type == WeightType::f16) {
            const _Float16 h = static_cast<_Float16>(w_values[i]);
            std::memcpy(&bits[i], &h, 2);
            w[i] = static_cast<float>(h);
          } else {
            q[i] = int8_t(std::lround(w_values[i] * 127));
            scales[i / group] = 0.01f + 0.001f * float(i / group % 7);
            w[i] = double(q[i]) * scales[i / group];
          }
        }
        const kernels::CompactWeight cw{
            type, type == WeightType::i8 ? static_cast<const void*>(q.data()) : bits.data(),
            type == WeightType::i8 ? scales.data() : nullptr, group};
        const std::vector<float> y0 = draw(size_t(M) * ldy, 8);
        std::vector<float> y = y0, y_bf16_mode = y0;
        be.gemm_compact(M, N, K, x.data(), ldx, cw, y.data(), ldy, accumulate);
        {
          kernels::MathModeGuard mode(be, kernels::MathMode::bf16);
          be.gemm_compact(M, N, K, x.data(), ldx, cw, y_bf16_mode.data(), ldy, accumulate);
        }
        BOOST_TEST_REQUIRE(y == y_bf16_mode);
        const double eps = std::numeric_limits<float>::epsilon();
        for (int m = 0; m < M; ++m)
          for (int c = 0; c < ldy; ++c) {
            const size_t at = size_t(m) * ldy + c;
            if (c >= N) {  // padding untouched
              BOOST_TEST_REQUIRE(y[at] == y0[at]);
              continue;
            }
            double sum = accumulate ? y0[at] : 0, magnitude = std::abs(sum);
            for (int k = 0; k < K; ++k) {
              sum += double(x[size_t(m) * ldx + k]) * w[size_t(c) * K + k];
              magnitude += std::abs(double(x[size_t(m) * ldx + k]) * w[size_t(c) * K + k]);
            }
            BOOST_TEST_REQUIRE(std::abs(y[at] - sum) <= (K + 4) * eps * magnitude,
                               kernels::weight_type_name(type)
                                   << " M " << M << " accumulate " << accumulate << " at (" << m
                                   << ", " << c << ")");
          }
      }
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// oneDNN 2.6's JIT sgemm keeps data below the stack pointer: a signal handler
// run on the computing thread overwrote it (heap corruption, ~1 in 10 stopped
// runs). Signals now go to a watcher thread; a storm of them during GEMMs
// must change no result and record the first request.
BOOST_AUTO_TEST_SUITE(stop_signals)

BOOST_AUTO_TEST_CASE(a_signal_storm_during_gemms_changes_nothing) {
  const int n = 256;
  const std::vector<float> a = draw(n * n, 4), b = draw(n * n, 5);
  std::vector<float> expected(n * n), c(n * n);
  kernels::Backend& be = backend_for(Device::cpu());
  be.gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, expected.data(), n);
  std::atomic<bool> done{false};
  int sent = 0;
  std::thread storm([&] {
    // Not delivered to this thread itself (the kernel's first choice for a
    // signal a thread sends its own process).
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    while (!done.load()) {
      kill(getpid(), SIGUSR1);
      ++sent;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  int differing = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<float>* churn = new std::vector<float>(1000 + i % 97);  // heap traffic
    be.gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    differing += c != expected;
    delete churn;
  }
  done = true;
  storm.join();
  BOOST_TEST(sent > 100);
  BOOST_TEST(differing == 0);
  BOOST_TEST(stop_requested());
  BOOST_TEST(std::string(stop_signal_name()) == "SIGUSR1");
}

BOOST_AUTO_TEST_SUITE_END()
