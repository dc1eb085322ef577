// Rounding f32 values to bf16 or f16 precision (kept in f32), for the CPU's
// emulation of the reduced-precision math modes.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float round_to(float x, MathMode mode) {
  if (mode == MathMode::bf16) return bf16_to_f32(f32_to_bf16(x));
  if (mode == MathMode::f16) return static_cast<float>(static_cast<_Float16>(x));
  return x;
}

// x rounded into `scratch` (returned), or x itself in f32 mode.
inline const float* round_to_math_mode(const float* x, size_t n, MathMode mode,
                                       std::vector<float>& scratch) {
  if (mode == MathMode::f32) return x;
  scratch.resize(n);
  float* out = scratch.data();
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) out[i] = round_to(x[i], mode);
  return out;
}

}  // namespace turbine::kernels
