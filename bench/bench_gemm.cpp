// The machine's GEMM peak: OpenBLAS sgemm GFLOP/s at the benchmark model's
// shapes, the ceiling that training throughput is measured against.
#include <omp.h>

#include <cstdio>

#include "core/timer.hpp"
#include "tensor/tensor.hpp"

using namespace turbine;

int main() {
  kernels::Backend& be = backend_for(Device::cpu());
  struct Case {
    int M, N, K;
  };
  double best = 0;
  for (const Case& c : {Case{2048, 1152, 384}, Case{2048, 1536, 384}, Case{2048, 384, 1536},
                        Case{2048, 8192, 384}, Case{2048, 2048, 2048}}) {
    Tensor a = Tensor::randn({c.M, c.K}, 1, 0), b = Tensor::randn({c.K, c.N}, 1, 1);
    Tensor y = Tensor::empty({c.M, c.N});
    be.gemm(false, false, c.M, c.N, c.K, 1, a.data<float>(), c.K, b.data<float>(), c.N, 0,
            y.data<float>(), c.N);
    const int reps = 10;
    Timer t;
    for (int r = 0; r < reps; ++r)
      be.gemm(false, false, c.M, c.N, c.K, 1, a.data<float>(), c.K, b.data<float>(), c.N, 0,
              y.data<float>(), c.N);
    const double gflops = 2.0 * c.M * c.N * c.K * reps / t.seconds() / 1e9;
    best = std::max(best, gflops);
    std::printf("sgemm %dx%dx%d: %.1f GFLOP/s\n", c.M, c.N, c.K, gflops);
  }
  std::printf("{\"impl\":\"openblas-sgemm\",\"threads\":%d,\"peak_gflops\":%.1f}\n",
              omp_get_max_threads(), best);
  return 0;
}
