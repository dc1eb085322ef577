// The replay memories of memory.hpp.
#include "cl/memory.hpp"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::cl {

namespace {

constexpr uint64_t kAddStream = 0xadd;              // the draws of add()
constexpr uint64_t kSampleStream = 0x5a3b1e;        // the draws of sample()
constexpr int64_t kMaxCapacity = int64_t(1) << 32;  // a slot's index fits a Philox counter's half
constexpr int64_t kMaxPayloadBytes = int64_t(1) << 30;
constexpr double kBytesPerMb = 1 << 20;

// `mb` with the fewest decimals (at least one) that still show it above `budget`.
std::string format_over(double mb, double budget) {
  for (int decimals = 1; decimals < 6; ++decimals) {
    const std::string text = fmt::format("{:.{}f}", mb, decimals);
    if (std::stod(text) > budget) return text;
  }
  return fmt::format("{:.6f}", mb);
}

}  // namespace

void check_memory_budget(int64_t capacity, int64_t bytes_per_sample, double budget_mb) {
  TURBINE_CHECK(budget_mb >= 0, "memory budget of {} MB: must be positive, or 0 for none",
                budget_mb);
  TURBINE_CHECK(bytes_per_sample >= 1, "memory budget: {} bytes a sample", bytes_per_sample);
  if (budget_mb == 0) return;
  const double mb = double(capacity) * double(bytes_per_sample) / kBytesPerMb;
  if (mb <= budget_mb) return;
  const int64_t fits = int64_t(budget_mb * kBytesPerMb / double(bytes_per_sample));
  TURBINE_FAIL(
      "rb_size {} samples x {} bytes = {} MB is over the memory budget of {} MB (MB = 2^20 "
      "bytes): {}",
      capacity, bytes_per_sample, format_over(mb, budget_mb), budget_mb,
      fits > 0 ? fmt::format("lower rb_size to at most {} or raise the budget", fits)
               : std::string("not even one sample fits; raise the budget"));
}

ReplayMemory::ReplayMemory(const MemoryConfig& config) : config_(config) {
  TURBINE_CHECK(config.capacity >= 1 && config.capacity < kMaxCapacity,
                "rb_size {}: a replay memory holds from 1 to 2^32 - 1 samples", config.capacity);
  TURBINE_CHECK(config.payload_bytes >= 0 && config.payload_bytes <= kMaxPayloadBytes,
                "replay memory: a sample's payload of {} bytes is not in [0, 2^30]",
                config.payload_bytes);
  check_memory_budget(config.capacity, bytes_per_sample(), config.budget_mb);
  ids_.reserve(size_t(config.capacity));
  labels_.reserve(size_t(config.capacity));
}

std::map<int32_t, int64_t> ReplayMemory::class_counts() const {
  std::map<int32_t, int64_t> counts;
  for (int32_t label : labels_) ++counts[label];
  return counts;
}

uint64_t ReplayMemory::draw_below(uint64_t n) const {
  return philox_below(config_.seed, kAddStream, uint64_t(seen_), n);
}

AddResult ReplayMemory::put(int64_t slot, int64_t id, int32_t label) {
  AddResult result;
  result.slot = slot;
  if (slot == size()) {
    result.action = AddAction::stored;
    ids_.push_back(id);
    labels_.push_back(label);
  } else {
    result.action = AddAction::replaced;
    result.evicted_id = std::exchange(ids_[size_t(slot)], id);
    result.evicted_label = std::exchange(labels_[size_t(slot)], label);
  }
  return result;
}

std::vector<int64_t> ReplayMemory::sample(int64_t count, uint64_t batch) const {
  TURBINE_CHECK(count >= 0, "replay batch of {} samples", count);
  TURBINE_CHECK(batch < (uint64_t(1) << 32), "replay batch number {}: must be below 2^32", batch);
  // A partial Fisher-Yates shuffle of the slots: the first n are the batch.
  std::vector<int64_t> slots(static_cast<size_t>(size()));
  std::iota(slots.begin(), slots.end(), int64_t(0));
  const int64_t n = std::min(count, size());
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t pick = philox_below(config_.seed, kSampleStream, (batch << 32) | uint64_t(i),
                                       uint64_t(size() - i));
    std::swap(slots[size_t(i)], slots[size_t(i) + pick]);
  }
  slots.resize(size_t(n));
  return slots;
}

MemorySnapshot ReplayMemory::snapshot() const {
  return {config_.capacity, config_.seed, seen_, ids_, labels_};
}

void ReplayMemory::restore(const MemorySnapshot& s) {
  TURBINE_CHECK(s.capacity == config_.capacity,
                "replay memory snapshot: taken with rb_size {}, this memory's is {} (resume with "
                "the checkpoint's rb_size)",
                s.capacity, config_.capacity);
  TURBINE_CHECK(s.seed == config_.seed,
                "replay memory snapshot: taken with seed {}, this memory's is {} (resume with the "
                "checkpoint's seed)",
                s.seed, config_.seed);
  TURBINE_CHECK(s.ids.size() == s.labels.size(),
                "replay memory snapshot: {} ids but {} labels (a corrupt checkpoint?)",
                s.ids.size(), s.labels.size());
  TURBINE_CHECK(s.seen >= 0 && int64_t(s.ids.size()) == std::min(s.seen, s.capacity),
                "replay memory snapshot: {} samples held after {} seen with rb_size {} (a memory "
                "holds min(seen, rb_size); a corrupt checkpoint?)",
                s.ids.size(), s.seen, s.capacity);
  seen_ = s.seen;
  ids_ = s.ids;
  labels_ = s.labels;
}

AddResult ReservoirMemory::add(int64_t id, int32_t label) {
  count_seen();
  if (size() < capacity()) return put(size(), id, label);
  // The n-th sample is kept with probability capacity/n, over a uniform slot.
  const uint64_t pick = draw_below(uint64_t(seen()));
  if (pick >= uint64_t(capacity())) return {};
  return put(int64_t(pick), id, label);
}

AddResult ClassBalancedMemory::add(int64_t id, int32_t label) {
  count_seen();
  if (size() < capacity()) {
    ++counts_[label];
    return put(size(), id, label);
  }
  // The largest class; the map's order by label breaks ties to the smallest.
  auto largest = counts_.begin();
  for (auto it = counts_.begin(); it != counts_.end(); ++it)
    if (it->second > largest->second) largest = it;
  const auto own = counts_.find(label);
  if (own != counts_.end() && own->second >= largest->second) return {};
  // Evict the pick-th sample of the largest class in slot order (an order a
  // restored memory shares).
  const int64_t pick = int64_t(draw_below(uint64_t(largest->second)));
  int64_t slot = 0;
  for (int64_t matched = -1;; ++slot)
    if (labels()[size_t(slot)] == largest->first && ++matched == pick) break;
  if (--largest->second == 0) counts_.erase(largest);
  ++counts_[label];
  return put(slot, id, label);
}

void ClassBalancedMemory::restore(const MemorySnapshot& snapshot) {
  ReplayMemory::restore(snapshot);
  counts_ = class_counts();
}

}  // namespace turbine::cl
