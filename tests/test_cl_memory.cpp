// cl-edge's replay memories (lib/cl/memory.hpp): the reservoir keeps every
// sample seen with the same probability capacity/n (inclusion frequencies
// over 2000 seeds within 5 binomial standard deviations) and never holds a
// sample twice; what add() reports is what the memory holds; replay batches
// are distinct slots, uniform and reproducible; the class-balanced memory
// keeps its documented invariant on imbalanced and class-incremental
// streams and evicts from the largest class, smallest label first; the
// byte accounting is exact and an over-budget rb_size is refused naming both
// numbers; a restored snapshot continues exactly as the uninterrupted memory;
// bad input is refused.
#define BOOST_TEST_MODULE cl_memory
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "cl/memory.hpp"
#include "core/rng.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

cl::MemoryConfig config(int64_t capacity, uint64_t seed, int64_t payload_bytes = 0) {
  cl::MemoryConfig c;
  c.capacity = capacity;
  c.seed = seed;
  c.payload_bytes = payload_bytes;
  return c;
}

bool distinct(const std::vector<int64_t>& values) {
  return std::set<int64_t>(values.begin(), values.end()).size() == values.size();
}

// The labels of an imbalanced stream: `per_class[c]` samples of class c, in
// an order shuffled by Philox.
std::vector<int32_t> shuffled_labels(const std::vector<int64_t>& per_class, uint64_t seed) {
  std::vector<int32_t> labels;
  for (size_t c = 0; c < per_class.size(); ++c)
    labels.insert(labels.end(), size_t(per_class[c]), int32_t(c));
  for (size_t i = labels.size() - 1; i > 0; --i) {
    const auto r = philox4x32(seed, 77, i);
    std::swap(labels[i], labels[r[0] % (i + 1)]);
  }
  return labels;
}

// Offers samples [from, to) of the stream to `memory` (sample i has id
// 1000 + i; to = 0: up to the end) and checks after every add that the
// memory holds exactly what the AddResults said, that no sample is held
// twice, and that size() == min(seen, capacity). Returns the AddResults.
std::vector<cl::AddResult> feed(cl::ReplayMemory& memory, const std::vector<int32_t>& labels,
                                size_t from = 0, size_t to = 0) {
  std::vector<cl::AddResult> results;
  std::vector<int64_t> ids = memory.ids();
  std::vector<int32_t> held = memory.labels();
  for (size_t i = from; i < (to == 0 ? labels.size() : to); ++i) {
    const int64_t id = 1000 + int64_t(i);
    const cl::AddResult r = memory.add(id, labels[i]);
    if (r.action == cl::AddAction::stored) {
      BOOST_TEST_REQUIRE(r.slot == int64_t(ids.size()));
      ids.push_back(id);
      held.push_back(labels[i]);
    } else if (r.action == cl::AddAction::replaced) {
      BOOST_TEST_REQUIRE(r.evicted_id == ids[size_t(r.slot)]);
      BOOST_TEST_REQUIRE(r.evicted_label == held[size_t(r.slot)]);
      ids[size_t(r.slot)] = id;
      held[size_t(r.slot)] = labels[i];
    }
    BOOST_TEST_REQUIRE((memory.ids() == ids && memory.labels() == held));
    BOOST_TEST_REQUIRE(memory.size() == std::min(memory.seen(), memory.capacity()));
    BOOST_TEST_REQUIRE(distinct(memory.ids()));
    results.push_back(r);
  }
  return results;
}

// Whether `count` successes of `trials` are within 5 binomial standard
// deviations of probability p: a bound any seed meets.
bool within_5_sigma(int64_t count, int64_t trials, double p) {
  const double mean = double(trials) * p, sigma = std::sqrt(double(trials) * p * (1 - p));
  return std::abs(double(count) - mean) <= 5 * sigma;
}

}  // namespace

BOOST_AUTO_TEST_CASE(reservoir_keeps_every_sample_with_probability_capacity_over_n) {
  // 2000 independent memories of capacity 10 over a stream of 100. At the
  // end each sample is held in Binomial(2000, 10/100) of them (mean 200,
  // standard deviation sqrt(2000 * 0.1 * 0.9) = 13.4). On arrival the n-th
  // is kept in Binomial(2000, min(1, 10/n)), over a slot uniform among the 10.
  constexpr int64_t kRuns = 2000, kStream = 100, kCapacity = 10;
  std::vector<int64_t> held(kStream, 0), kept_on_arrival(kStream, 0), slot_chosen(kCapacity, 0);
  int64_t replacements = 0;
  const std::vector<int32_t> labels(kStream, 3);
  for (int64_t run = 0; run < kRuns; ++run) {
    cl::ReservoirMemory memory(config(kCapacity, 1 + uint64_t(run)));
    const std::vector<cl::AddResult> results = feed(memory, labels);
    BOOST_TEST_REQUIRE(memory.seen() == kStream);
    for (int64_t id : memory.ids()) ++held[size_t(id - 1000)];
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].action == cl::AddAction::skipped) continue;
      ++kept_on_arrival[i];
      if (results[i].action == cl::AddAction::replaced) {
        ++slot_chosen[size_t(results[i].slot)];
        ++replacements;
      }
    }
  }
  for (int64_t i = 0; i < kStream; ++i) {
    BOOST_TEST(within_5_sigma(held[size_t(i)], kRuns, double(kCapacity) / kStream),
               "sample " << i << " held in " << held[size_t(i)] << " of " << kRuns << " runs");
    const double keep = std::min(1.0, double(kCapacity) / double(i + 1));
    BOOST_TEST(within_5_sigma(kept_on_arrival[size_t(i)], kRuns, keep),
               "sample " << i << " kept on arrival in " << kept_on_arrival[size_t(i)] << " of "
                         << kRuns << " runs");
  }
  for (int64_t n : slot_chosen) BOOST_TEST(within_5_sigma(n, replacements, 1.0 / kCapacity));
}

BOOST_AUTO_TEST_CASE(reservoir_fills_its_slots_in_order_and_is_deterministic_by_seed) {
  cl::ReservoirMemory a(config(5, 42)), b(config(5, 42)), c(config(5, 43));
  for (int64_t i = 0; i < 5; ++i) {
    const cl::AddResult r = a.add(i, int32_t(i % 2));
    BOOST_TEST((r.action == cl::AddAction::stored && r.slot == i));
  }
  BOOST_TEST(a.ids() == (std::vector<int64_t>{0, 1, 2, 3, 4}));
  BOOST_TEST(a.labels() == (std::vector<int32_t>{0, 1, 0, 1, 0}));
  for (int64_t i = 0; i < 5; ++i) {
    b.add(i, int32_t(i % 2));
    c.add(i, int32_t(i % 2));
  }
  int64_t replaced = 0, skipped = 0;
  for (int64_t i = 5; i < 500; ++i) {
    const cl::AddResult r = a.add(i, 0);
    BOOST_TEST_REQUIRE((r == b.add(i, 0)));
    c.add(i, 0);
    replaced += r.action == cl::AddAction::replaced;
    skipped += r.action == cl::AddAction::skipped;
  }
  BOOST_TEST(a.ids() == b.ids());
  BOOST_TEST(a.ids() != c.ids());
  // Expected replacements: sum_{n=6}^{500} 5/n = 5 (H_500 - H_5) = 22.0; all others skipped.
  BOOST_TEST((replaced > 5 && replaced < 50));
  BOOST_TEST(replaced + skipped == 495);
}

BOOST_AUTO_TEST_CASE(replay_batches_are_distinct_uniform_slots_and_reproducible) {
  cl::ReservoirMemory memory(config(50, 9));
  feed(memory, std::vector<int32_t>(200, 1));
  // Each of 4000 batches of 8 out of 50 slots holds a given slot with
  // probability 8/50; 5 binomial sigmas around 640.
  constexpr int64_t kBatches = 4000, kCount = 8;
  std::vector<int64_t> drawn(50, 0);
  for (uint64_t batch = 0; batch < kBatches; ++batch) {
    const std::vector<int64_t> slots = memory.sample(kCount, batch);
    BOOST_TEST_REQUIRE(slots.size() == size_t(kCount));
    BOOST_TEST_REQUIRE(distinct(slots));
    for (int64_t s : slots) {
      BOOST_TEST_REQUIRE((s >= 0 && s < memory.size()));
      ++drawn[size_t(s)];
    }
  }
  for (int64_t n : drawn) BOOST_TEST(within_5_sigma(n, kBatches, double(kCount) / 50));
  // A pure function of the batch number.
  BOOST_TEST(memory.sample(8, 17) == memory.sample(8, 17));
  BOOST_TEST(memory.sample(8, 17) != memory.sample(8, 18));
  BOOST_TEST(memory.seen() == 200);
  // A memory smaller than the batch gives all its slots, shuffled.
  cl::ReservoirMemory small(config(10, 9));
  feed(small, {0, 0, 0});
  std::vector<int64_t> all = small.sample(8, 0);
  std::sort(all.begin(), all.end());
  BOOST_TEST(all == (std::vector<int64_t>{0, 1, 2}));
  BOOST_TEST(cl::ReservoirMemory(config(4, 1)).sample(8, 0).empty());
}

BOOST_AUTO_TEST_CASE(class_balanced_memory_keeps_its_invariant_on_an_imbalanced_stream) {
  // 500, 200, 50 and 5 samples of classes 0..3, shuffled, into 40 slots.
  const std::vector<int32_t> labels = shuffled_labels({500, 200, 50, 5}, 3);
  cl::ClassBalancedMemory memory(config(40, 11));
  std::map<int32_t, int64_t> seen;
  for (size_t i = 0; i < labels.size(); ++i) {
    feed(memory, labels, i, i + 1);
    ++seen[labels[i]];
    const auto counts = memory.class_counts();
    int64_t largest = 0;
    for (const auto& [label, count] : counts) largest = std::max(largest, count);
    for (const auto& [label, n] : seen) {
      const int64_t count = counts.count(label) ? counts.at(label) : 0;
      BOOST_TEST_REQUIRE(count >= std::min(n, largest - 1),
                         "class " << label << " holds " << count << " after " << n
                                  << " seen, the largest " << largest);
    }
  }
  // Class 3 is complete; the other three share the other 35 slots within 1.
  const auto counts = memory.class_counts();
  BOOST_TEST(counts.at(3) == 5);
  for (int32_t c : {0, 1, 2}) BOOST_TEST((counts.at(c) == 11 || counts.at(c) == 12));
  BOOST_TEST(memory.size() == 40);
}

BOOST_AUTO_TEST_CASE(class_balanced_memory_balances_a_class_incremental_stream) {
  // Five classes one after the other, 100 samples each, into 50 slots: 10 each.
  std::vector<int32_t> labels;
  for (int32_t c = 0; c < 5; ++c) labels.insert(labels.end(), 100, c);
  cl::ClassBalancedMemory memory(config(50, 5));
  feed(memory, labels);
  BOOST_TEST(memory.class_counts() ==
             (std::map<int32_t, int64_t>{{0, 10}, {1, 10}, {2, 10}, {3, 10}, {4, 10}}));
}

BOOST_AUTO_TEST_CASE(class_balanced_memory_evicts_from_the_largest_class_smallest_label_first) {
  cl::ClassBalancedMemory memory(config(4, 1));
  for (int32_t label : {1, 0, 1, 0}) memory.add(100 + label, label);  // {0: 2, 1: 2}
  cl::AddResult r = memory.add(7, 2);                                 // ties: class 0 loses one
  BOOST_TEST((r.action == cl::AddAction::replaced && r.evicted_label == 0));
  BOOST_TEST(memory.class_counts() == (std::map<int32_t, int64_t>{{0, 1}, {1, 2}, {2, 1}}));
  BOOST_TEST((memory.add(8, 1).action == cl::AddAction::skipped));  // class 1 is the largest
  r = memory.add(9, 0);
  BOOST_TEST((r.action == cl::AddAction::replaced && r.evicted_label == 1));
  BOOST_TEST(memory.class_counts() == (std::map<int32_t, int64_t>{{0, 2}, {1, 1}, {2, 1}}));
  BOOST_TEST(memory.seen() == 7);
}

BOOST_AUTO_TEST_CASE(memory_accounting_is_exact) {
  // A 28x28 uint8 image: 784 bytes, and 12 of id and label.
  cl::ReservoirMemory memory(config(10, 1, 784));
  BOOST_TEST(memory.bytes_per_sample() == 796);
  BOOST_TEST(memory.capacity_bytes() == 7960);
  BOOST_TEST(memory.bytes() == 0);
  feed(memory, std::vector<int32_t>(7, 0));
  BOOST_TEST(memory.bytes() == 7 * 796);
  feed(memory, std::vector<int32_t>(30, 0), 7);
  BOOST_TEST(memory.bytes() == 7960);
  BOOST_TEST(cl::ClassBalancedMemory(config(3, 1)).capacity_bytes() == 36);
}

BOOST_AUTO_TEST_CASE(a_memory_over_its_budget_is_refused_naming_both_numbers) {
  cl::MemoryConfig c = config(5000, 1, 784);
  c.budget_mb = 2;
  // 5000 x 796 = 3980000 bytes = 3.796 MB of 2^20 bytes.
  const std::string e = error_of([&] { cl::ReservoirMemory m(c); });
  BOOST_TEST(
      contains(e, "rb_size 5000 samples x 796 bytes = 3.8 MB is over the memory budget of 2 MB"));
  BOOST_TEST(contains(e, "lower rb_size to at most 2634"));  // 2 x 2^20 / 796 = 2634.6
  c.capacity = 2634;
  BOOST_TEST(cl::ClassBalancedMemory(c).capacity_bytes() == 2634 * 796);
  // One sample over: 2635 x 796 = 2097460 bytes = 2.0003 MB, shown with the decimals that tell.
  c.capacity = 2635;
  BOOST_TEST(contains(error_of([&] { cl::ClassBalancedMemory m(c); }),
                      "2635 samples x 796 bytes = 2.0003 MB is over the memory budget of 2 MB"));
  BOOST_TEST(contains(error_of([] { cl::check_memory_budget(1, 796, 0.0001); }),
                      "not even one sample fits"));
  cl::check_memory_budget(1'000'000, 796, 0);  // 0: no budget
}

BOOST_AUTO_TEST_CASE(a_restored_memory_continues_as_the_uninterrupted_one) {
  const std::vector<int32_t> labels = shuffled_labels({900, 300, 60, 20}, 8);
  auto make = [](bool balanced) -> std::unique_ptr<cl::ReplayMemory> {
    if (balanced) return std::make_unique<cl::ClassBalancedMemory>(config(64, 21));
    return std::make_unique<cl::ReservoirMemory>(config(64, 21));
  };
  for (bool balanced : {false, true}) {
    BOOST_TEST_CONTEXT("class-balanced " << balanced) {
      auto uninterrupted = make(balanced), before = make(balanced), resumed = make(balanced);
      constexpr size_t kCheckpoint = 500;
      for (size_t i = 0; i < kCheckpoint; ++i) {
        uninterrupted->add(int64_t(i), labels[i]);
        before->add(int64_t(i), labels[i]);
      }
      const cl::MemorySnapshot snapshot = before->snapshot();
      BOOST_TEST(snapshot.seen == int64_t(kCheckpoint));
      BOOST_TEST(snapshot.ids.size() == 64u);
      resumed->restore(snapshot);
      BOOST_TEST((resumed->snapshot() == snapshot));
      BOOST_TEST(resumed->class_counts() == before->class_counts());
      for (size_t i = kCheckpoint; i < labels.size(); ++i)
        BOOST_TEST_REQUIRE(
            (resumed->add(int64_t(i), labels[i]) == uninterrupted->add(int64_t(i), labels[i])));
      BOOST_TEST((resumed->snapshot() == uninterrupted->snapshot()));
      BOOST_TEST(resumed->sample(16, 3) == uninterrupted->sample(16, 3));
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_snapshots_are_refused_and_change_nothing) {
  cl::ReservoirMemory memory(config(4, 5));
  feed(memory, {0, 1, 2});
  const cl::MemorySnapshot good = memory.snapshot();
  cl::MemorySnapshot s = good;
  s.capacity = 8;
  BOOST_TEST(
      contains(error_of([&] { memory.restore(s); }), "taken with rb_size 8, this memory's is 4"));
  s = good;
  s.seed = 6;
  BOOST_TEST(
      contains(error_of([&] { memory.restore(s); }), "taken with seed 6, this memory's is 5"));
  s = good;
  s.labels.pop_back();
  BOOST_TEST(contains(error_of([&] { memory.restore(s); }), "3 ids but 2 labels"));
  s = good;
  s.seen = 10;
  BOOST_TEST(contains(error_of([&] { memory.restore(s); }),
                      "3 samples held after 10 seen with rb_size 4"));
  BOOST_TEST((memory.snapshot() == good));
}

BOOST_AUTO_TEST_CASE(bad_configurations_are_refused) {
  BOOST_TEST(contains(error_of([] { cl::ReservoirMemory m(config(0, 1)); }),
                      "rb_size 0: a replay memory holds from 1 to 2^32 - 1 samples"));
  BOOST_TEST(contains(error_of([] { cl::ClassBalancedMemory m(config(-3, 1)); }), "rb_size -3"));
  BOOST_TEST(contains(error_of([] { cl::ReservoirMemory m(config(int64_t(1) << 32, 1)); }),
                      "from 1 to 2^32 - 1 samples"));
  BOOST_TEST(
      contains(error_of([] { cl::ReservoirMemory m(config(4, 1, -1)); }), "payload of -1 bytes"));
  cl::MemoryConfig c = config(4, 1);
  c.budget_mb = -1;
  BOOST_TEST(contains(error_of([&] { cl::ReservoirMemory m(c); }), "memory budget of -1 MB"));
  cl::ReservoirMemory memory(config(4, 1));
  BOOST_TEST(contains(error_of([&] { memory.sample(-1, 0); }), "replay batch of -1 samples"));
  BOOST_TEST(contains(error_of([&] { memory.sample(2, uint64_t(1) << 32); }), "below 2^32"));
}
