// Counter-based RNG (Philox4x32-10, Salmon et al. 2011). A draw is a pure
// function of (seed, stream, offset), so every rank and every device produces
// the same numbers for the same counter without sharing state, and a resumed
// run continues the sequence by restoring one offset.
// The functions are callable from CUDA kernels too (dropout regenerates the
// CPU's mask on the GPU): philox4x32 and philox_uniform are integer and exact
// float arithmetic, bit-identical on host and device; philox_normal's
// log/sqrt/cos may differ from the host's in the last ulp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

// Marks a function for both host and device under nvcc; empty for g++.
#ifdef __CUDACC__
#define TURBINE_HOST_DEVICE __host__ __device__
#else
#define TURBINE_HOST_DEVICE
#endif

namespace turbine {

TURBINE_HOST_DEVICE inline std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t stream,
                                                              uint64_t offset) {
  uint32_t c0 = static_cast<uint32_t>(offset), c1 = static_cast<uint32_t>(offset >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += W0;
    k1 += W1;
  }
  return {c0, c1, c2, c3};
}

// Uniform in [0, 1) from 24 random bits.
TURBINE_HOST_DEVICE inline float uint_to_unit_float(uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

// Element i of the stream (seed, stream) starting at counter `offset`:
// four elements share one Philox call.
TURBINE_HOST_DEVICE inline float philox_uniform(uint64_t seed, uint64_t stream, uint64_t offset,
                                                uint64_t i) {
  const auto r = philox4x32(seed, stream, offset + i / 4);
  return uint_to_unit_float(r[i % 4]);
}

// Standard normal via Box-Muller on the pair of lanes (2k, 2k+1).
TURBINE_HOST_DEVICE inline float philox_normal(uint64_t seed, uint64_t stream, uint64_t offset,
                                               uint64_t i) {
  const auto r = philox4x32(seed, stream, offset + i / 2);
  const int lane = static_cast<int>(i % 2);
  const float u1 = (static_cast<float>(r[0] >> 8) + 1.0f) * (1.0f / 16777217.0f);
  const float u2 = uint_to_unit_float(r[1]);
  const float radius = std::sqrt(-2.0f * std::log(u1));
  const float angle = 6.28318530717958647692f * u2;
  return lane == 0 ? radius * std::cos(angle) : radius * std::sin(angle);
}

// Host-side draws of whole 64-bit values (samplers, partitions, simulated
// populations): the first two lanes of one Philox call.
inline uint64_t philox_bits64(uint64_t seed, uint64_t stream, uint64_t counter) {
  const auto r = philox4x32(seed, stream, counter);
  return (uint64_t(r[0]) << 32) | r[1];
}

// Uniform in [0, n) by multiply-shift (Lemire): the bias is below n / 2^64.
inline uint64_t philox_below(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t n) {
  return uint64_t((static_cast<unsigned __int128>(philox_bits64(seed, stream, counter)) * n) >> 64);
}

// Uniform in [0, 1) with 53 random bits.
inline double philox_unit(uint64_t seed, uint64_t stream, uint64_t counter) {
  return double(philox_bits64(seed, stream, counter) >> 11) / 9007199254740992.0;  // 2^53
}

// A Fisher-Yates shuffle of `values` by (seed, stream, key): for i from
// size() down to 2, position i - 1 swaps with philox_below(seed, stream,
// key x 2^32 + i, i). Keys tell apart the shuffles of one stream (a task's
// epochs, a data set's parts).
template <typename T>
void philox_shuffle(std::vector<T>& values, uint64_t seed, uint64_t stream, uint64_t key) {
  for (size_t i = values.size(); i > 1; --i)
    std::swap(values[i - 1], values[size_t(philox_below(seed, stream, (key << 32) + i, i))]);
}

// `count` of `values` (all when count >= size()), a uniform subset drawn by
// philox_shuffle of their positions, kept in their order.
inline std::vector<int64_t> philox_subset(const std::vector<int64_t>& values, int64_t count,
                                          uint64_t seed, uint64_t stream, uint64_t key) {
  if (count >= int64_t(values.size())) return values;
  std::vector<int64_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  philox_shuffle(order, seed, stream, key);
  order.resize(size_t(std::max<int64_t>(count, 0)));
  std::sort(order.begin(), order.end());
  std::vector<int64_t> out;
  out.reserve(order.size());
  for (const int64_t k : order) out.push_back(values[size_t(k)]);
  return out;
}

}  // namespace turbine
