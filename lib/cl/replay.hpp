// The replay memory a cl-edge strategy draws from (issue 18): the episodic
// memory in RAM (memory.hpp: reservoir or class-balanced, rb_size samples
// with their payloads), alone (ER, A-GEM, DER++) or over the storage tier
// with data swapping (storage.hpp: st_size samples on storage; CarM's and
// Miro's hierarchical memory).
//
// Every sample the stream offers goes through observe(); each iteration
// starts with begin_iteration(), which every swap_period iterations installs
// the swap read since the last one (waiting only if its read has not
// finished) and starts the next read on the background thread: a read has
// swap_period iterations of training to hide behind, and where swaps land
// depends only on the iterations, so runs are reproducible. The RAM memory's bytes are planned
// (rb_size x (payload + 12), plus a swap's read buffer) and checked against the budget before
// anything is stored.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cl/memory.hpp"
#include "cl/storage.hpp"

namespace turbine::cl {

struct TierConfig {
  std::string policy = "reservoir";  // or class_balanced
  int64_t rb_size = 0;               // RAM samples, >= 1
  int64_t payload_bytes = 0;         // a sample's stored bytes
  uint64_t seed = 0;
  double budget_mb = 0;  // the RAM tier's bytes (memory and swap buffer) may not exceed it; 0: none
  // The storage tier; st_size 0: none (RAM only).
  int64_t st_size = 0;
  std::string storage_dir;
  int64_t swap_period = 1;
  double swap_ratio = 0;
  bool direct_io = true;
  bool direct_writes = false;  // appends with O_DIRECT too (see StoreConfig)
};

// A tier's whole state for a checkpoint: the configuration in force (Miro's
// may differ from the config's), the memories' snapshots and counters as
// JSON, and the bytes (RAM payloads, a pending swap's, the storage file).
struct TierState {
  nlohmann::ordered_json json;
  std::map<std::string, std::string> files;  // name -> bytes
};

class ReplayTier {
 public:
  // Throws (before creating anything on storage) when the RAM tier does not
  // fit the budget, or storage_dir is missing or not writable.
  explicit ReplayTier(const TierConfig& config);
  ~ReplayTier();

  void begin_iteration(int64_t iteration);
  void observe(int64_t id, int32_t label, std::span<const uint8_t> payload);

  int64_t size() const { return memory_->size(); }
  int64_t capacity() const { return memory_->capacity(); }
  // A replay batch's slots (ReplayMemory::sample).
  std::vector<int64_t> sample(int64_t count, uint64_t batch) const {
    return memory_->sample(count, batch);
  }
  std::span<const uint8_t> payload(int64_t slot) const;
  int32_t label(int64_t slot) const { return memory_->labels()[size_t(slot)]; }
  int64_t id(int64_t slot) const { return memory_->ids()[size_t(slot)]; }

  // Miro's reconfiguration between tasks: rb_size, st_size and swap_ratio
  // become `next`'s (its other fields must be this tier's). Storage keeps a
  // uniform subset of its records when it shrinks (a new file when st_size
  // changes: records read and written are counted), RAM a uniform subset of
  // its samples, or fills up from stored samples it does not hold when it
  // grows. The reservoirs' counts of samples seen carry over, so later
  // samples are kept with the probabilities an uninterrupted reservoir of
  // the new size would give. A pending swap is installed first.
  void reconfigure(const TierConfig& next);

  // Waits for a read in flight and records the state (the storage file copied).
  TierState save();
  // The tier `state` was saved from, over `base`'s paths and settings (its
  // rb_size, st_size and swap_ratio are the state's): the storage file is
  // written back into storage_dir first. `file(name)` gives a saved file's
  // bytes. Throws naming what does not fit.
  static std::unique_ptr<ReplayTier> restore(
      const TierConfig& base, const nlohmann::ordered_json& state,
      const std::function<std::string(const std::string&)>& file);

  bool hierarchical() const { return store_ != nullptr; }
  const TierConfig& config() const { return config_; }
  // RAM bytes planned: the memory with its payloads, and a swap's read buffer.
  int64_t ram_bytes() const;
  int64_t storage_bytes() const { return store_ ? store_->storage_bytes() : 0; }
  // Bytes read from and written to storage since the tier was made.
  int64_t storage_read_bytes() const { return moved_read_ + (store_ ? store_->bytes_read() : 0); }
  int64_t storage_written_bytes() const {
    return moved_written_ + (store_ ? store_->bytes_written() : 0);
  }
  SwapStats swap_stats() const { return swap_ ? swap_->stats() : SwapStats{}; }
  const ReplayMemory& memory() const { return *memory_; }
  const SampleStore* store() const { return store_.get(); }
  SampleStore* store() { return store_.get(); }  // reads count their bytes: not const
  // {"rb_size", "ram_bytes", "held", "st_size", "stored", "storage_bytes", "bytes_read",
  //  "bytes_written", "swaps", "swapped_in", "direct_io"}
  nlohmann::ordered_json to_json() const;

 private:
  // generation >= 0: the storage file of that generation is opened as it
  // is (restore); -1: a new, empty one in storage_dir.
  ReplayTier(const TierConfig& config, int64_t generation);
  TierConfig config_;
  std::unique_ptr<ReplayMemory> memory_;
  std::vector<uint8_t> payloads_;  // RAM only: by slot
  std::unique_ptr<SampleStore> store_;
  std::unique_ptr<SwapManager> swap_;
  // The path of the storage file of generation `generation`.
  std::string storage_path(int64_t generation) const;
  int64_t generation_ = 0;  // of the storage file: storage_dir, then storage_dir/tier-N
  int64_t moved_read_ = 0, moved_written_ = 0;  // bytes of earlier stores (reconfigure)
};

}  // namespace turbine::cl
