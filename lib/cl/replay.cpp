// The replay tiers of replay.hpp.
#include "cl/replay.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::cl {

namespace fs = std::filesystem;

namespace {

// The RAM tier's planned bytes (the memory and a swap's read buffer) within the budget.
void check_tier_budget(const TierConfig& c) {
  const int64_t swap_slots =
      c.st_size > 0 ? int64_t(std::llround(c.swap_ratio * double(c.rb_size))) : 0;
  const int64_t sample_bytes = c.payload_bytes + kIdLabelBytes;
  check_memory_budget(c.rb_size, sample_bytes, c.budget_mb);
  TURBINE_CHECK(c.budget_mb <= 0 ||
                    double((c.rb_size + swap_slots) * sample_bytes) <= c.budget_mb * 1048576.0,
                "rb_size {} samples and a swap buffer of {} (swap_ratio {}) x {} bytes = {:.2f} "
                "MB are over the memory budget of {} MB: lower memory.swap_ratio or rb_size",
                c.rb_size, swap_slots, c.swap_ratio, sample_bytes,
                double((c.rb_size + swap_slots) * sample_bytes) / 1048576.0, c.budget_mb);
}

std::unique_ptr<ReplayMemory> make_memory(const TierConfig& c) {
  MemoryConfig m;
  m.capacity = c.rb_size;
  m.seed = c.seed;
  m.payload_bytes = c.payload_bytes;
  if (c.policy == "reservoir") return std::make_unique<ReservoirMemory>(m);
  return std::make_unique<ClassBalancedMemory>(m);
}

StoreConfig store_config(const TierConfig& c, const std::string& dir, bool open_existing) {
  StoreConfig s;
  s.storage_dir = dir;
  s.open_existing = open_existing;
  s.st_size = c.st_size;
  s.payload_bytes = c.payload_bytes;
  s.seed = c.seed ^ 0x5707e;
  s.direct_io = c.direct_io;
  s.direct_writes = c.direct_writes;
  return s;
}

// The storage file of a generation: storage_dir's, then storage_dir/tier-N's
// after each change of st_size.
std::string generation_file(const std::string& storage_dir, int64_t generation) {
  const fs::path dir = generation == 0 ? fs::path(storage_dir)
                                       : fs::path(storage_dir) / fmt::format("tier-{}", generation);
  return (dir / "samples.bin").string();
}

SwapConfig swap_config(const TierConfig& c) {
  SwapConfig w;
  w.swap_period = c.swap_period;
  w.swap_ratio = c.swap_ratio;
  w.seed = c.seed ^ 0x5a9;
  return w;
}

}  // namespace

ReplayTier::ReplayTier(const TierConfig& config) : ReplayTier(config, -1) {}

ReplayTier::ReplayTier(const TierConfig& config, int64_t generation) : config_(config) {
  const TierConfig& c = config_;
  TURBINE_CHECK(c.rb_size >= 1, "memory.rb_size {} must be at least 1", c.rb_size);
  TURBINE_CHECK(c.policy == "reservoir" || c.policy == "class_balanced",
                "memory.policy {}: reservoir or class_balanced", c.policy);
  check_tier_budget(c);
  memory_ = make_memory(c);
  if (c.st_size <= 0) {
    payloads_.assign(size_t(c.rb_size * c.payload_bytes), 0);
    return;
  }
  generation_ = std::max<int64_t>(generation, 0);
  store_ = std::make_unique<SampleStore>(
      store_config(c, fs::path(storage_path(generation_)).parent_path().string(), generation >= 0));
  swap_ = std::make_unique<SwapManager>(*memory_, *store_, swap_config(c));
}

ReplayTier::~ReplayTier() = default;

void ReplayTier::begin_iteration(int64_t iteration) {
  if (swap_) swap_->request_swap(iteration);
}

void ReplayTier::observe(int64_t id, int32_t label, std::span<const uint8_t> payload) {
  TURBINE_CHECK(int64_t(payload.size()) == config_.payload_bytes,
                "replay: a payload of {} bytes, expected {}", payload.size(),
                config_.payload_bytes);
  if (swap_) {
    swap_->observe(id, label, payload);
    return;
  }
  const AddResult r = memory_->add(id, label);
  if (r.action != AddAction::skipped)
    std::memcpy(payloads_.data() + r.slot * config_.payload_bytes, payload.data(), payload.size());
}

std::span<const uint8_t> ReplayTier::payload(int64_t slot) const {
  if (swap_) return swap_->payload(slot);
  TURBINE_CHECK(slot >= 0 && slot < size(), "replay: slot {} of {}", slot, size());
  return {payloads_.data() + slot * config_.payload_bytes, size_t(config_.payload_bytes)};
}

int64_t ReplayTier::ram_bytes() const {
  return swap_ ? swap_->ram_bytes() + swap_->swap_buffer_bytes() : memory_->capacity_bytes();
}

void ReplayTier::reconfigure(const TierConfig& next) {
  TURBINE_CHECK(swap_ && next.st_size > 0, "replay: only a hierarchical tier is reconfigured");
  TURBINE_CHECK(next.rb_size >= 1, "replay: rb_size {} must be at least 1", next.rb_size);
  TierConfig c = config_;
  c.rb_size = next.rb_size;
  c.st_size = next.st_size;
  c.swap_ratio = next.swap_ratio;
  check_tier_budget(c);
  swap_->apply();
  const SwapSnapshot old = swap_->snapshot();
  const uint64_t seed = c.seed ^ 0x4e5a ^ uint64_t(generation_ + 1) * 0x9e3779b97f4a7c15ULL;
  // Storage: the same file, or a new one with a subset of the records.
  std::unique_ptr<SampleStore> store;
  std::string old_path;
  if (c.st_size != config_.st_size) {
    const int64_t generation = generation_ + 1;
    const std::string dir = fs::path(storage_path(generation)).parent_path().string();
    fs::create_directories(dir);
    store = std::make_unique<SampleStore>(store_config(c, dir, false));
    std::vector<int64_t> records(size_t(store_->records()));
    std::iota(records.begin(), records.end(), 0);
    records = philox_subset(records, c.st_size, seed, 1, 0);
    std::vector<uint8_t> payloads(static_cast<size_t>(c.payload_bytes));
    for (const int64_t record : records) {
      const int64_t one[1] = {record};
      const StoredSample in = store_->read(one, payloads)[0];
      store->append(in.id, in.label, payloads);
    }
    StoreSnapshot snap = store->snapshot();
    // The stream seen so far, for Algorithm R's odds; a store that grew past
    // what it kept fills its new room first.
    if (int64_t(records.size()) == std::min(store_->seen(), c.st_size))
      snap.index.seen = store_->seen();
    store->restore(snap);
    moved_read_ += store_->bytes_read();
    moved_written_ += store_->bytes_written();
    old_path = store_->path();
    generation_ = generation;
  }
  SampleStore& target = store ? *store : *store_;
  // RAM: a subset of what it holds, or all of it and stored samples it lacks.
  std::vector<int64_t> slots(size_t(memory_->size()));
  std::iota(slots.begin(), slots.end(), 0);
  slots = philox_subset(slots, c.rb_size, seed, 2, 0);
  MemorySnapshot m;
  m.capacity = c.rb_size;
  m.seed = c.seed;
  m.seen = memory_->seen();
  std::vector<uint8_t> payloads;
  std::set<int64_t> held;
  for (const int64_t slot : slots) {
    m.ids.push_back(memory_->ids()[size_t(slot)]);
    m.labels.push_back(memory_->labels()[size_t(slot)]);
    const auto p = swap_->payload(slot);
    payloads.insert(payloads.end(), p.begin(), p.end());
    held.insert(m.ids.back());
  }
  if (int64_t(m.ids.size()) < c.rb_size) {
    std::vector<int64_t> absent;
    for (int64_t r = 0; r < target.records(); ++r)
      if (!held.count(target.ids()[size_t(r)])) absent.push_back(r);
    absent = philox_subset(absent, c.rb_size - int64_t(m.ids.size()), seed, 3, 0);
    std::vector<uint8_t> bytes(absent.size() * size_t(c.payload_bytes));
    const std::vector<StoredSample> in = target.read(absent, bytes);
    for (size_t i = 0; i < in.size(); ++i) {
      m.ids.push_back(in[i].id);
      m.labels.push_back(in[i].label);
    }
    payloads.insert(payloads.end(), bytes.begin(), bytes.end());
  }
  // A memory that could not be filled takes new samples into its empty slots first.
  if (int64_t(m.ids.size()) < std::min(m.seen, c.rb_size)) m.seen = int64_t(m.ids.size());
  std::unique_ptr<ReplayMemory> memory = make_memory(c);
  const SwapConfig w = swap_config(c);
  swap_.reset();
  auto swap = std::make_unique<SwapManager>(*memory, target, w);
  SwapSnapshot s;
  s.swap_period = w.swap_period;
  s.swap_ratio = w.swap_ratio;
  s.seed = w.seed;
  s.last_iteration = old.last_iteration;
  s.swaps_drawn = old.swaps_drawn;
  s.stats = old.stats;
  s.memory = std::move(m);
  s.payloads = std::move(payloads);
  swap->restore(s);
  memory_ = std::move(memory);
  swap_ = std::move(swap);
  if (store) {
    store_ = std::move(store);
    std::error_code ignored;
    fs::remove(old_path, ignored);
  }
  config_ = c;
}

namespace {

nlohmann::ordered_json memory_json(const MemorySnapshot& m) {
  return {{"capacity", m.capacity},
          {"seed", m.seed},
          {"seen", m.seen},
          {"ids", m.ids},
          {"labels", m.labels}};
}

MemorySnapshot memory_from(const nlohmann::ordered_json& j) {
  MemorySnapshot m;
  m.capacity = j.at("capacity");
  m.seed = j.at("seed");
  m.seen = j.at("seen");
  m.ids = j.at("ids").get<std::vector<int64_t>>();
  m.labels = j.at("labels").get<std::vector<int32_t>>();
  return m;
}

std::string bytes_of(const std::vector<uint8_t>& v) {
  return {v.begin(), v.end()};
}
std::vector<uint8_t> bytes_from(const std::string& s) {
  return {s.begin(), s.end()};
}

}  // namespace

std::string ReplayTier::storage_path(int64_t generation) const {
  return generation_file(config_.storage_dir, generation);
}

TierState ReplayTier::save() {
  TierState state;
  nlohmann::ordered_json& j = state.json;
  j["rb_size"] = config_.rb_size;
  j["st_size"] = config_.st_size;
  j["swap_ratio"] = config_.swap_ratio;
  j["policy"] = config_.policy;
  j["payload_bytes"] = config_.payload_bytes;
  j["generation"] = generation_;
  j["moved_read"] = moved_read_;
  j["moved_written"] = moved_written_;
  if (!swap_) {
    j["memory"] = memory_json(memory_->snapshot());
    state.files["tier_ram.bin"] =
        std::string(payloads_.begin(), payloads_.begin() + memory_->size() * config_.payload_bytes);
    return state;
  }
  const SwapSnapshot w = swap_->snapshot();
  const SwapStats& st = w.stats;
  j["swap"] = {
      {"swap_period", w.swap_period},
      {"swap_ratio", w.swap_ratio},
      {"seed", w.seed},
      {"last_iteration", w.last_iteration},
      {"swaps_drawn", w.swaps_drawn},
      {"stats", {st.swaps, st.swapped_in, st.skipped, st.bytes_to_ram, st.bytes_to_storage}},
      {"memory", memory_json(w.memory)},
      {"pending", w.pending}};
  state.files["tier_ram.bin"] = bytes_of(w.payloads);
  if (w.pending) {
    std::vector<int64_t> in_ids;
    std::vector<int32_t> in_labels;
    for (const StoredSample& x : w.swap.in) {
      in_ids.push_back(x.id);
      in_labels.push_back(x.label);
    }
    j["swap"]["swap"] = {{"slots", w.swap.slots},     {"out_ids", w.swap.out_ids},
                         {"records", w.swap.records}, {"in_ids", w.swap.in_ids},
                         {"in_read_ids", in_ids},     {"in_read_labels", in_labels}};
    state.files["tier_pending.bin"] = bytes_of(w.swap.payloads);
  }
  const StoreSnapshot ss = store_->snapshot();
  j["store"] = {{"st_size", ss.st_size},
                {"payload_bytes", ss.payload_bytes},
                {"index", memory_json(ss.index)},
                {"bytes_read", store_->bytes_read()},
                {"bytes_written", store_->bytes_written()}};
  std::ifstream in(store_->path(), std::ios::binary);
  TURBINE_CHECK(in, "checkpoint: cannot read the storage file {}", store_->path());
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  file.resize(size_t(store_->storage_bytes()));  // the records the index names
  state.files["tier_samples.bin"] = std::move(file);
  return state;
}

std::unique_ptr<ReplayTier> ReplayTier::restore(
    const TierConfig& base, const nlohmann::ordered_json& j,
    const std::function<std::string(const std::string&)>& file) {
  TierConfig c = base;
  c.rb_size = j.at("rb_size");
  c.st_size = j.at("st_size");
  c.swap_ratio = j.at("swap_ratio");
  TURBINE_CHECK(j.at("policy") == c.policy && j.at("payload_bytes") == c.payload_bytes,
                "checkpoint: a {} memory of {}-byte samples, this run's is {} of {}",
                std::string(j.at("policy")), int64_t(j.at("payload_bytes")), c.policy,
                c.payload_bytes);
  const int64_t generation = j.at("generation");
  if (c.st_size > 0) {  // the storage file back where the store opens it
    const std::string path = generation_file(c.storage_dir, generation);
    fs::create_directories(fs::path(path).parent_path());
    const std::string bytes = file("tier_samples.bin");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    out.close();
    TURBINE_CHECK(out.good(), "checkpoint: cannot write the storage file {}", path);
  }
  auto tier = std::unique_ptr<ReplayTier>(new ReplayTier(c, generation));
  tier->moved_read_ = j.at("moved_read");
  tier->moved_written_ = j.at("moved_written");
  if (j.contains("store")) {  // the restored store counts from 0
    tier->moved_read_ += int64_t(j["store"].at("bytes_read"));
    tier->moved_written_ += int64_t(j["store"].at("bytes_written"));
  }
  if (!tier->swap_) {
    tier->memory_->restore(memory_from(j.at("memory")));
    const std::string payloads = file("tier_ram.bin");
    TURBINE_CHECK(int64_t(payloads.size()) == tier->size() * c.payload_bytes,
                  "checkpoint: {} bytes of memory payloads for {} samples", payloads.size(),
                  tier->size());
    std::copy(payloads.begin(), payloads.end(), tier->payloads_.begin());
    return tier;
  }
  const auto& js = j.at("store");
  StoreSnapshot ss;
  ss.st_size = js.at("st_size");
  ss.payload_bytes = js.at("payload_bytes");
  ss.index = memory_from(js.at("index"));
  tier->store_->restore(ss);
  const auto& jw = j.at("swap");
  SwapSnapshot w;
  w.swap_period = jw.at("swap_period");
  w.swap_ratio = jw.at("swap_ratio");
  w.seed = jw.at("seed");
  w.last_iteration = jw.at("last_iteration");
  w.swaps_drawn = jw.at("swaps_drawn");
  const auto st = jw.at("stats").get<std::vector<int64_t>>();
  TURBINE_CHECK(st.size() == 5, "checkpoint: swap statistics of {} values", st.size());
  w.stats = {st[0], st[1], st[2], st[3], st[4]};
  w.memory = memory_from(jw.at("memory"));
  w.payloads = bytes_from(file("tier_ram.bin"));
  w.pending = jw.at("pending");
  if (w.pending) {
    const auto& p = jw.at("swap");
    w.swap.slots = p.at("slots").get<std::vector<int64_t>>();
    w.swap.out_ids = p.at("out_ids").get<std::vector<int64_t>>();
    w.swap.records = p.at("records").get<std::vector<int64_t>>();
    w.swap.in_ids = p.at("in_ids").get<std::vector<int64_t>>();
    const auto ids = p.at("in_read_ids").get<std::vector<int64_t>>();
    const auto labels = p.at("in_read_labels").get<std::vector<int32_t>>();
    for (size_t i = 0; i < ids.size() && i < labels.size(); ++i)
      w.swap.in.push_back({ids[i], labels[i]});
    w.swap.payloads = bytes_from(file("tier_pending.bin"));
  }
  tier->swap_->restore(w);
  return tier;
}

nlohmann::ordered_json ReplayTier::to_json() const {
  nlohmann::ordered_json j;
  j["rb_size"] = capacity();
  j["ram_bytes"] = ram_bytes();
  j["held"] = size();
  j["st_size"] = config_.st_size;
  if (store_) {
    const SwapStats s = swap_->stats();
    j["stored"] = store_->records();
    j["storage_bytes"] = store_->storage_bytes();
    j["bytes_read"] = storage_read_bytes();
    j["bytes_written"] = storage_written_bytes();
    j["swaps"] = s.swaps;
    j["swapped_in"] = s.swapped_in;
    j["direct_io"] = store_->direct_io();
    j["direct_writes"] = store_->direct_writes();
  }
  return j;
}

}  // namespace turbine::cl
