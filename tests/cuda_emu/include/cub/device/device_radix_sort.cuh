// cub::DeviceRadixSort::SortPairs for the emulator: CUB's two-call protocol
// (a null d_temp_storage asks for temp_storage_bytes and does no work), a
// stable sort of (key, value) pairs by the key bits [begin_bit, end_bit),
// with CUB's order for signed and floating-point keys (bits twiddled so
// negatives come first). The keys written out are the full input keys. The
// sort checks what a GPU would need: keys, values and temp storage in device
// memory, temp storage at least as large as asked for (cudaErrorInvalidValue
// otherwise, as CUB returns), inputs and outputs not overlapping, a live
// stream; it really uses the temp storage and leaves garbage in it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace turbine_emu {

// How a key's bits order: CUB's radix twiddling per key type.
enum class RadixKey { unsigned_int, signed_int, floating };

cudaError_t radix_sort_pairs(void* d_temp_storage, size_t& temp_storage_bytes,
                             const void* d_keys_in, void* d_keys_out, size_t key_bytes,
                             RadixKey key_kind, const void* d_values_in, void* d_values_out,
                             size_t value_bytes, int64_t num_items, int begin_bit, int end_bit,
                             cudaStream_t stream);

}  // namespace turbine_emu

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                               ValueT* d_values_out, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_arithmetic_v<KeyT> && sizeof(KeyT) <= 8,
                  "the emulator sorts integer and floating-point keys up to 64 bits");
    static_assert(std::is_trivially_copyable_v<ValueT>);
    static_assert(std::is_integral_v<NumItemsT>);
    constexpr turbine_emu::RadixKey kind =
        std::is_floating_point_v<KeyT> ? turbine_emu::RadixKey::floating
        : std::is_signed_v<KeyT>       ? turbine_emu::RadixKey::signed_int
                                       : turbine_emu::RadixKey::unsigned_int;
    return turbine_emu::radix_sort_pairs(
        d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, sizeof(KeyT), kind, d_values_in,
        d_values_out, sizeof(ValueT), static_cast<int64_t>(num_items), begin_bit, end_bit, stream);
  }
};

}  // namespace cub
