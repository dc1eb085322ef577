// matmul and linear (x W^T + b, Hugging Face's weight layout (out, in)).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/timer.hpp"
#include "kernels/cpu/gemm_kernel.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

namespace {
Shape with_last(const Shape& shape, int64_t last) {
  Shape out = shape;
  out.back() = last;
  return out;
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_f32("matmul", {&a, &b});
  TURBINE_CHECK(a.ndim() >= 2 && (b.ndim() == 2 || b.ndim() == a.ndim()),
                "matmul: unsupported shapes {} @ {} (need (..., M, K) @ (K, N) or batched "
                "(B, M, K) @ (B, K, N))",
                shape_str(a.shape()), shape_str(b.shape()));
  const int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  TURBINE_CHECK(b.dim(-2) == K, "matmul: inner dimensions differ: {} @ {}", shape_str(a.shape()),
                shape_str(b.shape()));
  Tensor y = Tensor::empty(with_last(a.shape(), N), DType::f32, a.device());
  kernels::Backend& be = backend_for(a.device());
  if (b.ndim() == 2) {
    be.gemm(false, false, a.numel() / K, N, K, 1.0f, a.data<float>(), K, b.data<float>(), N, 0.0f,
            y.data<float>(), N);
  } else {
    TURBINE_CHECK(a.ndim() == 3 && a.dim(0) == b.dim(0), "matmul: batch sizes differ: {} @ {}",
                  shape_str(a.shape()), shape_str(b.shape()));
    be.gemm_strided_batched(false, false, M, N, K, 1.0f, a.data<float>(), K, M * K, b.data<float>(),
                            N, K * N, 0.0f, y.data<float>(), N, M * N, a.dim(0));
  }
  return y;
}

void matmul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  check_f32("matmul_backward", {&a, &b, &dy});
  const int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  kernels::Backend& be = backend_for(a.device());
  if (b.ndim() == 2) {
    const int64_t rows = a.numel() / K;
    if (da) {  // da (rows, K) = dy (rows, N) @ b^T
      const bool acc = prepare_grad(da, a);
      be.gemm(false, true, rows, K, N, 1.0f, dy.data<float>(), N, b.data<float>(), N,
              acc ? 1.0f : 0.0f, da->data<float>(), K);
    }
    if (db) {  // db (K, N) = a^T @ dy
      const bool acc = prepare_grad(db, b);
      be.gemm(true, false, K, N, rows, 1.0f, a.data<float>(), K, dy.data<float>(), N,
              acc ? 1.0f : 0.0f, db->data<float>(), N);
    }
    return;
  }
  const int batch = a.dim(0);
  if (da) {
    const bool acc = prepare_grad(da, a);
    be.gemm_strided_batched(false, true, M, K, N, 1.0f, dy.data<float>(), N, M * N, b.data<float>(),
                            N, K * N, acc ? 1.0f : 0.0f, da->data<float>(), K, M * K, batch);
  }
  if (db) {
    const bool acc = prepare_grad(db, b);
    be.gemm_strided_batched(true, false, K, N, M, 1.0f, a.data<float>(), K, M * K, dy.data<float>(),
                            N, M * N, acc ? 1.0f : 0.0f, db->data<float>(), N, K * N, batch);
  }
}

namespace {
// Row-major C (M, N) = alpha * op(A) op(B) + beta * C over tensors' storage:
// f32 on the f32 kernel, any 16-bit operand through gemm_mixed.
void gemm_any(kernels::Backend& be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
              const Tensor& a, int64_t lda, const Tensor& b, int64_t ldb, float beta,
              const Tensor& c, int64_t ldc) {
  if (a.dtype() == DType::f32 && b.dtype() == DType::f32 && c.dtype() == DType::f32)
    return be.gemm(trans_a, trans_b, int(M), int(N), int(K), 1.0f, a.data<float>(), int(lda),
                   b.data<float>(), int(ldb), beta, c.data<float>(), int(ldc));
  kernels::MixedGemm g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.M = int(M);
  g.N = int(N);
  g.K = int(K);
  g.beta = beta;
  g.A = a.raw_data();
  g.a_type = float_type(a.dtype());
  g.lda = int(lda);
  g.B = b.raw_data();
  g.b_type = float_type(b.dtype());
  g.ldb = int(ldb);
  g.C = c.raw_data();
  g.c_type = float_type(c.dtype());
  g.ldc = int(ldc);
  be.gemm_mixed(g);
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const kernels::FloatType t = check_activations("linear", {&x}, {&weight, &bias});
  TURBINE_CHECK(weight.ndim() == 2 && x.ndim() >= 1 && x.dim(-1) == weight.dim(1),
                "linear: input {} does not match weight {} (expected (..., {}))", x.str(),
                weight.str(), weight.ndim() == 2 ? weight.dim(1) : -1);
  const int64_t in = weight.dim(1), out = weight.dim(0), rows = x.numel() / in;
  TURBINE_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.dim(0) == out),
                "linear: bias {} does not match weight {}", bias.str(), weight.str());
  // The output has the input's type (16-bit activations stay 16-bit).
  Tensor y = Tensor::empty(with_last(x.shape(), out), x.dtype(), x.device());
  kernels::Backend& be = backend_for(x.device());
  gemm_any(be, false, true, rows, out, in, x, in, weight, in, 0.0f, y, out);
  if (bias.defined()) {
    if (t == kernels::FloatType::f32)
      be.add_bias(y.data<float>(), bias.data<float>(), int(rows), int(out));
    else
      be.add_bias16(t, bits(y), bias.data<float>(), int(rows), int(out));
  }
  return y;
}

void linear_backward(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor* dx,
                     Tensor* dweight, Tensor* dbias) {
  const kernels::FloatType t = check_activations("linear_backward", {&x, &dy}, {&weight});
  const int64_t in = weight.dim(1), out = weight.dim(0), rows = x.numel() / in;
  TURBINE_CHECK(dy.numel() == rows * out, "linear_backward: gradient {} for output of {}", dy.str(),
                x.str());
  kernels::Backend& be = backend_for(x.device());
  if (dx) {  // dx (rows, in) = dy (rows, out) @ W (out, in)
    const bool acc = prepare_grad(dx, x);
    gemm_any(be, false, false, rows, in, out, dy, out, weight, in, acc ? 1.0f : 0.0f, *dx, in);
  }
  if (dweight) {  // dW (out, in) = dy^T (out, rows) @ x (rows, in), f32 like W
    const bool acc = prepare_grad(dweight, weight);
    gemm_any(be, true, false, out, in, rows, dy, out, x, in, acc ? 1.0f : 0.0f, *dweight, in);
  }
  if (dbias) {
    const bool acc = prepare_grad(dbias, Shape{out}, x.device());
    if (t == kernels::FloatType::f32)
      be.bias_backward(dy.data<float>(), dbias->data<float>(), int(rows), int(out), acc);
    else
      be.bias_backward16(t, bits(dy), dbias->data<float>(), int(rows), int(out), acc);
  }
}

double measure_gemm_tflops(Device device, int n, double seconds) {
  const Tensor a = Tensor::randn({n, n}, 1, 0, 1.0f, device);
  const Tensor b = Tensor::randn({n, n}, 1, 1, 1.0f, device);
  Tensor c = Tensor::empty({n, n}, DType::f32, device);
  kernels::Backend& be = backend_for(device);
  auto run = [&] {
    be.gemm(false, false, n, n, n, 1, a.data<float>(), n, b.data<float>(), n, 0, c.data<float>(),
            n);
    be.synchronize();
  };
  // Warm-up for a fifth of the time (two calls at least): the first calls
  // start the thread pool, fault in the pages and the library's packing
  // buffers, and give the clock time to ramp; timing them made the peak too
  // low (an MFU of 122% on a Sapphire Rapids VM).
  Timer warmup;
  for (int calls = 0; calls < 2 || warmup.seconds() < seconds / 5; ++calls) run();
  // Then the best of 5 rounds: a neighbour's burst or a page-cache flush can
  // only slow a round down, so the fastest round is the hardware's rate.
  const double flops = 2.0 * n * n * double(n);
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    Timer t;
    int calls = 0;
    do {
      run();
      ++calls;
    } while (t.seconds() < seconds * 0.8 / 5);
    best = std::max(best, flops * calls / t.seconds());
  }
  return best / 1e12;
}

std::string gemm_kernel_name(Device device) {
  return device.is_cpu() ? kernels::cpu_gemm_kernel_name() : "cuBLASLt";
}

double measure_gemm_peak_tflops(Device device, double seconds) {
  kernels::Backend& be = backend_for(device);
  // The CPU's bf16/f16 modes only round the inputs before an f32 GEMM, so
  // its peak is the f32 one; a GPU's is the tensor cores' in the math mode.
  kernels::MathModeGuard guard(be, device.is_cpu() ? kernels::MathMode::f32 : be.math_mode());
  // Sizes that reach the peak: at n = 768 a CPU's GEMM still spends a tenth
  // of its time packing and in thread fork/join, and a GPU's does not fill
  // the card below 8192.
  return measure_gemm_tflops(device, device.is_cpu() ? 2048 : 8192, seconds);
}

}  // namespace turbine::ops

// ---- compact weights ---------------------------------------------------------------

namespace turbine::ops {

namespace {
kernels::WeightType weight_type(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return kernels::WeightType::bf16;
    case DType::f16:
      return kernels::WeightType::f16;
    case DType::i8:
      return kernels::WeightType::i8;
    default:
      TURBINE_FAIL("compact weights are bf16, f16 or i8, not {}", dtype_name(dtype));
  }
}
}  // namespace

int64_t CompactTensor::nbytes() const {
  return int64_t(values.nbytes()) + (scales.defined() ? int64_t(scales.nbytes()) : 0);
}

CompactTensor compact_weight(const Tensor& weight, DType type, int group) {
  check_f32("compact_weight", {&weight});
  TURBINE_CHECK(weight.ndim() == 2, "compact_weight: weight {} is not (out, in)", weight.str());
  weight_type(type);  // checks the type
  CompactTensor out;
  if (type != DType::i8) {
    out.values = weight.contiguous().to(type);
    return out;
  }
  const int64_t rows = weight.dim(0), in = weight.dim(1);
  out.group = group == 0 ? int(in) : group;
  TURBINE_CHECK(out.group > 0 && in % out.group == 0,
                "compact_weight: int8 group {} does not divide the {} inputs", group, in);
  const int64_t groups = in / out.group;
  const std::vector<float> w = weight.to(Device::cpu()).contiguous().to_vector<float>();
  std::vector<int8_t> q(w.size());
  std::vector<float> scales(size_t(rows * groups));
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < rows * groups; ++g) {
    const float* src = w.data() + g * out.group;
    float peak = 0;
    for (int i = 0; i < out.group; ++i) peak = std::max(peak, std::abs(src[i]));
    const float scale = peak > 0 ? peak / 127.0f : 1.0f;
    scales[size_t(g)] = scale;
    for (int i = 0; i < out.group; ++i)
      q[size_t(g * out.group + i)] =
          int8_t(std::clamp(std::nearbyint(src[i] / scale), -127.0f, 127.0f));
  }
  out.values = Tensor::from_vector<int8_t>({rows, in}, q, weight.device());
  out.scales = Tensor::from_vector<float>({rows, groups}, scales, weight.device());
  return out;
}

Tensor expand_weight(const CompactTensor& weight) {
  if (weight.values.dtype() != DType::i8) return weight.values.to(DType::f32);
  const int64_t rows = weight.out_features(), in = weight.in_features();
  const std::vector<int8_t> q = weight.values.to(Device::cpu()).to_vector<int8_t>();
  const std::vector<float> scales = weight.scales.to(Device::cpu()).to_vector<float>();
  std::vector<float> w(q.size());
  for (size_t i = 0; i < w.size(); ++i)
    w[i] =
        float(q[i]) *
        scales[i / size_t(in) * size_t(in / weight.group) + i % size_t(in) / size_t(weight.group)];
  return Tensor::from_vector<float>({rows, in}, w, weight.values.device());
}

Tensor embedding_compact(const Tensor& ids, const CompactTensor& table) {
  TURBINE_CHECK(table.values.device().is_cpu(),
                "embedding_compact: a table on the CPU only (a GPU keeps its f32 embeddings)");
  const std::vector<int64_t> index =
      to_index(ids.to(Device::cpu()), "embedding_compact").to_vector<int64_t>();
  const int64_t vocab = table.out_features(), dim = table.in_features();
  Shape shape = ids.shape();
  shape.push_back(dim);
  Tensor out = Tensor::empty(shape);
  float* y = out.data<float>();
  kernels::Backend& be = backend_for(Device::cpu());
  for (size_t n = 0; n < index.size(); ++n) {
    const int64_t row = index[n];
    TURBINE_CHECK(row >= 0 && row < vocab, "embedding_compact: token id {} is outside [0, {})", row,
                  vocab);
    float* dst = y + int64_t(n) * dim;
    switch (table.values.dtype()) {
      case DType::bf16:
        be.convert_bf16_to_f32(static_cast<const uint16_t*>(table.values.raw_data()) + row * dim,
                               dst, size_t(dim));
        break;
      case DType::f16:
        be.convert_f16_to_f32(static_cast<const uint16_t*>(table.values.raw_data()) + row * dim,
                              dst, size_t(dim));
        break;
      case DType::i8: {
        const int8_t* q = table.values.data<int8_t>() + row * dim;
        const float* scale = table.scales.data<float>() + row * (dim / table.group);
        for (int64_t i = 0; i < dim; ++i) dst[i] = float(q[i]) * scale[i / table.group];
        break;
      }
      default:
        TURBINE_FAIL("embedding_compact: table of {}", table.values.str());
    }
  }
  return out;
}

Tensor linear_compact(const Tensor& x_any, const CompactTensor& weight, const Tensor& bias) {
  const Tensor x = x_any.contiguous();
  check_f32("linear_compact", {&x, &bias});
  const kernels::WeightType type = weight_type(weight.values.dtype());
  const int64_t in = weight.in_features(), out = weight.out_features();
  TURBINE_CHECK(x.ndim() >= 1 && x.dim(-1) == in,
                "linear_compact: input {} does not match weight {} (expected (..., {}))", x.str(),
                weight.values.str(), in);
  TURBINE_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.dim(0) == out),
                "linear_compact: bias {} does not match weight {}", bias.str(),
                weight.values.str());
  TURBINE_CHECK(weight.values.device() == x.device(), "linear_compact: input on {}, weight on {}",
                x.device().str(), weight.values.device().str());
  TURBINE_CHECK(
      type != kernels::WeightType::i8 || (weight.group > 0 && in % weight.group == 0 &&
                                          weight.scales.numel() == out * (in / weight.group)),
      "linear_compact: int8 weight {} with group {} needs ({}, in / group) scales, has {}",
      weight.values.str(), weight.group, out, weight.scales.str());
  const int64_t rows = x.numel() / in;
  Tensor y = Tensor::empty(with_last(x.shape(), out), DType::f32, x.device());
  kernels::Backend& be = backend_for(x.device());
  const kernels::CompactWeight w{
      type, weight.values.raw_data(),
      type == kernels::WeightType::i8 ? weight.scales.data<float>() : nullptr, weight.group};
  be.gemm_compact(int(rows), int(out), int(in), x.data<float>(), int(in), w, y.data<float>(),
                  int(out), false);
  if (bias.defined()) be.add_bias(y.data<float>(), bias.data<float>(), int(rows), int(out));
  return y;
}

}  // namespace turbine::ops
