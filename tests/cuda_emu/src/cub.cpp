// The emulated cub::DeviceRadixSort::SortPairs: argument checks, the temp
// storage protocol and a stable sort by the selected key bits. See
// cub/device/device_radix_sort.cuh for the contract.
#include <algorithm>
#include <cstring>
#include <cub/device/device_radix_sort.cuh>
#include <numeric>
#include <vector>

#include "host_internal.hpp"

namespace turbine_emu {

namespace {

constexpr size_t kTempAlignment = 256;
// Beyond the alternate key and value buffers: digit histograms and tile
// state, as CUB's onesweep sort keeps.
constexpr size_t kTempFixedBytes = 4096;

size_t aligned(size_t bytes) {
  return (bytes + kTempAlignment - 1) / kTempAlignment * kTempAlignment;
}

// The key's bits in CUB's order: unsigned as is, signed with the sign bit
// flipped, floating point flipped to a total order (-0.0 sorts as +0.0).
uint64_t ordered_bits(const unsigned char* key, size_t bytes, RadixKey kind) {
  uint64_t bits = 0;
  std::memcpy(&bits, key, bytes);  // little endian: the low bytes
  const uint64_t sign = uint64_t(1) << (bytes * 8 - 1);
  const uint64_t all = bytes == 8 ? ~uint64_t(0) : (uint64_t(1) << (bytes * 8)) - 1;
  switch (kind) {
    case RadixKey::unsigned_int:
      return bits;
    case RadixKey::signed_int:
      return bits ^ sign;
    case RadixKey::floating:
      if (bits == sign) bits = 0;  // -0.0
      return (bits & sign) ? (~bits & all) : (bits | sign);
  }
  return bits;
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a);
  const auto y = reinterpret_cast<uintptr_t>(b);
  return x < y + b_bytes && y < x + a_bytes;
}

}  // namespace

cudaError_t radix_sort_pairs(void* d_temp_storage, size_t& temp_storage_bytes,
                             const void* d_keys_in, void* d_keys_out, size_t key_bytes,
                             RadixKey key_kind, const void* d_values_in, void* d_values_out,
                             size_t value_bytes, int64_t num_items, int begin_bit, int end_bit,
                             cudaStream_t stream) {
  const char* api = "cub::DeviceRadixSort::SortPairs";
  const int key_bits = static_cast<int>(key_bytes * 8);
  if (num_items < 0) {
    diagnose(api, "num_items %lld", static_cast<long long>(num_items));
    return cudaErrorInvalidValue;
  }
  if (begin_bit < 0 || end_bit > key_bits || begin_bit > end_bit) {
    diagnose(api, "bit range [%d, %d) outside a %d-bit key", begin_bit, end_bit, key_bits);
    return cudaErrorInvalidValue;
  }
  const size_t n = size_t(num_items);
  const size_t keys_size = n * key_bytes, values_size = n * value_bytes;
  const size_t required = aligned(keys_size) + aligned(values_size) + kTempFixedBytes;
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = required;
    return cudaSuccess;
  }
  if (temp_storage_bytes < required) {
    diagnose(api, "temp_storage_bytes %zu, but %zu are needed for %zu items", temp_storage_bytes,
             required, n);
    return cudaErrorInvalidValue;
  }
  if (stream_device(stream) != current_device())
    return fail(cudaErrorInvalidResourceHandle, api,
                "stream %p is destroyed, unknown or of another device", static_cast<void*>(stream));
  if (n == 0) return cudaSuccess;
  const struct {
    const void* p;
    size_t bytes;
    const char* name;
  } ranges[] = {{d_keys_in, keys_size, "d_keys_in"},
                {d_keys_out, keys_size, "d_keys_out"},
                {d_values_in, values_size, "d_values_in"},
                {d_values_out, values_size, "d_values_out"},
                {d_temp_storage, required, "d_temp_storage"}};
  for (const auto& r : ranges)
    if (!is_device_range(r.p, r.bytes))
      return fail(cudaErrorIllegalAddress, api, "%s (%zu bytes) at %s", r.name, r.bytes,
                  describe_range(r.p, r.bytes).c_str());
  for (size_t i = 0; i < std::size(ranges); ++i)
    for (size_t j = i + 1; j < std::size(ranges); ++j) {
      const bool both_inputs = i == 0 && j == 2;  // reading overlapping inputs is harmless
      if (!both_inputs && overlap(ranges[i].p, ranges[i].bytes, ranges[j].p, ranges[j].bytes)) {
        diagnose(api, "%s and %s overlap", ranges[i].name, ranges[j].name);
        return cudaErrorInvalidValue;
      }
    }

  const auto* keys = static_cast<const unsigned char*>(d_keys_in);
  const auto* values = static_cast<const unsigned char*>(d_values_in);
  const int width = end_bit - begin_bit;
  const uint64_t mask = width == 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1;
  std::vector<uint64_t> digits(n);
  for (size_t i = 0; i < n; ++i)
    digits[i] = width == 0
                    ? 0
                    : (ordered_bits(keys + i * key_bytes, key_bytes, key_kind) >> begin_bit) & mask;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return digits[a] < digits[b]; });
  // Through the temp storage, as the GPU's alternate buffers.
  auto* temp_keys = static_cast<unsigned char*>(d_temp_storage);
  auto* temp_values = temp_keys + aligned(keys_size);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(temp_keys + i * key_bytes, keys + order[i] * key_bytes, key_bytes);
    std::memcpy(temp_values + i * value_bytes, values + order[i] * value_bytes, value_bytes);
  }
  std::memcpy(d_keys_out, temp_keys, keys_size);
  std::memcpy(d_values_out, temp_values, values_size);
  std::memset(d_temp_storage, 0xA5, required);
  return cudaSuccess;
}

}  // namespace turbine_emu
