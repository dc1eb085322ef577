// cl-edge's storage tier (lib/cl/storage.hpp): records keep ids, labels and
// payloads byte for byte in one file of 512-byte-aligned records, through
// O_DIRECT where the file system takes it and buffered I/O where it is
// refused (a device here; tmpfs before Linux 6.6); the store's reservoir holds at most st_size and
// every sample seen with probability st_size/n (within 5 binomial standard deviations over 1000
// seeds); over a long stream with swaps the RAM tier never holds a sample twice or one not seen,
// its payloads are its samples', and a sample that a swap takes out of RAM is on storage, intact;
// the byte accounting is exact; a checkpoint (the swap state with the memory, the store's index, a
// copy of its file) continues exactly as the uninterrupted run; bad input, a full disk and a short
// file are refused naming the file.
#define BOOST_TEST_MODULE cl_storage
#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "cl/storage.hpp"
#include "core/rng.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kImageBytes = 784;  // a 28x28 uint8 image: records of 1024 bytes
constexpr long kTmpfsMagic = 0x01021994;

// The payload of sample `id`: Philox bytes, a different pattern for every id.
std::vector<uint8_t> payload_of(int64_t id, int64_t bytes = kImageBytes) {
  std::vector<uint8_t> payload(static_cast<size_t>(bytes));
  for (size_t i = 0; i < payload.size(); ++i)
    payload[i] = uint8_t(philox4x32(uint64_t(id), 0xda7a, i / 4)[i % 4]);
  return payload;
}

int32_t label_of(int64_t id) {
  return int32_t(id % 10);
}

cl::StoreConfig store_config(const fs::path& dir, int64_t st_size, uint64_t seed,
                             int64_t payload_bytes = kImageBytes) {
  cl::StoreConfig c;
  c.storage_dir = dir.string();
  c.st_size = st_size;
  c.payload_bytes = payload_bytes;
  c.seed = seed;
  return c;
}

cl::MemoryConfig memory_config(int64_t capacity, uint64_t seed,
                               int64_t payload_bytes = kImageBytes) {
  cl::MemoryConfig c;
  c.capacity = capacity;
  c.seed = seed;
  c.payload_bytes = payload_bytes;
  return c;
}

cl::SwapConfig swap_config(int64_t period, double ratio, uint64_t seed) {
  cl::SwapConfig c;
  c.swap_period = period;
  c.swap_ratio = ratio;
  c.seed = seed;
  return c;
}

// Whether the file system at `path` opens a file with O_DIRECT (the file is
// created and removed when it is not there).
bool accepts_o_direct(const fs::path& path) {
  const bool existed = fs::exists(path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644);
  if (fd >= 0) ::close(fd);
  if (!existed) fs::remove(path);
  return fd >= 0;
}

bool same_bytes(std::span<const uint8_t> a, const std::vector<uint8_t>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// Whether `count` successes of `trials` are within 5 binomial standard
// deviations of probability p: a bound any seed meets.
bool within_5_sigma(int64_t count, int64_t trials, double p) {
  const double mean = double(trials) * p, sigma = std::sqrt(double(trials) * p * (1 - p));
  return std::abs(double(count) - mean) <= 5 * sigma;
}

// The three tiers of a run: a memory of 50, a store of st_size in `dir`,
// swaps every 10 iterations of 30% of the memory.
struct Tiers {
  cl::ReservoirMemory memory;
  cl::SampleStore store;
  cl::SwapManager swap;
  Tiers(const fs::path& dir, int64_t st_size, bool open_existing = false)
      : memory(memory_config(50, 7)),
        store([&] {
          cl::StoreConfig c = store_config(dir, st_size, 11);
          c.open_existing = open_existing;
          return c;
        }()),
        swap(memory, store, swap_config(10, 0.3, 13)) {}

  // Reads the samples `ids` back from storage and checks them whole.
  void check_on_storage(const std::vector<int64_t>& ids) {
    std::vector<int64_t> records;
    for (int64_t id : ids) {
      records.push_back(store.record_of(id));
      BOOST_TEST_REQUIRE(records.back() >= 0, "sample " << id << " is not on storage");
    }
    std::vector<uint8_t> payloads(ids.size() * kImageBytes);
    const std::vector<cl::StoredSample> read = store.read(records, payloads);
    for (size_t i = 0; i < ids.size(); ++i) {
      BOOST_TEST_REQUIRE((read[i] == cl::StoredSample{ids[i], label_of(ids[i])}));
      const std::span<const uint8_t> payload(payloads.data() + i * kImageBytes, kImageBytes);
      BOOST_TEST_REQUIRE(same_bytes(payload, payload_of(ids[i])), "sample " << ids[i]);
    }
  }

  // The RAM tier's invariants: no sample twice, none not seen (ids below
  // `seen_below`), each with its label and its payload byte for byte.
  void check_ram(int64_t seen_below) const {
    const std::vector<int64_t>& ids = memory.ids();
    BOOST_TEST_REQUIRE(std::set<int64_t>(ids.begin(), ids.end()).size() == ids.size());
    for (int64_t slot = 0; slot < memory.size(); ++slot) {
      const int64_t id = ids[size_t(slot)];
      BOOST_TEST_REQUIRE((id >= 0 && id < seen_below), "slot " << slot << " holds " << id);
      BOOST_TEST_REQUIRE(memory.labels()[size_t(slot)] == label_of(id));
      BOOST_TEST_REQUIRE(same_bytes(swap.payload(slot), payload_of(id)), "slot " << slot);
    }
  }
};

std::set<int64_t> held(const cl::ReplayMemory& memory) {
  return {memory.ids().begin(), memory.ids().end()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(records_round_trip_ids_labels_and_payloads) {
  TempDir dir("cl_storage_round_trip");
  cl::SampleStore store(store_config(dir.path, 10, 1));
  BOOST_TEST(store.record_bytes() == 1024);  // 12 + 784, up to a multiple of 512
  BOOST_TEST(store.path() == dir.file("samples.bin"));
  for (int64_t id = 100; id < 107; ++id) {
    const cl::AddResult r = store.append(id, label_of(id), payload_of(id));
    BOOST_TEST((r.action == cl::AddAction::stored && r.slot == id - 100));
  }
  BOOST_TEST(store.records() == 7);
  BOOST_TEST(store.record_of(103) == 3);
  BOOST_TEST(store.record_of(99) == -1);
  const std::vector<int64_t> records = {6, 0, 3, 6};
  std::vector<uint8_t> payloads(records.size() * kImageBytes);
  const std::vector<cl::StoredSample> read = store.read(records, payloads);
  for (size_t i = 0; i < records.size(); ++i) {
    const int64_t id = 100 + records[i];
    BOOST_TEST((read[i] == cl::StoredSample{id, label_of(id)}));
    BOOST_TEST(same_bytes({payloads.data() + i * kImageBytes, kImageBytes}, payload_of(id)));
  }
  // The file: record i at byte 1024 i, its id, label and payload, zero padding.
  std::ifstream in(store.path(), std::ios::binary);
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  BOOST_TEST(file.size() == 7u * 1024);
  int64_t id = 0;
  int32_t label = 0;
  std::memcpy(&id, file.data() + 5 * 1024, sizeof id);
  std::memcpy(&label, file.data() + 5 * 1024 + 8, sizeof label);
  BOOST_TEST((id == 105 && label == label_of(105)));
  const std::vector<uint8_t> payload(file.begin() + 5 * 1024 + 12, file.begin() + 5 * 1024 + 796);
  BOOST_TEST(payload == payload_of(105));
  BOOST_TEST(std::all_of(file.begin() + 5 * 1024 + 796, file.begin() + 6 * 1024,
                         [](char c) { return c == 0; }));
  // Buffered I/O when asked, with the same file.
  cl::StoreConfig buffered = store_config(dir.path / "buffered", 4, 1, 3);
  buffered.direct_io = false;
  fs::create_directory(buffered.storage_dir);
  cl::SampleStore small(buffered);
  BOOST_TEST(!small.direct_io());
  BOOST_TEST(small.record_bytes() == 512);
  small.append(1, 2, payload_of(1, 3));
  std::vector<uint8_t> three(3);
  BOOST_TEST((small.read(std::vector<int64_t>{0}, three)[0] == cl::StoredSample{1, 2}));
  BOOST_TEST(three == payload_of(1, 3));
  BOOST_TEST(fs::file_size(small.path()) == 512u);
}

BOOST_AUTO_TEST_CASE(the_store_uses_o_direct_where_the_file_system_takes_it) {
  // tmpfs refused O_DIRECT (EINVAL) before Linux 6.6 and takes it since; a
  // character device refuses it: /dev/full stands in for such a file system.
  TempDir tmp("cl_storage_direct");
  std::vector<fs::path> dirs = {tmp.path};
  const fs::path shm =
      fs::path("/dev/shm") / ("turbine_test_cl_storage_" + std::to_string(::getpid()));
  struct statfs stat {};
  if (::statfs("/dev/shm", &stat) == 0 && long(stat.f_type) == kTmpfsMagic &&
      ::access("/dev/shm", W_OK) == 0) {
    fs::create_directories(shm);
    dirs.push_back(shm);
  }
  for (const fs::path& dir : dirs) {
    // Appends through the page cache (the default) or with O_DIRECT too:
    // reads with O_DIRECT see the same records either way.
    for (const bool direct_writes : {false, true}) {
      cl::StoreConfig config = store_config(dir, 4, 1);
      config.direct_writes = direct_writes;
      cl::SampleStore store(config);
      BOOST_TEST(store.direct_io() == accepts_o_direct(dir / "probe"));
      BOOST_TEST(store.direct_writes() == (direct_writes && store.direct_io()));
      BOOST_TEST_MESSAGE("O_DIRECT on " << dir.string() << ": " << store.direct_io());
      for (int64_t id = 0; id < 3; ++id) store.append(id, label_of(id), payload_of(id));
      std::vector<uint8_t> payload(kImageBytes);
      BOOST_TEST((store.read(std::vector<int64_t>{2}, payload)[0] == cl::StoredSample{2, 2}));
      BOOST_TEST(payload == payload_of(2));
      store.append(1000, label_of(1000), payload_of(1000));  // written, then read back
      const int64_t record = store.record_of(1000);
      if (record >= 0) {
        BOOST_TEST((store.read(std::vector<int64_t>{record}, payload)[0] ==
                    cl::StoredSample{1000, label_of(1000)}));
        BOOST_TEST(payload == payload_of(1000));
      }
      BOOST_TEST(store.bytes_written() == 4 * 1024);
      BOOST_TEST(store.bytes_read() == (record >= 0 ? 2 : 1) * 1024);
    }
    if (dir == shm) fs::remove_all(shm);
  }
  if (!fs::exists("/dev/full")) return;
  fs::create_directory(tmp.path / "device");
  fs::create_symlink("/dev/full", tmp.path / "device" / "samples.bin");
  BOOST_TEST(!accepts_o_direct("/dev/full"));
  BOOST_TEST(!cl::SampleStore(store_config(tmp.path / "device", 4, 1)).direct_io());
}

BOOST_AUTO_TEST_CASE(the_store_keeps_every_sample_with_probability_st_size_over_n) {
  // 1000 stores of st_size 10 over a stream of 100 (buffered, for speed):
  // each sample ends on storage in Binomial(1000, 0.1) of them (mean 100,
  // standard deviation 9.5), and the file always agrees with the index.
  constexpr int64_t kRuns = 1000, kStream = 100, kStSize = 10;
  TempDir dir("cl_storage_reservoir");
  std::vector<int64_t> kept(kStream, 0);
  std::vector<uint8_t> payloads(kStSize * 4);
  std::vector<int64_t> all(kStSize);
  std::iota(all.begin(), all.end(), int64_t(0));
  for (int64_t run = 0; run < kRuns; ++run) {
    cl::StoreConfig c = store_config(dir.path, kStSize, 1 + uint64_t(run), 4);
    c.direct_io = false;
    cl::SampleStore store(c);
    for (int64_t id = 0; id < kStream; ++id) {
      store.append(id, label_of(id), payload_of(id, 4));
      BOOST_TEST_REQUIRE(store.records() == std::min(id + 1, kStSize));
    }
    const std::vector<cl::StoredSample> read = store.read(all, payloads);
    for (int64_t record = 0; record < kStSize; ++record) {
      const int64_t id = store.ids()[size_t(record)];
      BOOST_TEST_REQUIRE((read[size_t(record)] == cl::StoredSample{id, label_of(id)}));
      BOOST_TEST_REQUIRE(store.record_of(id) == record);
      ++kept[size_t(id)];
    }
    BOOST_TEST_REQUIRE(fs::file_size(store.path()) == uint64_t(kStSize) * 512);
  }
  for (int64_t id = 0; id < kStream; ++id)
    BOOST_TEST(within_5_sigma(kept[size_t(id)], kRuns, double(kStSize) / kStream),
               "sample " << id << " kept in " << kept[size_t(id)] << " of " << kRuns << " runs");
}

BOOST_AUTO_TEST_CASE(swaps_never_lose_or_duplicate_a_sample) {
  // 2000 samples, one an iteration; the read stays in flight for 5
  // iterations (apply() at i % 10 == 5, poll() otherwise). With st_size
  // 4096 storage keeps everything; with 500 its reservoir drops samples, but
  // a swap still takes out of RAM only samples on storage.
  for (int64_t st_size : {4096, 500}) {
    BOOST_TEST_CONTEXT("st_size " << st_size) {
      TempDir dir("cl_storage_swaps_" + std::to_string(st_size));
      Tiers t(dir.path, st_size);
      BOOST_TEST(t.swap.slots_per_swap() == 15);
      int64_t swaps_started = 0, writes = 0, checked_reads = 0;
      std::set<int64_t> left_by_swap;
      for (int64_t i = 0; i < 2000; ++i) {
        // The samples that left RAM in request_swap() and apply() or poll().
        std::vector<int64_t> left;
        const std::set<int64_t> before_request = held(t.memory);
        swaps_started += t.swap.request_swap(i);
        std::ranges::set_difference(before_request, held(t.memory), std::back_inserter(left));
        const cl::ObserveResult r = t.swap.observe(i, label_of(i), payload_of(i));
        writes += r.stored.action != cl::AddAction::skipped;
        const std::set<int64_t> before_install = held(t.memory);
        if (i % 10 == 5)
          t.swap.apply();
        else
          t.swap.poll();
        std::ranges::set_difference(before_install, held(t.memory), std::back_inserter(left));
        // What a swap took out of RAM is on storage now, whole.
        t.check_on_storage(left);
        checked_reads += int64_t(left.size());
        left_by_swap.insert(left.begin(), left.end());
        t.check_ram(i + 1);
      }
      t.swap.apply();
      t.check_ram(2000);
      const cl::SwapStats& s = t.swap.stats();
      BOOST_TEST(s.swaps == swaps_started);
      BOOST_TEST(swaps_started > 150);
      BOOST_TEST(s.swapped_in > 15 * 150 * 8 / 10);
      BOOST_TEST(int64_t(left_by_swap.size()) > 500);
      // Exact bytes: every record a swap read was installed or skipped.
      BOOST_TEST(s.bytes_to_ram == (s.swapped_in + s.skipped) * 1024);
      BOOST_TEST(t.store.bytes_read() == s.bytes_to_ram + checked_reads * 1024);
      BOOST_TEST(s.bytes_to_storage == writes * 1024);
      BOOST_TEST(t.store.bytes_written() == writes * 1024);
      BOOST_TEST(t.store.records() == std::min<int64_t>(2000, st_size));
      BOOST_TEST(t.store.storage_bytes() == t.store.records() * 1024);
      BOOST_TEST(t.store.seen() == 2000);
      if (st_size >= 2000) {
        BOOST_TEST(writes == 2000);
        std::vector<int64_t> every(2000);
        std::iota(every.begin(), every.end(), int64_t(0));
        t.check_on_storage(every);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(byte_accounting_is_exact) {
  TempDir dir("cl_storage_bytes");
  cl::ReservoirMemory memory(memory_config(10, 3));
  cl::SampleStore store(store_config(dir.path, 20, 4));
  cl::SwapManager swap(memory, store, swap_config(5, 0.3, 5));
  BOOST_TEST(swap.ram_bytes() == 10 * 796);
  BOOST_TEST(swap.slots_per_swap() == 3);
  BOOST_TEST(swap.swap_buffer_bytes() == 3 * 796);
  BOOST_TEST((store.storage_bytes() == 0 && store.bytes_written() == 0));
  for (int64_t id = 0; id < 15; ++id) swap.observe(id, label_of(id), payload_of(id));
  BOOST_TEST(store.storage_bytes() == 15 * 1024);
  BOOST_TEST(store.bytes_written() == 15 * 1024);
  BOOST_TEST(swap.stats().bytes_to_storage == 15 * 1024);
  BOOST_TEST(store.bytes_read() == 0);
  // Storage holds 5 samples that RAM does not: a swap of 3 reads 3 records.
  BOOST_TEST(!swap.request_swap(4));
  BOOST_TEST(swap.request_swap(5));
  BOOST_TEST(swap.apply());
  BOOST_TEST(!swap.apply());
  BOOST_TEST(store.bytes_read() == 3 * 1024);
  BOOST_TEST((swap.stats() == cl::SwapStats{1, 3, 0, 3 * 1024, 15 * 1024}));
  std::vector<uint8_t> payloads(2 * kImageBytes);
  store.read(std::vector<int64_t>{0, 14}, payloads);
  BOOST_TEST(store.bytes_read() == 5 * 1024);
  // Past st_size, records are replaced: storage stays at 20 records.
  for (int64_t id = 15; id < 60; ++id) swap.observe(id, label_of(id), payload_of(id));
  BOOST_TEST(store.storage_bytes() == 20 * 1024);
  BOOST_TEST(store.bytes_written() == swap.stats().bytes_to_storage);
  BOOST_TEST(fs::file_size(store.path()) == 20u * 1024);
  BOOST_TEST(swap.ram_bytes() == memory.capacity_bytes());
}

BOOST_AUTO_TEST_CASE(a_restored_checkpoint_continues_as_the_uninterrupted_run) {
  // Three runs of 2000 iterations with st_size 1000 (the store's reservoir
  // at work after 1000): a uninterrupted, b checkpointed at iteration 1203
  // with a swap in flight (requested at 1200, applied at 1205), and c
  // restored from b's checkpoint and a copy of b's file.
  constexpr int64_t kCheckpoint = 1203, kStream = 2000, kStSize = 1000;
  TempDir dir("cl_storage_resume");
  for (const char* name : {"a", "b", "c"}) fs::create_directory(dir.path / name);
  Tiers a(dir.path / "a", kStSize), b(dir.path / "b", kStSize);
  auto step = [](Tiers& t, int64_t i) {
    t.swap.request_swap(i);
    t.swap.observe(i, label_of(i), payload_of(i));
    if (i % 10 == 5) t.swap.apply();
  };
  for (int64_t i = 0; i <= kCheckpoint; ++i) {
    step(a, i);
    step(b, i);
  }
  const cl::SwapSnapshot swap_state = b.swap.snapshot();
  const cl::StoreSnapshot store_state = b.store.snapshot();
  BOOST_TEST(swap_state.pending);
  BOOST_TEST(swap_state.swap.slots.size() == 15u);
  BOOST_TEST(swap_state.last_iteration == kCheckpoint);
  BOOST_TEST(store_state.index.ids.size() == size_t(kStSize));
  fs::copy_file(b.store.path(), dir.path / "c" / "samples.bin");
  const int64_t read_before = b.store.bytes_read();

  Tiers c(dir.path / "c", kStSize, /*open_existing=*/true);
  c.store.restore(store_state);
  c.swap.restore(swap_state);
  BOOST_TEST((c.store.snapshot() == store_state));
  BOOST_TEST((c.swap.snapshot() == swap_state));
  c.check_ram(kCheckpoint + 1);
  BOOST_TEST(c.store.bytes_read() == 64 * 1024);  // restore() read back 64 records' ids
  for (int64_t i = kCheckpoint + 1; i < kStream; ++i) {
    step(a, i);
    step(b, i);
    step(c, i);
    BOOST_TEST_REQUIRE((c.memory.snapshot() == a.memory.snapshot()), "iteration " << i);
    BOOST_TEST_REQUIRE((b.memory.snapshot() == a.memory.snapshot()), "iteration " << i);
  }
  const cl::SwapSnapshot end = a.swap.snapshot();
  BOOST_TEST((b.swap.snapshot() == end));
  BOOST_TEST((c.swap.snapshot() == end));
  BOOST_TEST((c.store.snapshot() == a.store.snapshot()));
  BOOST_TEST((c.swap.stats() == a.swap.stats()));
  BOOST_TEST(c.swap.stats().swaps > 100);
  BOOST_TEST(c.store.bytes_read() == a.store.bytes_read() - read_before + 64 * 1024);
  c.check_ram(kStream);
  // The files agree record for record.
  std::ifstream fa(a.store.path(), std::ios::binary), fc(c.store.path(), std::ios::binary);
  const std::vector<char> file_a((std::istreambuf_iterator<char>(fa)),
                                 std::istreambuf_iterator<char>());
  const std::vector<char> file_c((std::istreambuf_iterator<char>(fc)),
                                 std::istreambuf_iterator<char>());
  BOOST_TEST(file_a.size() == size_t(kStSize) * 1024);
  BOOST_TEST((file_a == file_c));
}

BOOST_AUTO_TEST_CASE(checkpoints_that_do_not_fit_are_refused) {
  TempDir dir("cl_storage_bad_checkpoint");
  fs::create_directory(dir.path / "b");
  Tiers a(dir.path, 100);
  for (int64_t i = 0; i < 120; ++i) {
    a.swap.request_swap(i);
    a.swap.observe(i, label_of(i), payload_of(i));
  }
  const cl::StoreSnapshot store_state = a.store.snapshot();
  const cl::SwapSnapshot swap_state = a.swap.snapshot();
  // The store's file must be the checkpoint's.
  Tiers empty(dir.path / "b", 100, /*open_existing=*/true);
  BOOST_TEST(contains(error_of([&] { empty.store.restore(store_state); }),
                      "has 0 bytes, the checkpoint's 100 records need 102400: restore with the "
                      "file saved with the checkpoint"));
  fs::copy_file(a.store.path(), dir.path / "b" / "samples.bin",
                fs::copy_options::overwrite_existing);
  {
    std::fstream f(dir.file("b/samples.bin"), std::ios::in | std::ios::out | std::ios::binary);
    const int64_t other = 99999;
    f.write(reinterpret_cast<const char*>(&other), sizeof other);  // record 0's id
  }
  const std::string e = error_of([&] { empty.store.restore(store_state); });
  BOOST_TEST(contains(e, "record 0 holds sample 99999"));
  BOOST_TEST(contains(e, dir.file("b/samples.bin")));
  BOOST_TEST(empty.store.records() == 0);
  cl::StoreSnapshot other_size = store_state;
  other_size.st_size = 50;
  BOOST_TEST(contains(error_of([&] { empty.store.restore(other_size); }),
                      "taken with st_size 50, this store's is 100"));
  // The swap state must be this manager's.
  cl::ReservoirMemory memory(memory_config(50, 7));
  cl::SwapManager other_seed(memory, empty.store, swap_config(10, 0.3, 14));
  BOOST_TEST(contains(error_of([&] { other_seed.restore(swap_state); }),
                      "taken with seed 13, this manager's is 14"));
  cl::SwapSnapshot s = swap_state;
  s.payloads.pop_back();
  BOOST_TEST(contains(error_of([&] { empty.swap.restore(s); }), "a corrupt checkpoint?"));
  s = swap_state;
  s.pending = true;
  s.swap.slots.assign(16, 0);
  BOOST_TEST(contains(error_of([&] { empty.swap.restore(s); }),
                      "a pending swap of 16 slots that does not fit this manager's 15"));
  s = swap_state;
  s.memory.seed = 8;
  BOOST_TEST(contains(error_of([&] { empty.swap.restore(s); }), "taken with seed 8"));
  BOOST_TEST(empty.memory.size() == 0);
}

BOOST_AUTO_TEST_CASE(bad_configurations_are_refused) {
  TempDir dir("cl_storage_bad_input");
  cl::ReservoirMemory memory(memory_config(10, 1));
  cl::SampleStore store(store_config(dir.path, 20, 1));
  for (double ratio : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    const std::string e =
        error_of([&] { cl::SwapManager m(memory, store, swap_config(10, ratio, 1)); });
    BOOST_TEST(contains(e, "swap_ratio"));
    BOOST_TEST(contains(e, "is in [0, 1]"));
  }
  BOOST_TEST(contains(error_of([&] { cl::SwapManager m(memory, store, swap_config(0, 0.3, 1)); }),
                      "swap_period 0: a swap comes every swap_period iterations, at least 1"));
  cl::SwapManager fine(memory, store, swap_config(10, 0, 1));  // ratio 0: never swaps
  BOOST_TEST(fine.slots_per_swap() == 0);
  // storage_dir: under a file, a file, missing, unset.
  std::ofstream(dir.file("plain")) << "not a folder";
  BOOST_TEST(
      contains(error_of([&] { cl::SampleStore s(store_config(dir.path / "plain/sub", 4, 1)); }),
               "storage_dir " + dir.file("plain/sub") + " cannot be created: " + dir.file("plain") +
                   " is a file, not a folder"));
  BOOST_TEST(contains(error_of([&] { cl::SampleStore s(store_config(dir.path / "plain", 4, 1)); }),
                      "storage_dir " + dir.file("plain") + " is not a folder"));
  BOOST_TEST(
      contains(error_of([&] { cl::SampleStore s(store_config(dir.path / "missing", 4, 1)); }),
               "storage_dir " + dir.file("missing") + " does not exist"));
  BOOST_TEST(contains(error_of([&] { cl::SampleStore s(store_config("", 4, 1)); }),
                      "storage_dir is not set"));
  BOOST_TEST(contains(error_of([&] { cl::SampleStore s(store_config(dir.path, 0, 1)); }),
                      "st_size 0: the storage tier holds from 1 to 2^32 - 1 samples"));
  BOOST_TEST(contains(error_of([&] { cl::SampleStore s(store_config(dir.path, 4, 1, -1)); }),
                      "payload of -1 bytes"));
  // The memory and the store must agree, and the memory start empty.
  cl::ReservoirMemory small(memory_config(10, 1, 100));
  BOOST_TEST(contains(error_of([&] { cl::SwapManager m(small, store, swap_config(1, 0.5, 1)); }),
                      "the memory's samples have 100 bytes of payload, the store's 784"));
  cl::ReservoirMemory used(memory_config(10, 1));
  used.add(1, 1);
  BOOST_TEST(contains(error_of([&] { cl::SwapManager m(used, store, swap_config(1, 0.5, 1)); }),
                      "the memory holds 1 samples whose payloads it has not seen"));
}

BOOST_AUTO_TEST_CASE(bad_calls_are_refused) {
  TempDir dir("cl_storage_bad_calls");
  cl::ReservoirMemory memory(memory_config(10, 1));
  cl::SampleStore store(store_config(dir.path, 3, 1));
  cl::SwapManager swap(memory, store, swap_config(2, 0.5, 1));
  swap.observe(1, 1, payload_of(1));
  BOOST_TEST(contains(error_of([&] { swap.observe(2, 2, payload_of(2, 10)); }),
                      "sample 2 has 10 bytes of payload, the store's samples 784"));
  BOOST_TEST(contains(error_of([&] { swap.observe(1, 1, payload_of(1)); }),
                      "sample 1 is in the replay memory already: the stream's sample ids must be "
                      "unique"));
  BOOST_TEST(contains(error_of([&] { store.append(1, 1, payload_of(1)); }),
                      "sample 1 is stored already (record 0)"));
  std::vector<uint8_t> payload(kImageBytes);
  BOOST_TEST(contains(error_of([&] { store.read(std::vector<int64_t>{1}, payload); }),
                      "no record 1 of 1"));
  BOOST_TEST(contains(error_of([&] {
                        store.read(std::vector<int64_t>{0, 0}, payload);
                      }),
                      "2 records' payloads need 1568 bytes, the buffer has 784"));
  BOOST_TEST(contains(error_of([&] { swap.payload(1); }), "no payload for slot 1"));
  swap.request_swap(4);
  BOOST_TEST(contains(error_of([&] { swap.request_swap(4); }),
                      "request_swap(4) after request_swap(4): iterations must increase"));
}

BOOST_AUTO_TEST_CASE(a_full_disk_and_a_short_file_are_reported_naming_the_file) {
  TempDir dir("cl_storage_errors");
  // A store whose file is /dev/full: every write fails with ENOSPC.
  if (fs::exists("/dev/full")) {
    fs::create_directory(dir.path / "full");
    fs::create_symlink("/dev/full", dir.path / "full" / "samples.bin");
    cl::SampleStore store(store_config(dir.path / "full", 4, 1));
    BOOST_TEST(!store.direct_io());  // a device refuses O_DIRECT: buffered I/O
    const std::string e = error_of([&] { store.append(7, 7, payload_of(7)); });
    BOOST_TEST(contains(e, "storage file " + dir.file("full/samples.bin") +
                               ": the disk is full: record 0 needed 1024 bytes at byte 0, 0 were "
                               "written (the store needs st_size 4 x 1024 bytes = 4096 bytes)"));
    BOOST_TEST(contains(e, "free space on the storage device or lower st_size"));
    BOOST_TEST(contains(error_of([&] { store.append(8, 8, payload_of(8)); }),
                        "(the store stopped at this error: restore() a checkpoint to go on)"));
    BOOST_TEST(store.bytes_written() == 0);
  } else {
    BOOST_TEST_MESSAGE("no /dev/full: the full disk is not exercised");
  }
  // A file cut short behind the store's back.
  cl::SampleStore store(store_config(dir.path, 4, 1));
  for (int64_t id = 0; id < 3; ++id) store.append(id, label_of(id), payload_of(id));
  fs::resize_file(store.path(), 2 * 1024);
  std::vector<uint8_t> payload(kImageBytes);
  const std::string e = error_of([&] { store.read(std::vector<int64_t>{2}, payload); });
  BOOST_TEST(contains(e, "storage file " + store.path() +
                             ": record 2 (bytes 2048 to 3072) ends early, at byte 2048"));
  BOOST_TEST(contains(e, "was it truncated or replaced?"));
  BOOST_TEST(store.bytes_read() == 0);
}
