// The CUDA emulator's host half against NVIDIA's documented semantics:
// runtime memory checks (directions, use after free, overruns, out of
// memory, fresh memory as NaN), stream and event handles; cuBLASLt and
// cuBLAS against a naive double-precision reference for every transpose,
// batches, strides, padding, in-place C == D, beta == 0 ignoring NaN in C,
// bf16 / f16 input rounding, and their argument errors; CUB's SortPairs
// stability, bit ranges and temp storage; NCCL's collectives under mpirun
// with 2 or more ranks (skipped with a message on one rank).
#define BOOST_TEST_MODULE cuda_emu_host
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cub/device/device_radix_sort.cuh>
#include <limits>
#include <random>
#include <vector>

namespace {

struct MpiFixture {
  MpiFixture() { MPI_Init(nullptr, nullptr); }
  ~MpiFixture() { MPI_Finalize(); }
};

// A device buffer of n T, freed at scope exit.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    BOOST_REQUIRE(cudaMalloc(&ptr, sizeof(T) * n) == cudaSuccess);
  }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    BOOST_REQUIRE(cudaMemcpy(ptr, host.data(), sizeof(T) * n, cudaMemcpyHostToDevice) ==
                  cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(n);
    BOOST_REQUIRE(cudaMemcpy(host.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost) ==
                  cudaSuccess);
    return host;
  }
};

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

uint16_t bf16_bits(float f) {  // round to nearest even
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}
float bf16_value(uint16_t h) {
  const uint32_t x = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
float round_bf16(float f) {
  return bf16_value(bf16_bits(f));
}

// Column-major reference: D = alpha op(A) op(B) + beta C, per batch, with
// inputs passed through `round` first. Operand (r, c) of batch b lives at
// b * stride + r + c * ld.
struct Operand {
  int rows, cols, ld;
  int64_t stride;
};

template <class Round>
void reference_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& A,
                    Operand a, const std::vector<float>& B, Operand b, float beta,
                    std::vector<float>& C, Operand c, int batch, Round round) {
  for (int p = 0; p < batch; ++p)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int q = 0; q < k; ++q) {
          const float x =
              A[size_t(p * a.stride + (ta ? q + int64_t(i) * a.ld : i + int64_t(q) * a.ld))];
          const float y =
              B[size_t(p * b.stride + (tb ? j + int64_t(q) * b.ld : q + int64_t(j) * b.ld))];
          acc += double(round(x)) * double(round(y));
        }
        float& out = C[size_t(p * c.stride + i + int64_t(j) * c.ld)];
        double v = double(alpha) * acc;
        if (beta != 0.0f) v += double(beta) * double(out);
        out = static_cast<float>(v);
      }
}

struct Lt {
  cublasLtHandle_t handle = nullptr;
  Lt() { BOOST_REQUIRE(cublasLtCreate(&handle) == CUBLAS_STATUS_SUCCESS); }
  ~Lt() { cublasLtDestroy(handle); }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~Plan() {
    cublasLtMatmulDescDestroy(op);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
  }
};

cublasLtMatrixLayout_t make_layout(cudaDataType type, Operand o, int batch) {
  cublasLtMatrixLayout_t l = nullptr;
  BOOST_REQUIRE(cublasLtMatrixLayoutCreate(&l, type, o.rows, o.cols, o.ld) ==
                CUBLAS_STATUS_SUCCESS);
  if (batch > 1) {
    BOOST_REQUIRE(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                   sizeof(batch)) == CUBLAS_STATUS_SUCCESS);
    BOOST_REQUIRE(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                   &o.stride,
                                                   sizeof(o.stride)) == CUBLAS_STATUS_SUCCESS);
  }
  return l;
}

void make_plan(Plan& plan, cublasComputeType_t compute, bool ta, bool tb, Operand a, Operand b,
               Operand c, int batch, cudaDataType in = CUDA_R_32F) {
  BOOST_REQUIRE(cublasLtMatmulDescCreate(&plan.op, compute, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS);
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                          opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  BOOST_REQUIRE(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                               sizeof(opa)) == CUBLAS_STATUS_SUCCESS);
  BOOST_REQUIRE(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                               sizeof(opb)) == CUBLAS_STATUS_SUCCESS);
  plan.a = make_layout(in, a, batch);
  plan.b = make_layout(in, b, batch);
  plan.c = make_layout(CUDA_R_32F, c, batch);
}

// The heuristic's first algorithm, with `workspace` bytes allowed.
cublasStatus_t heuristic(const Lt& lt, const Plan& plan, size_t workspace,
                         cublasLtMatmulHeuristicResult_t* result, uint32_t alignment = 256) {
  cublasLtMatmulPreference_t pref = nullptr;
  BOOST_REQUIRE(cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS);
  BOOST_REQUIRE(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &workspace,
                                                     sizeof(workspace)) == CUBLAS_STATUS_SUCCESS);
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    BOOST_REQUIRE(cublasLtMatmulPreferenceSetAttribute(pref, attr, &alignment, sizeof(alignment)) ==
                  CUBLAS_STATUS_SUCCESS);
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      lt.handle, plan.op, plan.a, plan.b, plan.c, plan.c, pref, 1, result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS) BOOST_TEST(found == 1);
  return status;
}

size_t extent(Operand o, int batch) {
  return size_t((batch - 1) * o.stride + int64_t(o.cols - 1) * o.ld + o.rows);
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

// Runtime ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(fresh_memory_reads_as_nan_and_copies_check_direction) {
  DeviceBuffer<float> d(8);
  for (float x : d.download()) BOOST_TEST(std::isnan(x));
  std::vector<float> host(8, 1.5f), back(8, 0.0f);
  d.upload(host);
  BOOST_TEST(cudaMemcpy(back.data(), d.ptr, 32, cudaMemcpyDefault) == cudaSuccess);
  BOOST_TEST(back == host);
  cudaGetLastError();
  // Host where the kind says device, and the reverse.
  BOOST_TEST(cudaMemcpy(back.data(), host.data(), 32, cudaMemcpyHostToDevice) ==
             cudaErrorInvalidValue);
  BOOST_TEST(cudaMemcpy(d.ptr, host.data(), 32, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemcpy(d.ptr, host.data(), 32, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemcpy(d.ptr, host.data(), 32, static_cast<cudaMemcpyKind>(7)) ==
             cudaErrorInvalidMemcpyDirection);
  // The last error is sticky until read, then cleared.
  BOOST_TEST(cudaPeekAtLastError() == cudaErrorInvalidMemcpyDirection);
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidMemcpyDirection);
  BOOST_TEST(cudaGetLastError() == cudaSuccess);
  // A range running past its allocation, and overlapping device copies.
  BOOST_TEST(cudaMemcpy(d.ptr + 4, host.data(), 32, cudaMemcpyHostToDevice) ==
             cudaErrorInvalidValue);
  BOOST_TEST(cudaMemcpy(d.ptr + 1, d.ptr, 16, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemsetAsync(d.ptr, 0, 33) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemsetAsync(host.data(), 0, 4) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemsetAsync(d.ptr, 0, 32) == cudaSuccess);
  BOOST_TEST(d.download() == std::vector<float>(8, 0.0f));
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(device_ranges_end_at_the_allocation_and_die_with_it) {
  float* p = nullptr;
  BOOST_REQUIRE(cudaMalloc(&p, 40) == cudaSuccess);
  BOOST_TEST(turbine_emu::is_device_range(p, 40));
  BOOST_TEST(!turbine_emu::is_device_range(p, 41));
  BOOST_TEST(turbine_emu::is_device_range(p + 10, 0));  // one past the end
  BOOST_TEST(!turbine_emu::is_device_range(p + 10, 4));
  BOOST_TEST(reinterpret_cast<uintptr_t>(p) % 256 == 0u);
  BOOST_REQUIRE(cudaFree(p) == cudaSuccess);
  BOOST_TEST(!turbine_emu::is_device_range(p, 4));
  BOOST_TEST(turbine_emu::is_freed_device_pointer(p + 3));
  float host[10] = {};
  BOOST_TEST(cudaMemcpy(host, p, 40, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  BOOST_TEST(cudaMemcpy(host, p, 40, cudaMemcpyDefault) == cudaErrorInvalidValue);
  BOOST_TEST(cudaFree(p) == cudaErrorInvalidValue);  // double free
  BOOST_TEST(cudaFree(host) == cudaErrorInvalidValue);
  BOOST_TEST(cudaFree(nullptr) == cudaSuccess);
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(allocation_beyond_the_capacity_fails_and_is_accounted) {
  size_t free0 = 0, total = 0;
  BOOST_REQUIRE(cudaMemGetInfo(&free0, &total) == cudaSuccess);
  BOOST_TEST(total == size_t(std::getenv("TURBINE_EMU_MEMORY_MB")
                                 ? std::atoll(std::getenv("TURBINE_EMU_MEMORY_MB"))
                                 : 16384)
                          << 20);
  void* big = nullptr;
  BOOST_TEST(cudaMalloc(&big, free0 + 1) == cudaErrorMemoryAllocation);
  BOOST_TEST(big == nullptr);
  BOOST_TEST(cudaGetLastError() == cudaErrorMemoryAllocation);
  void* p = nullptr;
  BOOST_REQUIRE(cudaMalloc(&p, 1 << 20) == cudaSuccess);
  size_t free1 = 0;
  cudaMemGetInfo(&free1, &total);
  BOOST_TEST(free0 - free1 == size_t(1) << 20);
  cudaFree(p);
  cudaMemGetInfo(&free1, &total);
  BOOST_TEST(free1 == free0);
  // Each device has its own capacity.
  BOOST_REQUIRE(cudaSetDevice(1) == cudaSuccess);
  cudaMemGetInfo(&free1, &total);
  BOOST_TEST(free1 == total);
  BOOST_REQUIRE(cudaSetDevice(0) == cudaSuccess);
  int count = 0;
  BOOST_TEST(cudaGetDeviceCount(&count) == cudaSuccess);
  BOOST_TEST(cudaSetDevice(count) == cudaErrorInvalidDevice);
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(streams_and_events_are_checked_handles) {
  cudaStream_t s = nullptr;
  BOOST_REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t e = nullptr, t0 = nullptr, t1 = nullptr;
  BOOST_REQUIRE(cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess);
  BOOST_TEST(cudaEventRecord(e, s) == cudaSuccess);
  BOOST_TEST(cudaStreamWaitEvent(nullptr, e, 0) == cudaSuccess);
  BOOST_TEST(turbine_emu::check_launch_stream(s) == cudaSuccess);
  BOOST_REQUIRE(cudaEventCreate(&t0) == cudaSuccess);
  BOOST_REQUIRE(cudaEventCreate(&t1) == cudaSuccess);
  float ms = 0;
  BOOST_TEST(cudaEventElapsedTime(&ms, t0, t1) == cudaErrorInvalidResourceHandle);  // unrecorded
  cudaEventRecord(t0, s);
  cudaEventRecord(t1, s);
  BOOST_TEST(cudaEventElapsedTime(&ms, t0, t1) == cudaSuccess);
  BOOST_TEST(cudaEventElapsedTime(&ms, e, t1) == cudaErrorInvalidResourceHandle);  // no timing
  // A stream of another device: copies work, launches do not.
  BOOST_REQUIRE(cudaSetDevice(1) == cudaSuccess);
  BOOST_TEST(turbine_emu::check_launch_stream(s) == cudaErrorInvalidResourceHandle);
  BOOST_TEST(cudaEventRecord(t0, s) == cudaSuccess);  // t0 and s are both device 0's
  cudaEvent_t other = nullptr;
  BOOST_REQUIRE(cudaEventCreate(&other) == cudaSuccess);
  BOOST_TEST(cudaEventRecord(other, s) == cudaErrorInvalidResourceHandle);
  cudaEventDestroy(other);
  BOOST_REQUIRE(cudaSetDevice(0) == cudaSuccess);
  BOOST_TEST(cudaStreamDestroy(s) == cudaSuccess);
  for (cudaError_t err : {cudaStreamSynchronize(s), cudaStreamDestroy(s), cudaEventRecord(e, s),
                          cudaMemsetAsync(nullptr, 0, 0, s), turbine_emu::check_launch_stream(s)})
    BOOST_TEST(err == cudaErrorInvalidResourceHandle);
  BOOST_TEST(cudaEventDestroy(e) == cudaSuccess);
  BOOST_TEST(cudaEventQuery(e) == cudaErrorInvalidResourceHandle);
  BOOST_TEST(cudaStreamDestroy(nullptr) == cudaErrorInvalidResourceHandle);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  BOOST_TEST(std::string(cudaGetErrorName(cudaErrorInvalidResourceHandle)) ==
             "cudaErrorInvalidResourceHandle");
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(dynamic_shared_memory_opt_in) {
  static int kernel_tag;  // any address stands for a kernel
  const void* k = &kernel_tag;
  BOOST_TEST(turbine_emu::max_dynamic_shared_bytes(k) == 48u * 1024);
  BOOST_TEST(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) ==
             cudaSuccess);
  BOOST_TEST(turbine_emu::max_dynamic_shared_bytes(k) == 100u * 1024);
  BOOST_TEST(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
             cudaErrorInvalidValue);
  BOOST_TEST(turbine_emu::max_dynamic_shared_bytes(k) == 100u * 1024);
  cudaDeviceProp prop;
  BOOST_TEST(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  BOOST_TEST(prop.sharedMemPerBlockOptin == 227u * 1024);
  BOOST_TEST(prop.major == 9);
  cudaGetLastError();
}

// cuBLASLt -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(lt_matmul_matches_the_reference_for_transposes_batches_and_padding) {
  Lt lt;
  DeviceBuffer<char> workspace(1 << 20);
  const int m = 5, n = 7, k = 6, batch = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // Stored shapes before op, padded leading dimensions, gapped batches.
      const Operand a{ta ? k : m, ta ? m : k, (ta ? k : m) + 3, 0};
      const Operand b{tb ? n : k, tb ? k : n, (tb ? n : k) + 1, 0};
      Operand A = a, B = b, C{m, n, m + 2, 0};
      A.stride = int64_t(a.ld) * a.cols + 5;
      B.stride = -int64_t(b.ld) * b.cols - 2;  // negative strides count too
      C.stride = int64_t(C.ld) * n + 4;
      const size_t a_size = extent(A, batch),
                   b_size = size_t(-B.stride) * (batch - 1) + extent(B, 1);
      std::vector<float> ha = random_floats(a_size, 1), hb = random_floats(b_size, 2);
      std::vector<float> hc = random_floats(extent(C, batch), 3);
      DeviceBuffer<float> da(ha), db(hb), dc(hc);
      Plan plan;
      make_plan(plan, CUBLAS_COMPUTE_32F, ta, tb, A, B, C, batch);
      cublasLtMatmulHeuristicResult_t result{};
      // B's batch 0 sits at the highest address, not 16-byte aligned: say so.
      BOOST_REQUIRE(heuristic(lt, plan, 1 << 20, &result, 4) == CUBLAS_STATUS_SUCCESS);
      const float alpha = 0.75f, beta = -0.5f;
      const float* b_last = db.ptr + size_t(-B.stride) * (batch - 1);
      BOOST_REQUIRE(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, b_last, plan.b,
                                   &beta, dc.ptr, plan.c, dc.ptr, plan.c, &result.algo,
                                   workspace.ptr, 1 << 20, nullptr) == CUBLAS_STATUS_SUCCESS);
      std::vector<float> expect = hc;
      for (int p = 0; p < batch; ++p) {
        std::vector<float> bp(hb.begin() + (b_last - db.ptr) + p * B.stride,
                              hb.begin() + (b_last - db.ptr) + p * B.stride + extent(B, 1));
        std::vector<float> ap(ha.begin() + p * A.stride, ha.begin() + p * A.stride + extent(A, 1));
        std::vector<float> cp(expect.begin() + p * C.stride,
                              expect.begin() + p * C.stride + extent(C, 1));
        reference_gemm(ta, tb, m, n, k, alpha, ap, A, bp, B, beta, cp, C, 1,
                       [](float x) { return x; });
        std::copy(cp.begin(), cp.end(), expect.begin() + p * C.stride);
      }
      // Padding and gaps untouched, every element as the reference.
      BOOST_TEST(dc.download() == expect, boost::test_tools::per_element());
    }
}

BOOST_AUTO_TEST_CASE(lt_beta_zero_ignores_nan_in_c_and_fast_16bf_rounds_inputs) {
  Lt lt;
  const int m = 4, n = 3, k = 9;
  const Operand a{m, k, m, 0}, b{k, n, k, 0}, c{m, n, m, 0};
  std::vector<float> ha = random_floats(m * k, 4), hb = random_floats(k * n, 5);
  DeviceBuffer<float> da(ha), db(hb), dc(m * n);  // dc: fresh, NaN
  for (auto [compute, exact] :
       {std::pair{CUBLAS_COMPUTE_32F, true}, {CUBLAS_COMPUTE_32F_FAST_16BF, false}}) {
    Plan plan;
    make_plan(plan, compute, false, false, a, b, c, 1);
    cublasLtMatmulHeuristicResult_t result{};
    BOOST_REQUIRE(heuristic(lt, plan, 0, &result) == CUBLAS_STATUS_SUCCESS);
    BOOST_TEST(result.workspaceSize == 0u);
    const float alpha = 1.0f, beta = 0.0f;
    BOOST_REQUIRE(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                                 dc.ptr, plan.c, dc.ptr, plan.c, &result.algo, nullptr, 0,
                                 nullptr) == CUBLAS_STATUS_SUCCESS);
    std::vector<float> expect(m * n, 0.0f);
    if (exact)
      reference_gemm(false, false, m, n, k, 1.0f, ha, a, hb, b, 0.0f, expect, c, 1,
                     [](float x) { return x; });
    else
      reference_gemm(false, false, m, n, k, 1.0f, ha, a, hb, b, 0.0f, expect, c, 1, round_bf16);
    BOOST_TEST(dc.download() == expect, boost::test_tools::per_element());
  }
  // Round to nearest even: 1 + 2^-8 is a tie (to 1), 1 + 3 * 2^-8 rounds up.
  BOOST_TEST(round_bf16(1.0f + 0x1p-8f) == 1.0f);
  BOOST_TEST(round_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
  DeviceBuffer<float> one(std::vector<float>{1.0f + 0x1p-8f}),
      two(std::vector<float>{1.0f + 3 * 0x1p-8f});
  DeviceBuffer<float> out(1);
  for (auto [compute, expect] :
       {std::pair{CUBLAS_COMPUTE_32F_FAST_16BF, 1.0f * (1.0f + 0x1p-6f)},
        {CUBLAS_COMPUTE_32F_FAST_16F, (1.0f + 0x1p-8f) * (1.0f + 3 * 0x1p-8f)},
        {CUBLAS_COMPUTE_32F, (1.0f + 0x1p-8f) * (1.0f + 3 * 0x1p-8f)}}) {
    Plan plan;
    make_plan(plan, compute, false, false, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, 1);
    const float alpha = 1.0f, beta = 0.0f;
    BOOST_REQUIRE(cublasLtMatmul(lt.handle, plan.op, &alpha, one.ptr, plan.a, two.ptr, plan.b,
                                 &beta, out.ptr, plan.c, out.ptr, plan.c, nullptr, nullptr, 0,
                                 nullptr) == CUBLAS_STATUS_SUCCESS);
    BOOST_TEST(out.download()[0] == expect);
  }
}

BOOST_AUTO_TEST_CASE(lt_reads_16bit_operands_with_f32_compute) {
  Lt lt;
  const int m = 3, n = 2, k = 4;
  std::vector<float> fa = random_floats(m * k, 6), fb = random_floats(k * n, 7);
  std::vector<uint16_t> ha(fa.size()), hb(fb.size());
  for (size_t i = 0; i < fa.size(); ++i) ha[i] = bf16_bits(fa[i]);
  for (size_t i = 0; i < fb.size(); ++i) hb[i] = bf16_bits(fb[i]);
  DeviceBuffer<uint16_t> da(ha), db(hb);
  DeviceBuffer<float> dc(m * n);
  Plan plan;
  const Operand a{m, k, m, 0}, b{k, n, k, 0}, c{m, n, m, 0};
  make_plan(plan, CUBLAS_COMPUTE_32F, false, false, a, b, c, 1, CUDA_R_16BF);
  const float alpha = 2.0f, beta = 0.0f;
  BOOST_REQUIRE(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                               dc.ptr, plan.c, dc.ptr, plan.c, nullptr, nullptr, 0,
                               nullptr) == CUBLAS_STATUS_SUCCESS);
  std::vector<float> expect(m * n, 0.0f);
  reference_gemm(false, false, m, n, k, 2.0f, fa, a, fb, b, 0.0f, expect, c, 1, round_bf16);
  BOOST_TEST(dc.download() == expect, boost::test_tools::per_element());
  // FAST_16BF is for f32 operands only.
  Plan wrong;
  make_plan(wrong, CUBLAS_COMPUTE_32F_FAST_16BF, false, false, a, b, c, 1, CUDA_R_16BF);
  cublasLtMatmulHeuristicResult_t result{};
  BOOST_TEST(heuristic(lt, wrong, 0, &result) == CUBLAS_STATUS_NOT_SUPPORTED);
}

BOOST_AUTO_TEST_CASE(lt_rejects_wrong_plans_and_pointers) {
  Lt lt;
  const int m = 4, n = 4, k = 4;
  DeviceBuffer<float> da(random_floats(64, 8)), db(random_floats(64, 9)), dc(64);
  cublasLtMatmulHeuristicResult_t result{};
  const float alpha = 1.0f, beta = 0.0f;
  {  // ld below rows
    Plan plan;
    make_plan(plan, CUBLAS_COMPUTE_32F, false, false, {m, k, m - 1, 0}, {k, n, k, 0}, {m, n, m, 0},
              1);
    BOOST_TEST(heuristic(lt, plan, 0, &result) == CUBLAS_STATUS_INVALID_VALUE);
    BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                              dc.ptr, plan.c, dc.ptr, plan.c, nullptr, nullptr, 0,
                              nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  }
  {  // inner dimensions differ: op(A) 4 x 4, op(B) 3 x 4
    Plan plan;
    make_plan(plan, CUBLAS_COMPUTE_32F, false, false, {m, k, m, 0}, {k - 1, n, k, 0}, {m, n, m, 0},
              1);
    BOOST_TEST(heuristic(lt, plan, 0, &result) == CUBLAS_STATUS_INVALID_VALUE);
  }
  {  // batch counts differ, and D's batches overlapping
    Plan plan;
    make_plan(plan, CUBLAS_COMPUTE_32F, false, false, {m, k, m, 16}, {k, n, k, 16}, {m, n, m, 8},
              2);
    BOOST_TEST(heuristic(lt, plan, 0, &result) == CUBLAS_STATUS_INVALID_VALUE);
    const int one = 1;
    cublasLtMatrixLayoutSetAttribute(plan.c, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &one, sizeof(one));
    BOOST_TEST(heuristic(lt, plan, 0, &result) == CUBLAS_STATUS_INVALID_VALUE);
  }
  Plan plan;
  make_plan(plan, CUBLAS_COMPUTE_32F, false, false, {m, k, m, 0}, {k, n, k, 0}, {m, n, m, 0}, 1);
  // Attribute sizes are checked; a destroyed layout is refused.
  const int64_t wide = 1;
  BOOST_TEST(cublasLtMatrixLayoutSetAttribute(plan.a, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &wide,
                                              sizeof(wide)) == CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatrixLayout_t gone = nullptr;
  cublasLtMatrixLayoutCreate(&gone, CUDA_R_32F, m, n, m);
  cublasLtMatrixLayoutDestroy(gone);
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, gone, dc.ptr, plan.c, nullptr, nullptr, 0,
                            nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  // Host memory where a matrix belongs.
  std::vector<float> host(64, 0.0f);
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, host.data(), plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, plan.c, dc.ptr, plan.c, nullptr, nullptr, 0,
                            nullptr) == CUBLAS_STATUS_EXECUTION_FAILED);
  BOOST_TEST(cudaGetLastError() == cudaErrorIllegalAddress);
  // An algorithm wanting workspace gets it, checked.
  DeviceBuffer<char> workspace(1 << 20);
  BOOST_REQUIRE(heuristic(lt, plan, 1 << 20, &result) == CUBLAS_STATUS_SUCCESS);
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, plan.c, dc.ptr, plan.c, &result.algo, workspace.ptr,
                            result.workspaceSize - 1, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  // A pointer less aligned than the preference promised (default 256).
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr + 1, plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, plan.c, dc.ptr, plan.c, &result.algo, workspace.ptr, 1 << 20,
                            nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
  cublasLtMatmulHeuristicResult_t loose{};
  BOOST_REQUIRE(heuristic(lt, plan, 0, &loose, 4) == CUBLAS_STATUS_SUCCESS);
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr + 1, plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, plan.c, dc.ptr, plan.c, &loose.algo, nullptr, 0,
                            nullptr) == CUBLAS_STATUS_SUCCESS);
  // In place needs Cdesc == Ddesc.
  Plan padded;
  make_plan(padded, CUBLAS_COMPUTE_32F, false, false, {m, k, m, 0}, {k, n, k, 0}, {m, n, m + 1, 0},
            1);
  BOOST_TEST(cublasLtMatmul(lt.handle, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta,
                            dc.ptr, padded.c, dc.ptr, plan.c, nullptr, nullptr, 0,
                            nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  cublasLtHandle_t dead = nullptr;
  cublasLtCreate(&dead);
  cublasLtDestroy(dead);
  BOOST_TEST(cublasLtMatmul(dead, plan.op, &alpha, da.ptr, plan.a, db.ptr, plan.b, &beta, dc.ptr,
                            plan.c, dc.ptr, plan.c, nullptr, nullptr, 0,
                            nullptr) == CUBLAS_STATUS_NOT_INITIALIZED);
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(classic_gemm_strided_batched_matches_and_checks_leading_dimensions) {
  cublasHandle_t h = nullptr;
  BOOST_REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const int m = 3, n = 5, k = 4, batch = 2;
  const Operand a{k, m, k + 1, int64_t(k + 1) * m}, b{k, n, k, int64_t(k) * n},
      c{m, n, m, int64_t(m) * n};
  std::vector<float> ha = random_floats(extent(a, batch), 10),
                     hb = random_floats(extent(b, batch), 11);
  std::vector<float> hc = random_floats(extent(c, batch), 12);
  DeviceBuffer<float> da(ha), db(hb), dc(hc);
  const float alpha = 1.25f, beta = 1.0f;
  BOOST_REQUIRE(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da.ptr,
                                           CUDA_R_32F, a.ld, a.stride, db.ptr, CUDA_R_32F, b.ld,
                                           b.stride, &beta, dc.ptr, CUDA_R_32F, c.ld, c.stride,
                                           batch, CUBLAS_COMPUTE_32F_FAST_16BF,
                                           CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  reference_gemm(true, false, m, n, k, alpha, ha, a, hb, b, beta, hc, c, batch, round_bf16);
  BOOST_TEST(dc.download() == hc, boost::test_tools::per_element());
  BOOST_TEST(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, da.ptr,
                                        CUDA_R_32F, m - 1, 0, db.ptr, CUDA_R_32F, k, 0, &beta,
                                        dc.ptr, CUDA_R_32F, m, 0, 1, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  BOOST_TEST(std::string(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE)) ==
             "CUBLAS_STATUS_INVALID_VALUE");
  cublasDestroy(h);
  BOOST_TEST(cublasDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED);
}

// CUB ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(sort_pairs_is_stable_over_the_bit_range_and_checks_temp_storage) {
  // Keys differ above bit 4 only in pairs that must stay in input order.
  const std::vector<uint64_t> keys = {5, 3, 21, 3, 0, 5, 37, 1};
  const int n = static_cast<int>(keys.size());
  std::vector<int> positions(keys.size());
  for (int i = 0; i < n; ++i) positions[size_t(i)] = i;
  DeviceBuffer<uint64_t> keys_in(keys), keys_out(keys.size());
  DeviceBuffer<int> values_in(positions), values_out(keys.size());
  size_t bytes = 0;
  BOOST_REQUIRE(
      cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in.ptr, static_cast<uint64_t*>(nullptr),
                                      static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
                                      n, 0, 4) == cudaSuccess);
  BOOST_TEST(bytes > 0u);
  DeviceBuffer<char> temp(bytes);
  BOOST_REQUIRE(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in.ptr, keys_out.ptr,
                                                values_in.ptr, values_out.ptr, n, 0,
                                                4) == cudaSuccess);
  // Low 4 bits: 5->5, 3->3, 21->5, 3->3, 0->0, 5->5, 37->5, 1->1.
  BOOST_TEST(keys_out.download() == (std::vector<uint64_t>{0, 1, 3, 3, 5, 21, 5, 37}),
             boost::test_tools::per_element());
  BOOST_TEST(values_out.download() == (std::vector<int>{4, 7, 1, 3, 0, 2, 5, 6}),
             boost::test_tools::per_element());
  BOOST_TEST(keys_in.download() == keys);  // inputs unaltered
  // Full width: a plain stable sort.
  BOOST_REQUIRE(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in.ptr, keys_out.ptr,
                                                values_in.ptr, values_out.ptr, n) == cudaSuccess);
  BOOST_TEST(keys_out.download() == (std::vector<uint64_t>{0, 1, 3, 3, 5, 5, 21, 37}),
             boost::test_tools::per_element());
  BOOST_TEST(values_out.download() == (std::vector<int>{4, 7, 1, 3, 0, 5, 2, 6}),
             boost::test_tools::per_element());
  // Too little temp storage, host memory, overlapping in/out.
  size_t less = bytes - 1;
  BOOST_TEST(cub::DeviceRadixSort::SortPairs(temp.ptr, less, keys_in.ptr, keys_out.ptr,
                                             values_in.ptr, values_out.ptr,
                                             n) == cudaErrorInvalidValue);
  std::vector<int> host(keys.size());
  BOOST_TEST(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in.ptr, keys_out.ptr,
                                             values_in.ptr, host.data(),
                                             n) == cudaErrorIllegalAddress);
  BOOST_TEST(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in.ptr, keys_in.ptr,
                                             values_in.ptr, values_out.ptr,
                                             n) == cudaErrorInvalidValue);
  cudaGetLastError();
}

BOOST_AUTO_TEST_CASE(sort_pairs_orders_signed_and_float_keys_like_cub) {
  const std::vector<float> keys = {2.5f, -1.0f, 0.0f, -0.0f, -3.0f, 1.0f};
  std::vector<int> values = {0, 1, 2, 3, 4, 5};
  DeviceBuffer<float> keys_in(keys), keys_out(keys.size());
  DeviceBuffer<int> values_in(values), values_out(values.size());
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in.ptr, keys_out.ptr, values_in.ptr,
                                  values_out.ptr, 6);
  DeviceBuffer<char> temp(bytes);
  BOOST_REQUIRE(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in.ptr, keys_out.ptr,
                                                values_in.ptr, values_out.ptr, 6) == cudaSuccess);
  BOOST_TEST(values_out.download() == (std::vector<int>{4, 1, 2, 3, 5, 0}),
             boost::test_tools::per_element());
  const std::vector<int32_t> ints = {3, -7, 0, -1, 7};
  DeviceBuffer<int32_t> ints_in(ints), ints_out(ints.size());
  BOOST_REQUIRE(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, ints_in.ptr, ints_out.ptr,
                                                values_in.ptr, values_out.ptr, 5) == cudaSuccess);
  BOOST_TEST(ints_out.download() == (std::vector<int32_t>{-7, -1, 0, 3, 7}),
             boost::test_tools::per_element());
}

// NCCL (under mpirun) --------------------------------------------------------

namespace {

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

ncclUniqueId shared_id() {
  ncclUniqueId id{};
  if (world_rank() == 0) ncclGetUniqueId(&id);
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  return id;
}

bool skip_single_rank() {
  if (world_size() > 1) return false;
  BOOST_TEST_MESSAGE("NCCL case skipped: run under mpirun -np 2 (one rank here)");
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(nccl_collectives_sum_in_rank_order) {
  if (skip_single_rank()) return;
  const int rank = world_rank(), size = world_size();
  BOOST_REQUIRE(cudaSetDevice(rank % 4) == cudaSuccess);
  ncclComm_t comm = nullptr;
  BOOST_REQUIRE(ncclCommInitRank(&comm, size, shared_id(), rank) == ncclSuccess);
  const size_t count = 5;
  std::vector<float> mine(count * size);
  for (size_t i = 0; i < mine.size(); ++i) mine[i] = float(rank + 1) * 1000.0f + float(i) + 0.125f;
  auto value = [&](int r, size_t i) { return float(r + 1) * 1000.0f + float(i) + 0.125f; };
  auto rank_order_sum = [&](size_t i) {
    float s = value(0, i);
    for (int r = 1; r < size; ++r) s += value(r, i);
    return s;
  };
  {  // all-reduce, in place
    DeviceBuffer<float> d(mine);
    BOOST_REQUIRE(ncclAllReduce(d.ptr, d.ptr, mine.size(), ncclFloat32, ncclSum, comm, nullptr) ==
                  ncclSuccess);
    const auto got = d.download();
    for (size_t i = 0; i < mine.size(); ++i) BOOST_TEST(got[i] == rank_order_sum(i));
  }
  {  // reduce-scatter in place: block `rank` of the buffer gets the sums
    DeviceBuffer<float> d(mine);
    BOOST_REQUIRE(ncclReduceScatter(d.ptr, d.ptr + count * rank, count, ncclFloat32, ncclSum, comm,
                                    nullptr) == ncclSuccess);
    const auto got = d.download();
    for (size_t i = 0; i < count; ++i)
      BOOST_TEST(got[count * rank + i] == rank_order_sum(count * rank + i));
  }
  {  // all-gather in place, reduce to the last rank, broadcast from it
    DeviceBuffer<float> d(mine);
    BOOST_REQUIRE(ncclAllGather(d.ptr + count * rank, d.ptr, count, ncclFloat32, comm, nullptr) ==
                  ncclSuccess);
    const auto got = d.download();
    for (int r = 0; r < size; ++r)
      for (size_t i = 0; i < count; ++i) BOOST_TEST(got[count * r + i] == value(r, count * r + i));
    DeviceBuffer<float> out(count);
    BOOST_REQUIRE(ncclReduce(d.ptr, out.ptr, count, ncclFloat32, ncclMax, size - 1, comm,
                             nullptr) == ncclSuccess);
    if (rank == size - 1) BOOST_TEST(out.download()[0] == value(0, 0));
    DeviceBuffer<float> b(mine);
    BOOST_REQUIRE(ncclBroadcast(b.ptr, b.ptr, mine.size(), ncclFloat32, size - 1, comm, nullptr) ==
                  ncclSuccess);
    BOOST_TEST(b.download()[1] == value(size - 1, 1));
  }
  {  // all-to-all through grouped send / recv, self included
    DeviceBuffer<float> send(mine), recv(mine.size());
    BOOST_REQUIRE(ncclGroupStart() == ncclSuccess);
    for (int peer = 0; peer < size; ++peer) {
      BOOST_REQUIRE(ncclSend(send.ptr + count * peer, count, ncclFloat32, peer, comm, nullptr) ==
                    ncclSuccess);
      BOOST_REQUIRE(ncclRecv(recv.ptr + count * peer, count, ncclFloat32, peer, comm, nullptr) ==
                    ncclSuccess);
    }
    BOOST_REQUIRE(ncclGroupEnd() == ncclSuccess);
    const auto got = recv.download();
    for (int peer = 0; peer < size; ++peer)
      BOOST_TEST(got[count * peer] == value(peer, count * rank));
  }
  {  // bf16 sums round at each step
    std::vector<uint16_t> h(3, bf16_bits(rank == 0 ? 256.0f : 1.0f));
    DeviceBuffer<uint16_t> d(h);
    BOOST_REQUIRE(ncclAllReduce(d.ptr, d.ptr, 3, ncclBfloat16, ncclSum, comm, nullptr) ==
                  ncclSuccess);
    float expect = 256.0f;
    for (int r = 1; r < size; ++r) expect = round_bf16(expect + 1.0f);
    BOOST_TEST(bf16_value(d.download()[0]) == expect);
  }
  // Host memory and bad roots are invalid arguments (symmetric on every rank).
  std::vector<float> host(4);
  BOOST_TEST(ncclAllReduce(host.data(), host.data(), 4, ncclFloat32, ncclSum, comm, nullptr) ==
             ncclInvalidArgument);
  DeviceBuffer<float> d(4);
  BOOST_TEST(ncclBroadcast(d.ptr, d.ptr, 4, ncclFloat32, size, comm, nullptr) ==
             ncclInvalidArgument);
  BOOST_TEST(ncclGroupEnd() == ncclInvalidUsage);
  BOOST_TEST(ncclCommDestroy(comm) == ncclSuccess);
  BOOST_TEST(ncclAllReduce(d.ptr, d.ptr, 4, ncclFloat32, ncclSum, comm, nullptr) ==
             ncclInvalidArgument);
  cudaSetDevice(0);
}

BOOST_AUTO_TEST_CASE(nccl_rejects_two_ranks_on_one_device) {
  if (skip_single_rank()) return;
  BOOST_REQUIRE(cudaSetDevice(0) == cudaSuccess);
  ncclComm_t comm = nullptr;
  BOOST_TEST(ncclCommInitRank(&comm, world_size(), shared_id(), world_rank()) == ncclInvalidUsage);
  BOOST_TEST(comm == nullptr);
  // A wrong nranks is refused on every rank alike.
  BOOST_REQUIRE(cudaSetDevice(world_rank() % 4) == cudaSuccess);
  BOOST_TEST(ncclCommInitRank(&comm, world_size() + 1, shared_id(), world_rank()) ==
             ncclInvalidUsage);
  cudaSetDevice(0);
}
