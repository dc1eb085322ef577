// GEMM speed at the shapes BLOOM training runs. Default: the CPU backend's
// own GEMM (the kernel Turbine chose), whose best figure is the machine's
// GEMM peak that tools/bench-train-step prints for scale (last line, JSON).
// --compare: the candidate libraries called directly, as this process's
// environment configured them (OPENBLAS_CORETYPE, ONEDNN_MAX_CPU_ISA,
// OMP_NUM_THREADS are read when the libraries load, so tools/bench-gemm runs
// this once per setting): one JSON line per library and shape.
// --compact: inference's y = x W^T with W in f32 (the backend's GEMM) and in
// bf16, f16 and int8 (Backend::gemm_compact) at decoding and prefill row
// counts, one JSON line per (shape, type): time per call, weight bytes read
// per second, and the speed-up over f32.
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/timer.hpp"
#include "kernels/cpu/gemm_kernel.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor.hpp"

extern "C" char* openblas_get_corename(void);

using namespace turbine;

namespace {

// C (M, N) = op(A) op(B), row-major; `count` is how many times one training
// step of tools/bench-train-step's model (batch 8 x 256 = 2048 rows, hidden
// 384, vocab 8192, 6 layers) runs this product, for the step-weighted figure.
struct GemmShape {
  const char* role;
  bool trans_a, trans_b;
  int M, N, K, count;
};

const std::vector<GemmShape>& training_shapes() {
  static const std::vector<GemmShape> shapes = {
      {"square", false, false, 2048, 2048, 2048, 0},
      // forward, y = x W^T (weights are (out, in))
      {"fwd qkv", false, true, 2048, 1152, 384, 6},
      {"fwd dense", false, true, 2048, 384, 384, 6},
      {"fwd h->4h", false, true, 2048, 1536, 384, 6},
      {"fwd 4h->h", false, true, 2048, 384, 1536, 6},
      {"fwd head", false, true, 2048, 8192, 384, 1},
      // backward dx = dy W
      {"dx qkv", false, false, 2048, 384, 1152, 6},
      {"dx dense", false, false, 2048, 384, 384, 6},
      {"dx h->4h", false, false, 2048, 384, 1536, 6},
      {"dx 4h->h", false, false, 2048, 1536, 384, 6},
      {"dx head", false, false, 2048, 384, 8192, 1},
      // backward dW = dy^T x
      {"dW qkv", true, false, 1152, 384, 2048, 6},
      {"dW dense", true, false, 384, 384, 2048, 6},
      {"dW h->4h", true, false, 1536, 384, 2048, 6},
      {"dW 4h->h", true, false, 384, 1536, 2048, 6},
      {"dW head", true, false, 8192, 384, 2048, 1},
  };
  return shapes;
}

using Gemm = std::function<void(const GemmShape&, const float*, const float*, float*)>;

struct Candidate {
  std::string library, config;
  Gemm gemm;
  double peak = 0, mix_flops = 0, mix_seconds = 0;
};

// Times every shape on every candidate and prints one JSON line per pair,
// then one summary line per candidate: its best GFLOP/s and its step-weighted
// GFLOP/s (all of a step's GEMM FLOPs over their total time). Seconds per call
// are the best of 5 rounds after a warm-up call, the candidates taking turns
// round by round, so a neighbour's burst on a shared machine costs each of
// them a round rather than one of them the whole figure.
void run_shapes(std::vector<Candidate>& candidates, double seconds) {
  for (const GemmShape& s : training_shapes()) {
    const Tensor a = Tensor::randn({s.M, s.K}, 1, 0), b = Tensor::randn({s.K, s.N}, 1, 1);
    Tensor c = Tensor::empty({s.M, s.N});
    const double flops = 2.0 * s.M * s.N * double(s.K);
    std::vector<double> best(candidates.size(), 1e30);
    const int rounds = 5;
    for (int round = -1; round < rounds; ++round) {
      for (size_t i = 0; i < candidates.size(); ++i) {
        auto call = [&] {
          candidates[i].gemm(s, a.data<float>(), b.data<float>(), c.data<float>());
        };
        if (round < 0) {  // warm-up: threads started, pages touched, packing buffers allocated
          call();
          continue;
        }
        Timer t;
        int reps = 0;
        do {
          call();
          ++reps;
        } while (t.seconds() < seconds / rounds);
        best[i] = std::min(best[i], t.seconds() / reps);
      }
    }
    for (size_t i = 0; i < candidates.size(); ++i) {
      Candidate& k = candidates[i];
      k.peak = std::max(k.peak, flops / best[i] / 1e9);
      k.mix_flops += s.count * flops;
      k.mix_seconds += s.count * best[i];
      std::printf(
          "{\"library\":\"%s\",\"config\":\"%s\",\"threads\":%d,\"role\":\"%s\","
          "\"op\":\"%c%c\",\"M\":%d,\"N\":%d,\"K\":%d,\"gflops\":%.1f}\n",
          k.library.c_str(), k.config.c_str(), omp_get_max_threads(), s.role, s.trans_a ? 'T' : 'N',
          s.trans_b ? 'T' : 'N', s.M, s.N, s.K, flops / best[i] / 1e9);
    }
    std::fflush(stdout);
  }
  for (const Candidate& k : candidates)
    std::printf(
        "{\"library\":\"%s\",\"config\":\"%s\",\"threads\":%d,\"peak_gflops\":%.1f,"
        "\"step_mix_gflops\":%.1f}\n",
        k.library.c_str(), k.config.c_str(), omp_get_max_threads(), k.peak,
        k.mix_flops / k.mix_seconds / 1e9);
}

// Leading dimensions of row-major op(A) (M, K) and op(B) (K, N).
int lda(const GemmShape& s) {
  return s.trans_a ? s.M : s.K;
}
int ldb(const GemmShape& s) {
  return s.trans_b ? s.K : s.N;
}

std::vector<Candidate> libraries() {
  std::vector<Candidate> out;
  out.push_back({"openblas", openblas_get_corename(),
                 [](const GemmShape& s, const float* a, const float* b, float* c) {
                   cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans,
                               s.trans_b ? CblasTrans : CblasNoTrans, s.M, s.N, s.K, 1.0f, a,
                               lda(s), b, ldb(s), 0.0f, c, s.N);
                 }});
  out.push_back({"onednn", kernels::onednn_isa_name(),
                 [](const GemmShape& s, const float* a, const float* b, float* c) {
                   dnnl_sgemm(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.M, s.N, s.K, 1.0f, a,
                              lda(s), b, ldb(s), 0.0f, c, s.N);
                 }});
  return out;
}

// --compact: x (M, K) W^T, W (N, K), for each weight type against f32 on
// the same shape, the types taking turns round by round.
void run_compact(double seconds) {
  using kernels::WeightType;
  kernels::Backend& be = backend_for(Device::cpu());
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{1, 4096, 4096},  {8, 4096, 4096},  {32, 4096, 4096},
                          {256, 4096, 4096}, {1, 16384, 4096}, {1, 4096, 16384}};
  for (const Shape& s : shapes) {
    const Tensor w = Tensor::randn({s.N, s.K}, 2, 0, 0.02f), x = Tensor::randn({s.M, s.K}, 2, 1);
    Tensor y = Tensor::empty({s.M, s.N});
    struct Variant {
      std::string type;
      ops::CompactTensor compact;  // undefined values: f32
      double best = 1e30;
    };
    std::vector<Variant> variants = {{"f32", {}},
                                     {"bf16", ops::compact_weight(w, DType::bf16)},
                                     {"f16", ops::compact_weight(w, DType::f16)},
                                     {"i8 group 128", ops::compact_weight(w, DType::i8, 128)}};
    auto call = [&](const Variant& v) {
      if (!v.compact.values.defined()) {
        be.gemm(false, true, s.M, s.N, s.K, 1.0f, x.data<float>(), s.K, w.data<float>(), s.K, 0.0f,
                y.data<float>(), s.N);
        return;
      }
      const auto type = v.compact.values.dtype() == DType::i8    ? WeightType::i8
                        : v.compact.values.dtype() == DType::f16 ? WeightType::f16
                                                                 : WeightType::bf16;
      const kernels::CompactWeight cw{
          type, v.compact.values.raw_data(),
          type == WeightType::i8 ? v.compact.scales.data<float>() : nullptr, v.compact.group};
      be.gemm_compact(s.M, s.N, s.K, x.data<float>(), s.K, cw, y.data<float>(), s.N, false);
    };
    const int rounds = 5;
    for (int round = -1; round < rounds; ++round)
      for (Variant& v : variants) {
        Timer t;
        int reps = 0;
        do {
          call(v);
          ++reps;
        } while (round >= 0 && t.seconds() < seconds / rounds);
        if (round >= 0) v.best = std::min(v.best, t.seconds() / reps);
      }
    for (const Variant& v : variants) {
      const double bytes = v.compact.values.defined() ? double(v.compact.nbytes())
                                                      : 4.0 * s.N * double(s.K);
      std::printf(
          "{\"weights\":\"%s\",\"threads\":%d,\"M\":%d,\"N\":%d,\"K\":%d,\"ms\":%.3f,"
          "\"weight_gb_per_s\":%.1f,\"gflops\":%.1f,\"speedup_vs_f32\":%.2f}\n",
          v.type.c_str(), omp_get_max_threads(), s.M, s.N, s.K, 1e3 * v.best, bytes / v.best / 1e9,
          2.0 * s.M * s.N * s.K / v.best / 1e9, variants[0].best / v.best);
    }
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GEMM GFLOP/s at BLOOM training shapes"};
  bool compare = false, compact = false;
  double seconds = 1.0;
  app.add_flag("--compare", compare,
               "time OpenBLAS and oneDNN directly instead of the backend's chosen kernel");
  app.add_flag("--compact", compact,
               "inference products with bf16, f16 and int8 weights against f32 weights");
  app.add_option("--seconds", seconds, "timing per shape and candidate (5 rounds)")
      ->check(CLI::Range(0.01, 60.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (compact) {
    run_compact(seconds);
    return 0;
  }
  if (compare) {
    std::vector<Candidate> candidates = libraries();
    run_shapes(candidates, seconds);
    return 0;
  }
  kernels::Backend& be = backend_for(Device::cpu());
  std::vector<Candidate> ours = {
      {"turbine", kernels::cpu_gemm_kernel_name(),
       [&](const GemmShape& s, const float* a, const float* b, float* c) {
         be.gemm(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a, lda(s), b, ldb(s), 0.0f, c, s.N);
       }}};
  run_shapes(ours, seconds);
  return 0;
}
