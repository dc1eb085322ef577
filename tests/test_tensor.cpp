// Tensors: dtypes, views, copies, casts, memory accounting and scoped
// (profiling) backends.
#define BOOST_TEST_MODULE tensor
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <thread>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/backend.hpp"
#include "kernels/profiling.hpp"
#include "ops/ops.hpp"
#include "tensor/hdf5.hpp"
#include "tensor/tensor.hpp"
#include "test_util.hpp"

using namespace turbine;

BOOST_AUTO_TEST_CASE(dtypes_and_sizes) {
  BOOST_TEST(dtype_size(DType::f32) == 4u);
  BOOST_TEST(dtype_size(DType::bf16) == 2u);
  BOOST_TEST(dtype_size(DType::i64) == 8u);
  BOOST_TEST(dtype_size(DType::u8) == 1u);
  BOOST_TEST(dtype_size(DType::u16) == 2u);
  BOOST_TEST((dtype_from_name("bf16") == DType::bf16));
  BOOST_CHECK_THROW(dtype_from_name("f8"), Error);
  BOOST_TEST(Device::parse("cuda:3").index == 3);
  BOOST_CHECK_THROW(Device::parse("gpu"), Error);
}

BOOST_AUTO_TEST_CASE(views_share_storage) {
  Tensor t = Tensor::from_vector<float>({2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  Tensor v = t.view({3, -1});
  BOOST_TEST((v.shape() == Shape{3, 2}));
  v.data<float>()[0] = 42;
  BOOST_TEST(t.data<float>()[0] == 42.0f);
  Tensor n = t.narrow(1, 1, 2);
  BOOST_TEST(!n.is_contiguous());
  BOOST_TEST((n.contiguous().to_vector<float>() == std::vector<float>{1, 2, 4, 5}));
  BOOST_CHECK_THROW(n.view({4}), Error);
  BOOST_CHECK_THROW(t.view({4, 2}), Error);
  BOOST_CHECK_THROW(t.narrow(0, 1, 2), Error);
}

BOOST_AUTO_TEST_CASE(casts_round_trip) {
  const std::vector<float> values = {1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f};
  const Tensor f = Tensor::from_vector<float>({5}, values);
  const auto bf = f.to(DType::bf16).to(DType::f32).to_vector<float>();
  const auto h = f.to(DType::f16).to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < values.size(); ++i) {
    BOOST_TEST(std::abs(bf[i] - values[i]) <= std::abs(values[i]) * (1.0f / 128));
    BOOST_TEST(std::abs(h[i] - values[i]) <= std::abs(values[i]) * (1.0f / 1024));
  }
  BOOST_TEST(bf[0] == 1.0f);
  BOOST_TEST(bf[1] == -2.5f);
  const Tensor ids = Tensor::from_vector<uint16_t>({3}, std::vector<uint16_t>{1, 65535, 7});
  BOOST_TEST((ids.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, 65535, 7}));
  BOOST_TEST(
      (ids.to(DType::i32).to(DType::u8).to_vector<uint8_t>() == std::vector<uint8_t>{1, 255, 7}));
}

BOOST_AUTO_TEST_CASE(memory_is_accounted) {
  const auto before = memory_stats(Device::cpu());
  reset_peak_memory(Device::cpu());
  {
    Tensor a = Tensor::empty({1024, 256});  // 1 MiB
    const auto during = memory_stats(Device::cpu());
    BOOST_TEST(during.current_bytes - before.current_bytes == 1 << 20);
    BOOST_TEST(during.peak_bytes >= during.current_bytes);
  }
  const auto after = memory_stats(Device::cpu());
  BOOST_TEST(after.current_bytes == before.current_bytes);
  BOOST_TEST(after.peak_bytes - before.current_bytes >= 1 << 20);
}

BOOST_AUTO_TEST_CASE(rng_is_counter_based) {
  const auto a = philox4x32(1, 2, 3), b = philox4x32(1, 2, 3), c = philox4x32(1, 2, 4);
  BOOST_TEST((a == b));
  BOOST_TEST((a != c));
  // Random123's known-answer test for Philox4x32-10 with zero key and counter.
  const auto zero = philox4x32(0, 0, 0);
  BOOST_TEST(zero[0] == 0x6627e8d5u);
  BOOST_TEST(zero[1] == 0xe169c58du);
  const Tensor r = Tensor::randn({20000}, 5, 0);
  double mean = 0, var = 0;
  for (float x : r.to_vector<float>()) mean += x;
  mean /= 20000;
  for (float x : r.to_vector<float>()) var += (x - mean) * (x - mean);
  var /= 20000;
  BOOST_TEST(std::abs(mean) < 0.03);
  BOOST_TEST(std::abs(var - 1.0) < 0.05);
}

BOOST_AUTO_TEST_CASE(bad_tensor_use_is_an_error) {
  const Tensor f = Tensor::zeros({2});
  BOOST_CHECK_THROW(f.data<int64_t>(), Error);
  BOOST_CHECK_THROW(Tensor::from_vector<float>({3}, std::vector<float>{1, 2}), Error);
  BOOST_CHECK_THROW(Tensor().shape(), Error);
  if (kernels::cuda_device_count() == 0)
    BOOST_CHECK_THROW(Tensor::zeros({2}, DType::f32, Device::cuda(0)), Error);
}

BOOST_AUTO_TEST_CASE(i8_tensors_round_trip) {
  const std::vector<int8_t> values = {-128, -7, 0, 5, 127, -1};
  const Tensor q = Tensor::from_vector<int8_t>({2, 3}, values);
  BOOST_TEST(dtype_name(q.dtype()) == std::string("i8"));
  BOOST_TEST(q.nbytes() == 6u);
  BOOST_TEST((dtype_from_name("i8") == DType::i8));
  BOOST_TEST(q.to_vector<int8_t>() == values);
  // Integer conversions keep the sign; a strided view copies.
  BOOST_TEST(
      (q.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-128, -7, 0, 5, 127, -1}));
  BOOST_TEST(
      (q.narrow(1, 1, 2).contiguous().to_vector<int8_t>() == std::vector<int8_t>{-7, 0, 127, -1}));
  // HDF5 stores them as signed 8-bit integers and reads them back as i8.
  testing::TempDir dir("i8");
  {
    H5File file(dir.file("q.h5"), H5File::Mode::create);
    file.write("q", q);
  }
  H5File file(dir.file("q.h5"), H5File::Mode::read);
  BOOST_TEST((file.dtype("q") == DType::i8));
  BOOST_TEST(file.read("q").to_vector<int8_t>() == values);
}

BOOST_AUTO_TEST_CASE(contiguous_copies_strided_views) {
  // A preallocated cache (B, H, Tmax, D) and views of it: the first t
  // positions (one strided block), a middle head range, a strided last dim.
  const int64_t B = 2, H = 3, Tmax = 5, D = 4;
  std::vector<float> values(B * H * Tmax * D);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) + 0.5f;
  const Tensor cache = Tensor::from_vector<float>({B, H, Tmax, D}, values);
  const auto expect = [&](const Tensor& view, int dim, int64_t start, int64_t length) {
    std::vector<float> want;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < Tmax; ++t)
          for (int64_t d = 0; d < D; ++d) {
            const int64_t at[] = {b, h, t, d};
            if (at[dim] >= start && at[dim] < start + length)
              want.push_back(values[((b * H + h) * Tmax + t) * D + d]);
          }
    BOOST_TEST(!view.is_contiguous());
    BOOST_TEST(view.contiguous().to_vector<float>() == want);
  };
  expect(cache.narrow(2, 0, 3), 2, 0, 3);  // decoded positions so far
  expect(cache.narrow(2, 2, 2), 2, 2, 2);
  expect(cache.narrow(1, 1, 1), 1, 1, 1);  // a head
  expect(cache.narrow(3, 1, 2), 3, 1, 2);  // inside the last dim
  // Two narrowed dims: one batch row's positions 1..3.
  BOOST_TEST(cache.narrow(0, 1, 1).narrow(2, 1, 3).contiguous().to_vector<float>() ==
             cache.narrow(2, 1, 3).contiguous().narrow(0, 1, 1).to_vector<float>());
}

BOOST_AUTO_TEST_CASE(math_mode_is_per_thread) {
  // A server thread in f32 and a training thread in bf16 on one backend:
  // each sees its own mode, and each product is its mode's.
  std::vector<float> xs(32 * 24), ws(24 * 16);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = philox_normal(4, 0, 0, i);
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = philox_normal(4, 1, 0, i);
  const Tensor x = Tensor::from_vector<float>({32, 24}, xs);
  const Tensor w = Tensor::from_vector<float>({24, 16}, ws);
  kernels::Backend& cpu = kernels::cpu_backend();
  const auto f32 = ops::matmul(x, w).to_vector<float>();
  std::vector<float> bf16;
  {
    kernels::MathModeGuard guard(cpu, kernels::MathMode::bf16);
    bf16 = ops::matmul(x, w).to_vector<float>();
  }
  BOOST_REQUIRE(bf16 != f32);
  std::vector<float> in_training, in_server;
  kernels::MathMode seen_by_server = kernels::MathMode::bf16;
  std::thread training([&] {
    kernels::MathModeGuard guard(cpu, kernels::MathMode::bf16);
    for (int i = 0; i < 20; ++i) in_training = ops::matmul(x, w).to_vector<float>();
  });
  std::thread server([&] {
    for (int i = 0; i < 20; ++i) in_server = ops::matmul(x, w).to_vector<float>();
    seen_by_server = cpu.math_mode();
  });
  training.join();
  server.join();
  BOOST_TEST(in_training == bf16);
  BOOST_TEST(in_server == f32);
  BOOST_TEST((seen_by_server == kernels::MathMode::f32));
  BOOST_TEST((cpu.math_mode() == kernels::MathMode::f32));
}

BOOST_AUTO_TEST_CASE(profiling_backend_forwards_times_and_keeps_the_math_mode) {
  std::vector<float> xs(64 * 48), ws(48 * 32);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = philox_normal(3, 0, 0, i);
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = philox_normal(3, 1, 0, i);
  const Tensor x = Tensor::from_vector<float>({64, 48}, xs);
  const Tensor w = Tensor::from_vector<float>({48, 32}, ws);
  kernels::Backend& cpu = kernels::cpu_backend();
  const auto f32 = ops::matmul(x, w).to_vector<float>();
  kernels::MathModeGuard bf16(cpu, kernels::MathMode::bf16);
  const auto plain = ops::matmul(x, w).to_vector<float>();
  BOOST_TEST(plain != f32);  // bf16 rounding shows, so a lost math mode would too

  kernels::ProfilingBackend profiler(cpu);
  std::vector<float> profiled;
  {
    ScopedBackend scoped(Device::cpu(), profiler);
    BOOST_TEST(&backend_for(Device::cpu()) == &profiler);
    BOOST_CHECK_THROW(ScopedBackend(Device::cpu(), profiler), Error);
    profiled = ops::matmul(x, w).to_vector<float>();
  }
  BOOST_TEST(&backend_for(Device::cpu()) == &cpu);
  BOOST_TEST(profiled == plain);
  const auto entries = profiler.entries();
  const auto gemm = std::find_if(entries.begin(), entries.end(),
                                 [](const auto& e) { return e.op.rfind("gemm", 0) == 0; });
  BOOST_REQUIRE(gemm != entries.end());
  BOOST_TEST(gemm->op == "gemm 64x32x48");
  BOOST_TEST(gemm->calls == 1);
  BOOST_TEST(gemm->flops == 2.0 * 64 * 32 * 48);
  BOOST_TEST(gemm->seconds > 0);
  const std::string table = profiler.table(1);
  BOOST_TEST(table.find("gemm 64x32x48") != std::string::npos);
  BOOST_TEST(table.find("total") != std::string::npos);
}
