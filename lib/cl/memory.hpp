// The episodic memory of cl-edge's replay strategies (issue 18, after Miro's
// replay buffer): sample ids (int64) with their labels (int32) in at most
// `capacity` slots, filled from the stream of samples seen.
//
// ReservoirMemory keeps a uniform random subset of everything seen (Vitter's
// Algorithm R); ClassBalancedMemory keeps the classes balanced (GDumb's
// greedy sampler, Prabhu et al. 2020, what Avalanche's ClassBalancedBuffer
// approaches by rebalancing after each experience).
//
// Memory is planned: a sample costs bytes_per_sample() = its payload (784
// bytes for a 28x28 uint8 image) + 12 bytes of id and label, bytes() is
// exactly size() * bytes_per_sample(), and a capacity whose bytes exceed the
// budget is refused at construction.
//
// Every random choice is a Philox draw of (seed, stream, counter), the
// counter of an add being the number of samples seen (that one included):
// the ids, the labels and that number are the whole state, so snapshot() and
// restore() resume a checkpointed memory exactly.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace turbine::cl {

// Bytes of a stored sample besides its payload: the int64 id and int32 label.
constexpr int64_t kIdLabelBytes = sizeof(int64_t) + sizeof(int32_t);

struct MemoryConfig {
  int64_t capacity = 0;       // rb_size: the samples held at most, >= 1
  uint64_t seed = 0;          // of every random choice
  int64_t payload_bytes = 0;  // the stored sample's data (784 for a 28x28 uint8 image)
  double budget_mb = 0;       // capacity_bytes() may not exceed it (MB: 2^20 bytes); 0: none
};

// Throws turbine::Error unless `capacity` samples of `bytes_per_sample` fit
// in `budget_mb` (0: no budget), naming both ("rb_size 5000 samples x 796
// bytes = 3.8 MB is over the memory budget of 2 MB") and the largest rb_size
// that fits.
void check_memory_budget(int64_t capacity, int64_t bytes_per_sample, double budget_mb);

// What add() did with a sample.
enum class AddAction {
  stored,    // into an empty slot
  replaced,  // over an older sample, which left the memory
  skipped,   // not kept
};

struct AddResult {
  AddAction action = AddAction::skipped;
  int64_t slot = -1;           // stored, replaced: the slot now holding the sample
  int64_t evicted_id = -1;     // replaced: the sample that left
  int32_t evicted_label = -1;  // replaced
  bool operator==(const AddResult&) const = default;
};

// The whole state of a memory, for a checkpoint. `seen` is also the Philox
// counter of the last add, so it is the random state too.
struct MemorySnapshot {
  int64_t capacity = 0;  // checked against the restoring memory's
  uint64_t seed = 0;     // checked likewise: another seed would not continue the run
  int64_t seen = 0;
  std::vector<int64_t> ids;     // by slot
  std::vector<int32_t> labels;  // by slot
  bool operator==(const MemorySnapshot&) const = default;
};

// What both memories share: the slots, the accounting, replay batches and
// snapshots. Both fill empty slots in order, so size() == min(seen(), capacity()).
class ReplayMemory {
 public:
  virtual ~ReplayMemory() = default;
  // Offers the next sample of the stream.
  virtual AddResult add(int64_t id, int32_t label) = 0;

  int64_t capacity() const { return config_.capacity; }
  int64_t size() const { return int64_t(ids_.size()); }
  int64_t seen() const { return seen_; }
  const std::vector<int64_t>& ids() const { return ids_; }        // by slot
  const std::vector<int32_t>& labels() const { return labels_; }  // by slot
  std::map<int32_t, int64_t> class_counts() const;                // label -> samples held

  int64_t bytes_per_sample() const { return config_.payload_bytes + kIdLabelBytes; }
  int64_t bytes() const { return size() * bytes_per_sample(); }
  int64_t capacity_bytes() const { return capacity() * bytes_per_sample(); }

  // A replay mini-batch: min(count, size()) distinct slots, uniformly drawn
  // without replacement, in random order. A pure function of the seed, the
  // memory's contents and `batch` (the batch's number, e.g. the training
  // step, < 2^32): it changes no state.
  std::vector<int64_t> sample(int64_t count, uint64_t batch) const;

  MemorySnapshot snapshot() const;
  // Throws, changing nothing, if the snapshot is not one of a memory with
  // this capacity and seed.
  virtual void restore(const MemorySnapshot& snapshot);

 protected:
  explicit ReplayMemory(const MemoryConfig& config);
  ReplayMemory(const ReplayMemory&) = default;
  ReplayMemory& operator=(const ReplayMemory&) = default;
  // Counts the sample as seen; add() starts with it.
  void count_seen() { ++seen_; }
  // Uniform in [0, n), drawn for the current add (counter seen()).
  uint64_t draw_below(uint64_t n) const;
  // Puts the sample in `slot`: size() for a new slot, else over the sample there.
  AddResult put(int64_t slot, int64_t id, int32_t label);

 private:
  MemoryConfig config_;
  int64_t seen_ = 0;
  std::vector<int64_t> ids_;
  std::vector<int32_t> labels_;
};

// Vitter's Algorithm R: the n-th sample seen (from 1) is stored while there
// are empty slots, and afterwards kept with probability capacity/n, over a
// uniformly chosen slot. Every sample seen is then in the memory with
// probability min(1, capacity/n) after n samples. A stream that offers an id
// twice can hold it twice; the memory does not look ids up.
class ReservoirMemory : public ReplayMemory {
 public:
  explicit ReservoirMemory(const MemoryConfig& config) : ReplayMemory(config) {}
  AddResult add(int64_t id, int32_t label) override;
};

// GDumb's greedy class balancing. While there are empty slots every sample
// is stored. Once full, a sample whose class holds fewer samples than the
// largest class replaces a uniformly chosen sample of the largest class
// (ties: the smallest label); a sample of a largest class is skipped.
//
// Invariant, at every point of any stream: every class holds at least
// min(its samples seen, largest class's count - 1). So a class is either
// complete (every sample of it seen is held) or within 1 of the largest;
// once every class seen has enough samples, all counts are within 1.
class ClassBalancedMemory : public ReplayMemory {
 public:
  explicit ClassBalancedMemory(const MemoryConfig& config) : ReplayMemory(config) {}
  AddResult add(int64_t id, int32_t label) override;
  void restore(const MemorySnapshot& snapshot) override;

 private:
  std::map<int32_t, int64_t> counts_;  // class_counts(), kept up to date
};

}  // namespace turbine::cl
