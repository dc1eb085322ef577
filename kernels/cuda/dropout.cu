// Dropout on CUDA with the CPU's mask: element i is kept when
// philox_uniform(seed, stream, offset, i) >= p (core/rng.hpp, compiled for the
// device too), so both backends drop the same elements. One Philox call makes
// the draws of four consecutive elements, so one thread handles those four.
#include "core/rng.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

namespace {

// Group g covers elements 4g .. 4g+3, drawn by Philox counter offset + g as
// philox_uniform does. out = (out if accumulate) + (kept ? in * keep_scale : 0).
// out may alias in (in-place dropout): each element is read before it is
// written by the same thread. Values in storage S (device.cuh); 16-bit ones
// take the scalar path.
template <typename S>
__global__ void dropout_kernel(const typename S::type* in, typename S::type* out, size_t n, float p,
                               float keep_scale, uint64_t seed, uint64_t stream, uint64_t offset,
                               bool accumulate, bool vec4) {
  const size_t groups = (n + 3) / 4;
  for (size_t g = cuda::grid_index(); g < groups; g += cuda::grid_stride()) {
    const auto r = philox4x32(seed, stream, offset + g);
    const size_t first = 4 * g;
    if constexpr (std::is_same_v<S, cuda::F32Storage>) {
      if (vec4 && first + 4 <= n) {
        const cuda::Pack<4> x = cuda::load_pack<4>(in + first);
        cuda::Pack<4> y{};
        if (accumulate) y = cuda::load_pack<4>(out + first);
        for (int j = 0; j < 4; ++j) {
          const float value = uint_to_unit_float(r[j]) >= p ? x.v[j] * keep_scale : 0.0f;
          y.v[j] = accumulate ? y.v[j] + value : value;
        }
        cuda::store_pack<4>(out + first, y);
        continue;
      }
    }
    for (int j = 0; j < 4 && first + j < n; ++j) {
      const float x = cuda::to_f32<S>(in[first + j]);
      const float value = uint_to_unit_float(r[j]) >= p ? x * keep_scale : 0.0f;
      out[first + j] =
          cuda::from_f32<S>(accumulate ? cuda::to_f32<S>(out[first + j]) + value : value);
    }
  }
}

template <typename S = cuda::F32Storage>
void launch_dropout(cudaStream_t cuda_stream, const typename S::type* in, typename S::type* out,
                    size_t n, float p, uint64_t seed, uint64_t stream, uint64_t offset,
                    bool accumulate) {
  const float keep_scale = 1.0f / (1.0f - p);
  const bool vec4 =
      reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  cuda::launch_elementwise(cuda_stream, (n + 3) / 4, dropout_kernel<S>, in, out, n, p, keep_scale,
                           seed, stream, offset, accumulate, vec4);
}

}  // namespace

void CudaBackend::dropout_forward(const float* x, float* y, size_t n, float p, uint64_t seed,
                                  uint64_t stream, uint64_t offset) {
  launch_dropout(this->stream(), x, y, n, p, seed, stream, offset, false);
}

void CudaBackend::dropout_backward(const float* dy, float* dx, size_t n, float p, uint64_t seed,
                                   uint64_t stream, uint64_t offset, bool accumulate) {
  launch_dropout(this->stream(), dy, dx, n, p, seed, stream, offset, accumulate);
}

void CudaBackend::dropout_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float p,
                                    uint64_t seed, uint64_t stream, uint64_t offset) {
  cuda::with_half_storage(t, [&](auto s) {
    launch_dropout<decltype(s)>(this->stream(), x, y, n, p, seed, stream, offset, false);
  });
}

void CudaBackend::dropout_backward16(FloatType t, const uint16_t* dy, uint16_t* dx, size_t n,
                                     float p, uint64_t seed, uint64_t stream, uint64_t offset,
                                     bool accumulate) {
  cuda::with_half_storage(t, [&](auto s) {
    launch_dropout<decltype(s)>(this->stream(), dy, dx, n, p, seed, stream, offset, accumulate);
  });
}

}  // namespace turbine::kernels
