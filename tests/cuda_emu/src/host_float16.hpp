// The conversions the emulated cuBLAS and NCCL read, write and round with:
// the emulated cuda_bf16.h / cuda_fp16.h ones (round to nearest even, NaN
// canonical as the GPU makes it), under short names, plus TF32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <bit>
#include <cstdint>

namespace turbine_emu {

inline uint16_t f32_to_bf16(float f) {
  return f32_to_bf16_bits(f);
}
inline float bf16_to_f32(uint16_t h) {
  return bf16_bits_to_f32(h);
}
inline uint16_t f32_to_f16(float f) {
  return f32_to_f16_bits(f);
}
inline float f16_to_f32(uint16_t h) {
  return f16_bits_to_f32(h);
}

// TF32: f32's range with a 10-bit mantissa, kept in an f32.
inline float round_to_tf32(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7f800000u) == 0x7f800000u) return f;  // inf, NaN
  x += 0xfffu + ((x >> 13) & 1u);
  return std::bit_cast<float>(x & ~0x1fffu);
}

}  // namespace turbine_emu
