// The storage tier of cl-edge's hierarchical memory (issue 18, after Miro,
// Ma et al., MobiCom 2023): every sample of the stream goes to a file on the
// device's storage, and the episodic memory in RAM (memory.hpp) is refreshed
// from it by data swapping.
//
// SampleStore: one raw file, storage_dir/samples.bin, of fixed-size records
// (int64 id, int32 label, the payload, zero padding up to a multiple of 512
// bytes so that O_DIRECT can move whole records), at most st_size of them.
// When it is full, a new sample takes the place of a stored one by the
// replay memory's Algorithm R (a ReservoirMemory over the records, on its
// own Philox key): after n samples every sample seen is on storage with the
// same probability st_size/n. Keeping the newest instead would forget the
// first tasks, which replay is there to remember. The store tries O_DIRECT
// (the far tier really is the disk, not the page cache) and falls back to
// buffered I/O where the file system refuses it (EINVAL: tmpfs before
// Linux 6.6, a device); direct_io() says which.
//
// SwapManager: every swap_period iterations, swap_ratio of the memory's
// slots are replaced by stored samples not in RAM, read on a background
// thread while training goes on; the read lands in a second buffer and is
// installed into the memory by apply() (or poll()). A swap never loses or
// duplicates a sample: only samples still on storage leave RAM (a swap
// writes nothing: they were appended when first seen), and only samples not
// in RAM come in.
//
// Memory is planned: the RAM tier is capacity x (payload + 12) bytes, the
// swap's second buffer slots_per_swap() x (payload + 12), storage st_size x
// record_bytes(); byte counters are exact. The store's index (12 bytes a
// record, and a hash map from id to record) stays in RAM as well.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cl/memory.hpp"

namespace turbine::cl {

// Records start on multiples of this, and are padded to it (O_DIRECT's unit).
constexpr int64_t kRecordAlignment = 512;

struct StoreConfig {
  std::string storage_dir;    // an existing, writable folder; the file is samples.bin in it
  int64_t st_size = 0;        // records held at most, >= 1
  int64_t payload_bytes = 0;  // of every sample (the memory's)
  uint64_t seed = 0;          // of the reservoir's draws
  bool direct_io = true;      // try O_DIRECT first for reads; false: buffered I/O
  // Appends with O_DIRECT too (each waits for the device); false: through the
  // page cache (the kernel writes them behind; a later O_DIRECT read of the
  // record makes it write them first, on the reading thread).
  bool direct_writes = false;
  bool open_existing = false;  // keep the file's contents, to restore() a checkpoint's
};

// A record's id and label, as read from the file.
struct StoredSample {
  int64_t id = -1;
  int32_t label = -1;
  bool operator==(const StoredSample&) const = default;
};

// The store's state for a checkpoint; the records themselves are the file,
// which the checkpoint must keep a copy of.
struct StoreSnapshot {
  int64_t st_size = 0;
  int64_t payload_bytes = 0;
  MemorySnapshot index;  // by record: the ids and labels, and the reservoir's state
  bool operator==(const StoreSnapshot&) const = default;
};

class SampleStore {
 public:
  // Opens (creates; empties unless open_existing) the file. Throws naming
  // storage_dir when it is missing, not a folder, or not writable.
  explicit SampleStore(const StoreConfig& config);
  ~SampleStore();
  SampleStore(const SampleStore&) = delete;
  SampleStore& operator=(const SampleStore&) = delete;

  // Offers the stream's next sample (`payload`: payload_bytes() bytes): a
  // new record while there is room, then Algorithm R over the records. The
  // AddResult's slot is the record written; evicted_id is the sample that
  // left storage. `before_write(record)` runs after the record is chosen and
  // before it is written: an owner reading records on another thread waits
  // there if that record is being read. Throws for an id already stored.
  // After a failed write (a full disk) the file no longer matches the index:
  // every later append throws that error again, until restore().
  AddResult append(int64_t id, int32_t label, std::span<const uint8_t> payload,
                   const std::function<void(int64_t record)>& before_write = {});

  // Reads the `records` (each < records()): their ids and labels, and their
  // payloads one after the other into `payloads` (records.size() x
  // payload_bytes() bytes). May run on another thread than append(), as
  // long as no append overwrites a record being read (see before_write).
  std::vector<StoredSample> read(std::span<const int64_t> records, std::span<uint8_t> payloads);

  int64_t records() const { return index_.size(); }
  int64_t seen() const { return index_.seen(); }
  const std::vector<int64_t>& ids() const { return index_.ids(); }        // by record
  const std::vector<int32_t>& labels() const { return index_.labels(); }  // by record
  // The record holding sample `id`, or -1 when it is not on storage.
  int64_t record_of(int64_t id) const;

  int64_t st_size() const { return index_.capacity(); }
  int64_t payload_bytes() const { return payload_bytes_; }
  int64_t record_bytes() const { return record_bytes_; }  // 12 + payload, rounded up to 512
  int64_t storage_bytes() const { return records() * record_bytes_; }
  int64_t bytes_read() const { return bytes_read_; }  // by this object, restore()'s checks included
  int64_t bytes_written() const { return bytes_written_; }
  bool direct_io() const { return direct_io_; }  // O_DIRECT reads (false after a fallback)
  bool direct_writes() const { return write_fd_ < 0 && direct_io_; }
  const std::string& path() const { return path_; }

  StoreSnapshot snapshot() const;
  // Takes up the checkpoint's index over this store's file (opened with
  // open_existing: a copy of the file as it was at the snapshot). Checks the
  // file's size and the ids of up to 64 records spread over it; throws,
  // changing nothing, when the snapshot or the file does not fit. No read
  // may be running.
  void restore(const StoreSnapshot& snapshot);

 private:
  struct FreeAligned {
    void operator()(uint8_t* p) const;
  };
  using AlignedBuffer = std::unique_ptr<uint8_t[], FreeAligned>;
  AlignedBuffer aligned_record() const;
  // Reads or writes all record_bytes() of `record` through `buffer` (aligned),
  // throwing naming the file, the record and the cause.
  void move_record(bool write, uint8_t* buffer, int64_t record);
  // Reads and checks `record`'s header against the index (restore()).
  StoredSample read_header(int64_t record, uint8_t* buffer);

  std::string path_;
  int64_t payload_bytes_ = 0;
  int64_t record_bytes_ = 0;
  int fd_ = -1;
  int write_fd_ = -1;  // appends' buffered descriptor when reads are O_DIRECT and writes not
  ReservoirMemory index_;
  std::unordered_map<int64_t, int64_t> record_of_;
  std::atomic<int64_t> readable_{0};  // records() for read() on another thread
  std::atomic<bool> direct_io_{false};
  std::atomic<int64_t> bytes_read_{0};
  std::atomic<int64_t> bytes_written_{0};
  AlignedBuffer append_buffer_;
  std::string failed_write_;  // the error that left the file behind the index; "" when none
};

struct SwapConfig {
  int64_t swap_period = 1;  // iterations between swaps, >= 1
  double swap_ratio = 0;    // of the memory's capacity replaced per swap, in [0, 1]
  uint64_t seed = 0;        // of the swaps' draws
};

// What observe() did with a sample.
struct ObserveResult {
  AddResult stored;  // the store's append: slot is the record
  AddResult memory;  // the memory's add: slot is the RAM slot
  bool operator==(const ObserveResult&) const = default;
};

struct SwapStats {
  int64_t swaps = 0;             // swaps installed
  int64_t swapped_in = 0;        // samples that came into RAM from storage (as many left)
  int64_t skipped = 0;           // planned replacements dropped at install (see apply())
  int64_t bytes_to_ram = 0;      // read from storage by swaps (records x record_bytes)
  int64_t bytes_to_storage = 0;  // written to storage by observe(); a swap writes nothing
  bool operator==(const SwapStats&) const = default;
};

// A swap drawn and read, not yet installed.
struct PendingSwap {
  std::vector<int64_t> slots;     // the memory's slots to replace
  std::vector<int64_t> out_ids;   // what they held when drawn
  std::vector<int64_t> records;   // the store's records read into them
  std::vector<int64_t> in_ids;    // the samples the store's index had in them when drawn
  std::vector<StoredSample> in;   // the records' ids and labels, as read
  std::vector<uint8_t> payloads;  // the records' payloads, records.size() x payload_bytes
  bool operator==(const PendingSwap&) const = default;
};

// The RAM tier and the swaps' state, for a checkpoint. A swap pending at the
// snapshot (its read finished first) is carried over whole, so the restored
// manager installs it where the uninterrupted one does.
struct SwapSnapshot {
  int64_t swap_period = 0;  // checked against the restoring manager's, as are the next two
  double swap_ratio = 0;
  uint64_t seed = 0;
  int64_t last_iteration = -1;  // of the last request_swap()
  int64_t swaps_drawn = 0;      // the Philox counter of the swaps' draws
  SwapStats stats;
  MemorySnapshot memory;
  std::vector<uint8_t> payloads;  // by slot: memory.ids.size() x payload_bytes
  bool pending = false;
  PendingSwap swap;  // when pending
  bool operator==(const SwapSnapshot&) const = default;
};

// Owns the flow of samples between the stream, the RAM tier (the memory's
// ids and labels, and a payload per slot kept here) and the store. The
// memory and the store must outlive it, and the memory changes only
// through it from its construction (empty) on. A training loop:
//
//   for (int64_t it = 0; ...; ++it) {
//     swap.request_swap(it);             // every swap_period: starts a read
//     swap.observe(id, label, payload);  // the stream's sample(s)
//     ... train on memory.sample() and swap.payload(slot) ...
//     swap.apply();                      // installs the read, waiting if need be
//   }
class SwapManager {
 public:
  // Throws unless 1 <= swap_period, 0 <= swap_ratio <= 1, the memory is
  // empty and its payload_bytes are the store's.
  SwapManager(ReplayMemory& memory, SampleStore& store, const SwapConfig& config);
  ~SwapManager();  // waits for a read in flight
  SwapManager(const SwapManager&) = delete;
  SwapManager& operator=(const SwapManager&) = delete;

  // Offers the stream's next sample to the store (appended, st_size's
  // reservoir) and to the memory; when the memory keeps it, `payload` goes
  // into its slot. An append over a record being read waits for the read.
  // Throws for an id already in RAM or on storage (ids must be unique).
  ObserveResult observe(int64_t id, int32_t label, std::span<const uint8_t> payload);

  // Called every iteration (increasing). At a multiple of swap_period,
  // installs a swap still pending (waiting for it), then draws one: up to
  // slots_per_swap() slots, uniformly among those whose sample is on
  // storage, and as many records, uniformly among those whose sample is not
  // in RAM, and starts reading the records on a background thread. Returns
  // whether a read started.
  bool request_swap(int64_t iteration);
  // Installs the pending swap, waiting for its read; false when none. A
  // planned replacement is dropped (counted in skipped) when its slot no
  // longer holds the sample drawn, that sample has left storage meanwhile,
  // or the incoming sample is in RAM: nothing is lost or held twice. The
  // outcome depends only on the calls made, never on the read's timing.
  bool apply();
  // As apply() when the read has finished; false, without waiting, while
  // it runs. Where poll() installs then depends on timing: use apply() for
  // runs that must be reproducible.
  bool poll();
  // Waits for a read in flight (installs nothing); rethrows its error.
  void wait();
  bool swap_pending() const { return pending_; }

  // The payload of the sample in `slot` (< memory.size()).
  std::span<const uint8_t> payload(int64_t slot) const;
  int64_t slots_per_swap() const { return slots_per_swap_; }  // round(swap_ratio x capacity)

  int64_t ram_bytes() const;          // capacity x (payload + 12): the memory with its payloads
  int64_t swap_buffer_bytes() const;  // slots_per_swap() x (payload + 12): the read's buffer
  const SwapStats& stats() const { return stats_; }

  // Waits for a read in flight (its error is thrown) and records the state.
  SwapSnapshot snapshot();
  // Discards a read in flight, then takes up the snapshot, the memory's
  // included; throws, changing nothing, when it does not fit this manager.
  void restore(const SwapSnapshot& snapshot);

 private:
  // Starts reading pending_swap_'s records into it on the background thread.
  void start_read();
  // Joins the background thread; rethrows its error unless `discard`.
  void join(bool discard);
  void install();
  // before_write of the store's appends: waits if `record` is being read.
  void before_write(int64_t record);

  ReplayMemory& memory_;
  SampleStore& store_;
  SwapConfig config_;
  int64_t payload_bytes_ = 0;
  int64_t slots_per_swap_ = 0;
  std::vector<uint8_t> payloads_;  // the RAM tier's payloads, capacity x payload_bytes
  int64_t last_iteration_ = -1;
  int64_t swaps_drawn_ = 0;
  SwapStats stats_;
  bool pending_ = false;  // pending_swap_ holds a swap (read or being read)
  PendingSwap pending_swap_;
  std::thread reader_;
  std::atomic<bool> read_done_{false};
  std::exception_ptr read_error_;
};

}  // namespace turbine::cl
