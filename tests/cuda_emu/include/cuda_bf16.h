// bfloat16 (__nv_bfloat16) as cuda_bf16.h defines it, for the emulator: the
// storage type and the conversions Turbine uses, bit-exact with the GPU's
// round-to-nearest-even (NaN becomes the canonical 0x7fff, as
// cvt.rn.bf16.f32 makes it). Usable in host code too.
#pragma once

#include <bit>
#include <cstdint>
#include <turbine_emu/common.hpp>

namespace turbine_emu {

constexpr uint16_t f32_to_bf16_bits(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  x += 0x7fffu + ((x >> 16) & 1u);  // to nearest even; a carry reaches infinity correctly
  return static_cast<uint16_t>(x >> 16);
}

constexpr float bf16_bits_to_f32(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

}  // namespace turbine_emu

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(turbine_emu::f32_to_bf16_bits(f)) {}
  operator float() const { return turbine_emu::bf16_bits_to_f32(__x); }
};

struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

using nv_bfloat16 = __nv_bfloat16;
using nv_bfloat162 = __nv_bfloat162;

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) {
  __nv_bfloat16 h;
  h.__x = bits;
  return h;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) {
  return h.__x;
}
inline __nv_bfloat16 __short_as_bfloat16(short bits) {
  return __ushort_as_bfloat16(static_cast<unsigned short>(bits));
}
inline short __bfloat16_as_short(__nv_bfloat16 h) {
  return static_cast<short>(h.__x);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __ushort_as_bfloat16(turbine_emu::f32_to_bf16_bits(f));
}
inline __nv_bfloat16 __float2bfloat16(float f) {
  return __float2bfloat16_rn(f);
}
inline float __bfloat162float(__nv_bfloat16 h) {
  return turbine_emu::bf16_bits_to_f32(h.__x);
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) {
  return __floats2bfloat162_rn(v.x, v.y);
}
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return {lo, hi};
}
inline float __low2float(__nv_bfloat162 v) {
  return __bfloat162float(v.x);
}
inline float __high2float(__nv_bfloat162 v) {
  return __bfloat162float(v.y);
}
inline float2 __bfloat1622float2(__nv_bfloat162 v) {
  return {__bfloat162float(v.x), __bfloat162float(v.y)};
}
