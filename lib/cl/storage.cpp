// The storage tier of storage.hpp: the record file and the swaps.
#include "cl/storage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <unordered_set>
#include <utility>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace fs = std::filesystem;

namespace turbine::cl {

namespace {

constexpr uint64_t kStoreKeyStream = 0x5707e;  // derives the store's reservoir key from its seed
constexpr uint64_t kSwapOutStream = 0x5a90;    // which slots a swap empties
constexpr uint64_t kSwapInStream = 0x5a91;     // which records a swap reads
constexpr size_t kBufferAlignment = 4096;      // of record buffers: every device's O_DIRECT's
constexpr int64_t kMaxPayloadBytes = int64_t(1) << 30;
constexpr int64_t kRestoreChecks = 64;  // records whose ids restore() reads back

int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// The first n of `items` become a uniformly drawn n-subset of them, in
// random order: a partial Fisher-Yates shuffle on the Philox draws
// (seed, stream, draw << 32 | i), each uniform by multiply-shift.
void draw_prefix(std::vector<int64_t>& items, size_t n, uint64_t seed, uint64_t stream,
                 uint64_t draw) {
  for (size_t i = 0; i < n; ++i) {
    std::swap(items[i],
              items[i + size_t(philox_below(seed, stream, (draw << 32) | i, items.size() - i))]);
  }
  items.resize(n);
}

// Throws naming what is wrong with the folder `dir`, unless it is one.
void check_storage_dir(const std::string& dir) {
  TURBINE_CHECK(!dir.empty(),
                "storage_dir is not set: give the folder on the storage device that is to hold "
                "the samples");
  std::error_code error;
  if (fs::is_directory(dir, error)) return;
  TURBINE_CHECK(!fs::exists(dir, error), "storage_dir {} is not a folder", dir);
  // Name what is in the way: the nearest part of the path that exists.
  for (fs::path up = fs::path(dir).parent_path(); !up.empty() && up != up.parent_path();
       up = up.parent_path())
    if (fs::exists(up, error)) {
      TURBINE_CHECK(fs::is_directory(up, error),
                    "storage_dir {} cannot be created: {} is a file, not a folder", dir,
                    up.string());
      break;
    }
  TURBINE_FAIL("storage_dir {} does not exist: create it on the storage device first", dir);
}

MemoryConfig index_config(const StoreConfig& config) {
  TURBINE_CHECK(config.st_size >= 1 && config.st_size < (int64_t(1) << 32),
                "st_size {}: the storage tier holds from 1 to 2^32 - 1 samples", config.st_size);
  TURBINE_CHECK(config.payload_bytes >= 0 && config.payload_bytes <= kMaxPayloadBytes,
                "storage tier: a sample's payload of {} bytes is not in [0, 2^30]",
                config.payload_bytes);
  // Its own key: a memory in RAM on the same seed draws independently of it.
  const auto key = philox4x32(config.seed, kStoreKeyStream, 0);
  MemoryConfig index;
  index.capacity = config.st_size;
  index.seed = (uint64_t(key[0]) << 32) | key[1];
  return index;
}

struct Transfer {
  size_t done = 0;
  int error = 0;  // errno of the call that stopped it; 0 at the end of the file
};

// pread or pwrite of `bytes` at `offset`, retrying short transfers and
// EINTR, until done, an error or the end of the file.
Transfer transfer(int fd, bool write, uint8_t* buffer, size_t bytes, uint64_t offset) {
  Transfer t;
  while (t.done < bytes) {
    const auto at = static_cast<off_t>(offset + t.done);
    const ssize_t n = write ? ::pwrite(fd, buffer + t.done, bytes - t.done, at)
                            : ::pread(fd, buffer + t.done, bytes - t.done, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      t.error = n < 0 ? errno : 0;
      break;
    }
    t.done += size_t(n);
  }
  return t;
}

}  // namespace

void SampleStore::FreeAligned::operator()(uint8_t* p) const {
  std::free(p);
}

SampleStore::SampleStore(const StoreConfig& config)
    : path_((fs::path(config.storage_dir) / "samples.bin").string()),
      payload_bytes_(config.payload_bytes),
      record_bytes_(round_up(kIdLabelBytes + config.payload_bytes, kRecordAlignment)),
      index_(index_config(config)) {
  check_storage_dir(config.storage_dir);
  append_buffer_ = aligned_record();
  const int flags = O_RDWR | O_CREAT | O_CLOEXEC | (config.open_existing ? 0 : O_TRUNC);
  if (config.direct_io) {
    fd_ = ::open(path_.c_str(), flags | O_DIRECT, 0644);
    // EINVAL: the file system does not do O_DIRECT (tmpfs before Linux 6.6):
    // buffered I/O then.
    TURBINE_CHECK(fd_ >= 0 || errno == EINVAL,
                  "cannot open the storage file {}: {} (storage_dir must be a writable folder)",
                  path_, std::strerror(errno));
  }
  if (fd_ < 0) fd_ = ::open(path_.c_str(), flags, 0644);
  TURBINE_CHECK(fd_ >= 0,
                "cannot open the storage file {}: {} (storage_dir must be a writable folder)",
                path_, std::strerror(errno));
  direct_io_ = (::fcntl(fd_, F_GETFL) & O_DIRECT) != 0;
  if (direct_io_ && !config.direct_writes) {
    write_fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC, 0644);
    TURBINE_CHECK(write_fd_ >= 0, "cannot open the storage file {} for writing: {}", path_,
                  std::strerror(errno));
  }
}

SampleStore::~SampleStore() {
  if (fd_ >= 0) ::close(fd_);
  if (write_fd_ >= 0) ::close(write_fd_);
}

SampleStore::AlignedBuffer SampleStore::aligned_record() const {
  const size_t bytes = size_t(round_up(record_bytes_, int64_t(kBufferAlignment)));
  AlignedBuffer buffer(static_cast<uint8_t*>(std::aligned_alloc(kBufferAlignment, bytes)));
  if (!buffer) throw std::bad_alloc();
  std::memset(buffer.get(), 0, bytes);  // the padding is zero on disk
  return buffer;
}

void SampleStore::move_record(bool write, uint8_t* buffer, int64_t record) {
  const auto bytes = size_t(record_bytes_);
  const uint64_t offset = uint64_t(record) * uint64_t(record_bytes_);
  const int fd = write && write_fd_ >= 0 ? write_fd_ : fd_;
  const bool direct = fd == fd_ && direct_io_;
  Transfer t = transfer(fd, write, buffer, bytes, offset);
  if (t.error == EINVAL && direct) {
    // The open took O_DIRECT but the device refuses these transfers (it
    // wants more than 512-byte alignment): buffered I/O from now on.
    direct_io_ = false;
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT);
    const Transfer rest = transfer(fd_, write, buffer + t.done, bytes - t.done, offset + t.done);
    t = {t.done + rest.done, rest.error};
  }
  (write ? bytes_written_ : bytes_read_) += int64_t(t.done);
  if (t.done == bytes) return;
  if (write) {
    TURBINE_CHECK(t.error != ENOSPC,
                  "storage file {}: the disk is full: record {} needed {} bytes at byte {}, {} "
                  "were written (the store needs st_size {} x {} bytes = {} bytes): free space on "
                  "the storage device or lower st_size",
                  path_, record, bytes, offset, t.done, st_size(), record_bytes_,
                  st_size() * record_bytes_);
    TURBINE_FAIL("storage file {}: writing record {} ({} bytes at byte {}) failed after {}: {}",
                 path_, record, bytes, offset, t.done,
                 t.error ? std::strerror(t.error) : "no progress");
  }
  TURBINE_CHECK(t.error != 0,
                "storage file {}: record {} (bytes {} to {}) ends early, at byte {}: the file is "
                "shorter than the store's records; was it truncated or replaced?",
                path_, record, offset, offset + bytes, offset + t.done);
  TURBINE_FAIL("storage file {}: reading record {} ({} bytes at byte {}) failed after {}: {}",
               path_, record, bytes, offset, t.done, std::strerror(t.error));
}

AddResult SampleStore::append(int64_t id, int32_t label, std::span<const uint8_t> payload,
                              const std::function<void(int64_t record)>& before_write) {
  TURBINE_CHECK(failed_write_.empty(),
                "{} (the store stopped at this error: restore() a checkpoint to go on)",
                failed_write_);
  TURBINE_CHECK(int64_t(payload.size()) == payload_bytes_,
                "storage file {}: sample {} has {} bytes of payload, the store's samples {}", path_,
                id, payload.size(), payload_bytes_);
  TURBINE_CHECK(record_of(id) < 0,
                "storage file {}: sample {} is stored already (record {}): the stream's sample "
                "ids must be unique",
                path_, id, record_of(id));
  const AddResult result = index_.add(id, label);
  if (result.action == AddAction::skipped) return result;
  uint8_t* record = append_buffer_.get();
  std::memcpy(record, &id, sizeof id);  // host byte order
  std::memcpy(record + sizeof id, &label, sizeof label);
  if (payload_bytes_ > 0) std::memcpy(record + kIdLabelBytes, payload.data(), payload.size());
  try {
    if (before_write) before_write(result.slot);
    move_record(true, record, result.slot);
  } catch (const std::exception& e) {
    failed_write_ = e.what();  // the index has the sample, the file may not
    throw;
  }
  if (result.action == AddAction::replaced) record_of_.erase(result.evicted_id);
  record_of_[id] = result.slot;
  readable_ = records();
  return result;
}

std::vector<StoredSample> SampleStore::read(std::span<const int64_t> records,
                                            std::span<uint8_t> payloads) {
  TURBINE_CHECK(payloads.size() == records.size() * size_t(payload_bytes_),
                "storage file {}: {} records' payloads need {} bytes, the buffer has {}", path_,
                records.size(), records.size() * size_t(payload_bytes_), payloads.size());
  const int64_t readable = readable_;
  for (int64_t record : records)
    TURBINE_CHECK(record >= 0 && record < readable, "storage file {}: no record {} of {}", path_,
                  record, readable);
  const AlignedBuffer buffer = aligned_record();
  std::vector<StoredSample> samples(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    move_record(false, buffer.get(), records[i]);
    std::memcpy(&samples[i].id, buffer.get(), sizeof samples[i].id);
    std::memcpy(&samples[i].label, buffer.get() + sizeof samples[i].id, sizeof samples[i].label);
    if (payload_bytes_ > 0)
      std::memcpy(payloads.data() + i * size_t(payload_bytes_), buffer.get() + kIdLabelBytes,
                  size_t(payload_bytes_));
  }
  return samples;
}

int64_t SampleStore::record_of(int64_t id) const {
  const auto it = record_of_.find(id);
  return it == record_of_.end() ? -1 : it->second;
}

StoreSnapshot SampleStore::snapshot() const {
  return {st_size(), payload_bytes_, index_.snapshot()};
}

void SampleStore::restore(const StoreSnapshot& s) {
  TURBINE_CHECK(s.st_size == st_size(),
                "storage snapshot: taken with st_size {}, this store's is {} (resume with the "
                "checkpoint's st_size)",
                s.st_size, st_size());
  TURBINE_CHECK(s.payload_bytes == payload_bytes_,
                "storage snapshot: taken with payloads of {} bytes, this store's are {}",
                s.payload_bytes, payload_bytes_);
  ReservoirMemory index = index_;
  index.restore(s.index);  // checks the rest: the seed, the sizes
  const int64_t n = index.size();
  struct stat file {};
  TURBINE_CHECK(::fstat(fd_, &file) == 0, "storage file {}: {}", path_, std::strerror(errno));
  TURBINE_CHECK(int64_t(file.st_size) >= n * record_bytes_,
                "storage file {} has {} bytes, the checkpoint's {} records need {}: restore with "
                "the file saved with the checkpoint, opened with open_existing",
                path_, int64_t(file.st_size), n, n * record_bytes_);
  const AlignedBuffer buffer = aligned_record();
  const int64_t checks = std::min(n, kRestoreChecks);
  for (int64_t i = 0; i < checks; ++i) {
    const int64_t record = i * n / checks;
    move_record(false, buffer.get(), record);
    StoredSample held;
    std::memcpy(&held.id, buffer.get(), sizeof held.id);
    std::memcpy(&held.label, buffer.get() + sizeof held.id, sizeof held.label);
    const StoredSample expected{index.ids()[size_t(record)], index.labels()[size_t(record)]};
    TURBINE_CHECK(held == expected,
                  "storage file {}: record {} holds sample {} (label {}), the checkpoint says "
                  "sample {} (label {}): restore with the file saved with the checkpoint",
                  path_, record, held.id, held.label, expected.id, expected.label);
  }
  std::unordered_map<int64_t, int64_t> record_of;
  for (int64_t record = 0; record < n; ++record) record_of[index.ids()[size_t(record)]] = record;
  index_ = index;
  record_of_ = std::move(record_of);
  readable_ = n;
  failed_write_.clear();
}

SwapManager::SwapManager(ReplayMemory& memory, SampleStore& store, const SwapConfig& config)
    : memory_(memory), store_(store), config_(config), payload_bytes_(store.payload_bytes()) {
  TURBINE_CHECK(config.swap_period >= 1,
                "swap_period {}: a swap comes every swap_period iterations, at least 1",
                config.swap_period);
  TURBINE_CHECK(config.swap_ratio >= 0 && config.swap_ratio <= 1,
                "swap_ratio {}: the share of the memory that a swap replaces is in [0, 1]",
                config.swap_ratio);
  TURBINE_CHECK(memory.bytes_per_sample() - kIdLabelBytes == payload_bytes_,
                "swap manager: the memory's samples have {} bytes of payload, the store's {}: "
                "give both the same payload_bytes",
                memory.bytes_per_sample() - kIdLabelBytes, payload_bytes_);
  TURBINE_CHECK(memory.size() == 0,
                "swap manager: the memory holds {} samples whose payloads it has not seen: start "
                "over an empty memory, or restore() a snapshot",
                memory.size());
  slots_per_swap_ = std::llround(config.swap_ratio * double(memory.capacity()));
  payloads_.assign(size_t(memory.capacity() * payload_bytes_), 0);
  pending_swap_.payloads.reserve(size_t(slots_per_swap_ * payload_bytes_));
}

SwapManager::~SwapManager() {
  if (reader_.joinable()) reader_.join();
}

ObserveResult SwapManager::observe(int64_t id, int32_t label, std::span<const uint8_t> payload) {
  const std::vector<int64_t>& held = memory_.ids();
  TURBINE_CHECK(std::find(held.begin(), held.end(), id) == held.end(),
                "sample {} is in the replay memory already: the stream's sample ids must be "
                "unique",
                id);
  ObserveResult result;
  result.stored =
      store_.append(id, label, payload, [this](int64_t record) { before_write(record); });
  if (result.stored.action != AddAction::skipped) stats_.bytes_to_storage += store_.record_bytes();
  result.memory = memory_.add(id, label);
  if (result.memory.action != AddAction::skipped && payload_bytes_ > 0)
    std::memcpy(payloads_.data() + result.memory.slot * payload_bytes_, payload.data(),
                size_t(payload_bytes_));
  return result;
}

void SwapManager::before_write(int64_t record) {
  const std::vector<int64_t>& reading = pending_swap_.records;
  if (reader_.joinable() && std::find(reading.begin(), reading.end(), record) != reading.end())
    reader_.join();  // its error, if any, waits for apply()
}

bool SwapManager::request_swap(int64_t iteration) {
  TURBINE_CHECK(iteration > last_iteration_,
                "request_swap({}) after request_swap({}): iterations must increase", iteration,
                last_iteration_);
  last_iteration_ = iteration;
  if (iteration % config_.swap_period != 0) return false;
  apply();  // one swap at a time
  TURBINE_CHECK(swaps_drawn_ < (int64_t(1) << 32), "swap manager: 2^32 swaps drawn already");
  const auto draw = uint64_t(swaps_drawn_++);
  // Out: slots whose sample is on storage (so it is not lost); in: records
  // whose sample is not in RAM (so it is not held twice).
  const std::vector<int64_t>& held = memory_.ids();
  std::vector<int64_t> out, in;
  for (int64_t slot = 0; slot < memory_.size(); ++slot)
    if (store_.record_of(held[size_t(slot)]) >= 0) out.push_back(slot);
  const std::unordered_set<int64_t> in_ram(held.begin(), held.end());
  for (int64_t record = 0; record < store_.records(); ++record)
    if (!in_ram.contains(store_.ids()[size_t(record)])) in.push_back(record);
  const size_t n = std::min({size_t(slots_per_swap_), out.size(), in.size()});
  if (n == 0) return false;
  draw_prefix(out, n, config_.seed, kSwapOutStream, draw);
  draw_prefix(in, n, config_.seed, kSwapInStream, draw);
  PendingSwap& p = pending_swap_;
  p.slots = std::move(out);
  p.records = std::move(in);
  p.out_ids.clear();
  p.in_ids.clear();
  for (size_t i = 0; i < n; ++i) {
    p.out_ids.push_back(held[size_t(p.slots[i])]);
    p.in_ids.push_back(store_.ids()[size_t(p.records[i])]);
  }
  p.in.clear();
  p.payloads.resize(n * size_t(payload_bytes_));
  pending_ = true;
  start_read();
  return true;
}

void SwapManager::start_read() {
  read_done_ = false;
  read_error_ = nullptr;
  reader_ = std::thread([this] {
    try {
      pending_swap_.in = store_.read(pending_swap_.records, pending_swap_.payloads);
    } catch (...) {
      read_error_ = std::current_exception();
    }
    read_done_.store(true, std::memory_order_release);
  });
}

void SwapManager::join(bool discard) {
  if (reader_.joinable()) reader_.join();
  if (!read_error_) return;
  pending_ = false;  // a failed read has nothing to install
  const std::exception_ptr error = std::exchange(read_error_, nullptr);
  if (!discard) std::rethrow_exception(error);
}

void SwapManager::wait() {
  join(false);
}

bool SwapManager::apply() {
  if (!pending_) return false;
  join(false);
  install();
  return true;
}

bool SwapManager::poll() {
  if (!pending_ || !read_done_.load(std::memory_order_acquire)) return false;
  return apply();
}

void SwapManager::install() {
  PendingSwap& p = pending_swap_;
  for (size_t i = 0; i < p.records.size(); ++i)
    TURBINE_CHECK(p.in[i].id == p.in_ids[i],
                  "storage file {}: record {} holds sample {}, the store's index says {}: the "
                  "file was changed behind the store's back",
                  store_.path(), p.records[i], p.in[i].id, p.in_ids[i]);
  // The memory's public restore() is the way to set a slot from outside.
  MemorySnapshot state = memory_.snapshot();
  std::unordered_set<int64_t> in_ram(state.ids.begin(), state.ids.end());
  for (size_t i = 0; i < p.records.size(); ++i) {
    const auto slot = size_t(p.slots[i]);
    const int64_t out_id = p.out_ids[i];
    const StoredSample& in = p.in[i];
    if (state.ids[slot] != out_id || store_.record_of(out_id) < 0 || in_ram.contains(in.id)) {
      ++stats_.skipped;
      continue;
    }
    in_ram.erase(out_id);
    in_ram.insert(in.id);
    state.ids[slot] = in.id;
    state.labels[slot] = in.label;
    if (payload_bytes_ > 0)
      std::memcpy(payloads_.data() + slot * size_t(payload_bytes_),
                  p.payloads.data() + i * size_t(payload_bytes_), size_t(payload_bytes_));
    ++stats_.swapped_in;
  }
  memory_.restore(state);
  ++stats_.swaps;
  stats_.bytes_to_ram += int64_t(p.records.size()) * store_.record_bytes();
  pending_ = false;
}

std::span<const uint8_t> SwapManager::payload(int64_t slot) const {
  TURBINE_CHECK(slot >= 0 && slot < memory_.size(),
                "swap manager: no payload for slot {}: the memory holds {} samples", slot,
                memory_.size());
  return {payloads_.data() + slot * payload_bytes_, size_t(payload_bytes_)};
}

int64_t SwapManager::ram_bytes() const {
  return memory_.capacity_bytes();
}

int64_t SwapManager::swap_buffer_bytes() const {
  return slots_per_swap_ * (payload_bytes_ + kIdLabelBytes);
}

SwapSnapshot SwapManager::snapshot() {
  join(false);
  SwapSnapshot s;
  s.swap_period = config_.swap_period;
  s.swap_ratio = config_.swap_ratio;
  s.seed = config_.seed;
  s.last_iteration = last_iteration_;
  s.swaps_drawn = swaps_drawn_;
  s.stats = stats_;
  s.memory = memory_.snapshot();
  s.payloads.assign(payloads_.begin(), payloads_.begin() + memory_.size() * payload_bytes_);
  s.pending = pending_;
  if (pending_) s.swap = pending_swap_;
  return s;
}

void SwapManager::restore(const SwapSnapshot& s) {
  join(true);
  TURBINE_CHECK(s.swap_period == config_.swap_period && s.swap_ratio == config_.swap_ratio,
                "swap snapshot: taken with swap_period {} and swap_ratio {}, this manager's are {} "
                "and {} (resume with the checkpoint's)",
                s.swap_period, s.swap_ratio, config_.swap_period, config_.swap_ratio);
  TURBINE_CHECK(s.seed == config_.seed,
                "swap snapshot: taken with seed {}, this manager's is {} (resume with the "
                "checkpoint's seed)",
                s.seed, config_.seed);
  TURBINE_CHECK(s.last_iteration >= -1 && s.swaps_drawn >= 0,
                "swap snapshot: iteration {} after {} swaps (a corrupt checkpoint?)",
                s.last_iteration, s.swaps_drawn);
  TURBINE_CHECK(s.payloads.size() == s.memory.ids.size() * size_t(payload_bytes_),
                "swap snapshot: {} bytes of payload for {} samples of {} bytes (a corrupt "
                "checkpoint?)",
                s.payloads.size(), s.memory.ids.size(), payload_bytes_);
  if (s.pending) {
    const PendingSwap& p = s.swap;
    const size_t n = p.slots.size();
    const bool fits = n <= size_t(slots_per_swap_) && p.out_ids.size() == n &&
                      p.records.size() == n && p.in_ids.size() == n && p.in.size() == n &&
                      p.payloads.size() == n * size_t(payload_bytes_) &&
                      std::all_of(p.slots.begin(), p.slots.end(), [&](int64_t slot) {
                        return slot >= 0 && slot < memory_.capacity();
                      });
    TURBINE_CHECK(fits,
                  "swap snapshot: a pending swap of {} slots that does not fit this manager's {} "
                  "slots a swap (a corrupt checkpoint?)",
                  n, slots_per_swap_);
  }
  memory_.restore(s.memory);  // checks the memory's part, changing nothing when it throws
  last_iteration_ = s.last_iteration;
  swaps_drawn_ = s.swaps_drawn;
  stats_ = s.stats;
  std::copy(s.payloads.begin(), s.payloads.end(), payloads_.begin());
  pending_ = s.pending;
  pending_swap_ = s.pending ? s.swap : PendingSwap{};
  read_done_ = true;
}

}  // namespace turbine::cl
