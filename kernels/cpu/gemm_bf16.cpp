// The CPU's bf16 GEMM: bf16 operands, f32 accumulation and output, through
// oneDNN's matmul primitive on CPUs whose bf16 dot products it runs natively
// (AVX512-BF16 or AMX: its brgemm kernels). There it is 1.6-1.9x the f32
// sgemm at the training step's shapes (measured on a Zen 4 with AVX512-BF16,
// bench/RESULTS.md), and it multiplies the same numbers the bf16 math mode
// defines (inputs rounded to bf16, exact products, f32 sums): only the order
// of the sums differs from rounding the inputs before an f32 sgemm, which
// stays the route where oneDNN would emulate bf16 (AVX2, plain AVX-512).
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

namespace {

using dt = dnnl::memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A (rows, cols) operand stored row-major with leading dimension ld, or its
// transpose (stored (cols, rows)), as oneDNN's strided 2-D descriptor.
dnnl::memory::desc operand(int rows, int cols, int ld, bool transposed, dt type) {
  const dnnl::memory::dims strides =
      transposed ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1};
  return dnnl::memory::desc({rows, cols}, type, strides);
}

struct Key {
  bool trans_a, trans_b;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
  auto tie() const { return std::tie(trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Plan {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
};

Plan make_plan(const Key& k) {
  dnnl::primitive_attr attr;
  if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
  if (k.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(k.beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc desc(operand(k.M, k.K, k.lda, k.trans_a, dt::bf16),
                                operand(k.K, k.N, k.ldb, k.trans_b, dt::bf16),
                                operand(k.M, k.N, k.ldc, false, dt::f32));
  dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
  return {pd, dnnl::matmul(pd)};
}

}  // namespace

bool native_bf16_gemm() {
  static const bool native = [] {
    try {
      const Plan plan = make_plan({false, true, 64, 64, 64, 64, 64, 64, 1.0f, 0.0f});
      const std::string impl = plan.pd.impl_info_str();
      return impl.find("bf16") != std::string::npos || impl.find("amx") != std::string::npos;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return native;
}

void bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, float* C, int ldc) {
  const Key key{trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta};
  // Plans per thread: a server thread and a training step never share one.
  // Training repeats a few shapes; a server's decode steps vary M, so the
  // cache is emptied when it grows past kMaxPlans rather than kept forever.
  constexpr size_t kMaxPlans = 256;
  thread_local std::map<Key, Plan> plans;
  auto it = plans.find(key);
  if (it == plans.end() && plans.size() >= kMaxPlans) plans.clear();
  try {
    if (it == plans.end()) it = plans.emplace(key, make_plan(key)).first;
    const Plan& plan = it->second;
    dnnl::memory a(plan.pd.src_desc(), cpu_engine(), const_cast<uint16_t*>(A));
    dnnl::memory b(plan.pd.weights_desc(), cpu_engine(), const_cast<uint16_t*>(B));
    dnnl::memory c(plan.pd.dst_desc(), cpu_engine(), C);
    dnnl::stream stream(cpu_engine());
    plan.primitive.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
  } catch (const dnnl::error& e) {
    TURBINE_FAIL("oneDNN bf16 matmul failed ({}) for {}{} M={} N={} K={} lda={} ldb={} ldc={}",
                 e.what(), trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc);
  }
}

}  // namespace turbine::kernels
