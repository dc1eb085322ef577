// IEEE half precision (__half) as cuda_fp16.h defines it, for the emulator:
// the storage type and the conversions Turbine uses, bit-exact with the GPU's
// round-to-nearest-even (subnormals, overflow to infinity; NaN becomes the
// canonical 0x7fff, as cvt.rn.f16.f32 makes it). Usable in host code too.
#pragma once

#include <bit>
#include <cstdint>
#include <turbine_emu/common.hpp>

namespace turbine_emu {

constexpr uint16_t f32_to_f16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;                                 // NaN
  if (a >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // |f| >= 2^16, inf
  if (a >= 0x38800000u) {  // f16 normal range (>= 2^-14): rebias, round 23 to 10 mantissa bits
    uint32_t r = a - (112u << 23);
    r += 0xfffu + ((r >> 13) & 1u);  // a carry into the exponent is correct, up to infinity
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  const uint32_t e = a >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero
  // A subnormal: the value in units of 2^-24 is m >> (126 - e), rounded to even.
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14 .. 24
  uint32_t q = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

constexpr float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float magnitude = static_cast<float>(m) * 0x1p-24f;  // exact
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
}

}  // namespace turbine_emu

struct __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(turbine_emu::f32_to_f16_bits(f)) {}
  operator float() const { return turbine_emu::f16_bits_to_f32(__x); }
};

struct __half2 {
  __half x, y;
};

using half = __half;
using half2 = __half2;

inline __half __ushort_as_half(unsigned short bits) {
  __half h;
  h.__x = bits;
  return h;
}
inline unsigned short __half_as_ushort(__half h) {
  return h.__x;
}
inline __half __short_as_half(short bits) {
  return __ushort_as_half(static_cast<unsigned short>(bits));
}
inline short __half_as_short(__half h) {
  return static_cast<short>(h.__x);
}
inline __half __float2half_rn(float f) {
  return __ushort_as_half(turbine_emu::f32_to_f16_bits(f));
}
inline __half __float2half(float f) {
  return __float2half_rn(f);
}
inline float __half2float(__half h) {
  return turbine_emu::f16_bits_to_f32(h.__x);
}
inline __half2 __floats2half2_rn(float lo, float hi) {
  return {__float2half_rn(lo), __float2half_rn(hi)};
}
inline __half2 __float22half2_rn(float2 v) {
  return __floats2half2_rn(v.x, v.y);
}
inline __half2 __halves2half2(__half lo, __half hi) {
  return {lo, hi};
}
inline float __low2float(__half2 v) {
  return __half2float(v.x);
}
inline float __high2float(__half2 v) {
  return __half2float(v.y);
}
inline float2 __half22float2(__half2 v) {
  return {__half2float(v.x), __half2float(v.y)};
}
