// Lanes of the CUDA backend (backend.hpp, kernels/cuda/lanes.cpp) on cuda:0,
// the emulated H100 in an emulate_cuda build: SM partitions of round(share x
// groups) groups, disjoint while the shares of the lanes open together fit
// and shared by use count when they do not; a lane's own stream; cached
// blocks freed on a lane kept from other lanes until it closes; and
// fedsim's client pool giving the same weights with SM partitions, time
// slices and one client at a time. Run with TURBINE_EMU_GREEN_CONTEXTS=0 (a
// driver without green contexts) the `no_green_contexts` case checks the
// fallback and the errors instead. Without a CUDA device it prints SKIP and
// exits 77.
#define BOOST_TEST_MODULE cuda_lanes
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "fl/client.hpp"
#include "fl/pool.hpp"
#include "fl_fixtures.hpp"
#include "tensor/tensor.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;
using Lane = kernels::Backend::Lane;

namespace {

kernels::Backend& gpu() {
  return backend_for(Device::cuda(0));
}

bool green_contexts_disabled() {
  const char* v = std::getenv("TURBINE_EMU_GREEN_CONTEXTS");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

// Runs f on a thread of its own (a lane belongs to the thread that opened it).
void on_thread(const std::function<void()>& f) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

// Every group of the device, and how many SMs a group holds, from a lane
// over all of them.
std::pair<int, int> groups_and_size() {
  std::pair<int, int> r;
  on_thread([&] {
    const auto lane = gpu().open_lane(1.0, true);
    r = {int(lane->groups().size()), lane->units() / int(lane->groups().size())};
  });
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_lane_takes_its_share_of_the_sm_groups) {
  if (green_contexts_disabled()) return;
  const kernels::Backend::LaneSupport support = gpu().lanes();
  BOOST_TEST(support.lanes);
  if (!support.partition) {  // a real GPU whose driver has none: said why
    BOOST_TEST_MESSAGE("no SM partitions here: " << support.why_not);
    BOOST_TEST(!support.why_not.empty());
    return;
  }
  const auto [groups, size] = groups_and_size();
  BOOST_TEST(groups >= 2);
  on_thread([&, groups = groups, size = size] {
    const auto lane = gpu().open_lane(0.25, true);
    const int want = std::max(1, int(std::lround(0.25 * groups)));
    BOOST_TEST(int(lane->groups().size()) == want);
    BOOST_TEST(lane->units() == want * size);
    BOOST_TEST(lane->device_units() >= groups * size);
    // None open beside it: the first groups.
    for (int i = 0; i < want; ++i) BOOST_TEST(lane->groups()[size_t(i)] == i);
  });
  BOOST_TEST_MESSAGE(groups << " groups of " << size << " SMs");  // emulated H100: 16 of 8
}

BOOST_AUTO_TEST_CASE(lanes_open_together_get_disjoint_groups_while_their_shares_fit) {
  if (green_contexts_disabled() || !gpu().lanes().partition) return;
  const int groups = groups_and_size().first;
  // Quarter shares: four fit, a fifth shares the least used.
  constexpr int kLanes = 5;
  std::vector<std::vector<int>> held(kLanes);
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::condition_variable cv;
  int opened = 0;
  bool release = false;
  std::exception_ptr error;
  for (int i = 0; i < kLanes; ++i) {
    threads.emplace_back([&, i] {
      try {
        std::unique_ptr<Lane> lane;
        {
          std::unique_lock lock(mutex);
          cv.wait(lock, [&] { return opened == i; });  // in order: the fifth comes last
          lane = gpu().open_lane(0.25, true);
          held[size_t(i)] = lane->groups();
          ++opened;
          cv.notify_all();
          cv.wait(lock, [&] { return release; });
        }
      } catch (...) {
        std::lock_guard lock(mutex);
        error = std::current_exception();
        ++opened;
        cv.notify_all();
      }
    });
  }
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return opened == kLanes; });
    release = true;
    cv.notify_all();
  }
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  const int per = std::max(1, int(std::lround(0.25 * groups)));
  const int fit = groups / per;  // lanes whose groups can be disjoint
  std::multiset<int> used;
  for (int i = 0; i < kLanes; ++i) {
    BOOST_TEST(int(held[size_t(i)].size()) == per);
    if (i < fit) used.insert(held[size_t(i)].begin(), held[size_t(i)].end());
  }
  for (const int g : used) BOOST_TEST(used.count(g) == 1u, "group " << g << " given twice");
  BOOST_TEST(int(used.size()) == std::min(fit, kLanes) * per);
}

BOOST_AUTO_TEST_CASE(a_lane_has_its_own_stream_and_closes_back_to_the_backends) {
  void* main_stream = gpu().native_stream();
  for (const bool partition : {false, gpu().lanes().partition}) {
    on_thread([&] {
      {
        const auto lane = gpu().open_lane(0.5, partition);
        BOOST_REQUIRE(lane);
        BOOST_TEST(gpu().native_stream() != main_stream);
        BOOST_TEST((lane->units() > 0) == partition);
        BOOST_TEST(lane->groups().empty() == !partition);
        BOOST_CHECK_THROW(gpu().open_lane(0.5, partition), Error);  // one per thread
      }
      BOOST_TEST(gpu().native_stream() == main_stream);
    });
  }
  BOOST_CHECK_THROW(gpu().open_lane(0, false), Error);
  BOOST_CHECK_THROW(gpu().open_lane(1.5, false), Error);
}

// A block freed on a lane may still be in use by its queued work: another
// lane must not get it until the lane closes.
BOOST_AUTO_TEST_CASE(blocks_freed_on_a_lane_stay_its_own_until_it_closes) {
  constexpr size_t kBytes = (size_t(7) << 20) + 4321;  // a size nothing else asks for
  std::mutex mutex;
  std::condition_variable cv;
  int stage = 0;
  void* freed = nullptr;
  void* other = nullptr;
  void* later = nullptr;
  auto wait_for = [&](int s) {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return stage >= s; });
  };
  auto advance = [&] {
    std::lock_guard lock(mutex);
    ++stage;
    cv.notify_all();
  };
  std::thread a([&] {
    {
      const auto lane = gpu().open_lane(0.5, false);
      freed = gpu().allocate(kBytes);
      gpu().deallocate(freed, kBytes);
      advance();  // 1: freed on lane a, which is still open
      wait_for(2);
    }
    advance();  // 3: lane a closed
  });
  std::thread b([&] {
    const auto lane = gpu().open_lane(0.5, false);
    wait_for(1);
    other = gpu().allocate(kBytes);
    advance();  // 2
    wait_for(3);
    later = gpu().allocate(kBytes);
    gpu().deallocate(other, kBytes);
    gpu().deallocate(later, kBytes);
  });
  a.join();
  b.join();
  BOOST_TEST(other != freed);
  BOOST_TEST(later == freed);  // idle once lane a closed
}

// fedsim's pool on cuda:0: three clients at once (a third each) give the
// weights the same clients give one at a time, with SM partitions and with
// time slices.
BOOST_AUTO_TEST_CASE(a_pool_of_clients_on_lanes_gives_the_weights_they_give_alone) {
  if (green_contexts_disabled()) return;
  const data::ImageSet set = tiny_set();
  const std::vector<std::vector<int64_t>> parts = {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}};
  fl::LocalTraining local;
  local.batch_size = 2;
  local.epochs = 2;
  const fl::ImageTask task(set, set, tiny_config("cnn"));
  fl::ClientTrainer alone(task, Device::cuda(0));
  const std::vector<float> global = alone.weights();
  std::vector<std::vector<float>> expected;
  for (int64_t client = 0; client < 3; ++client) {
    fl::ClientTask t;
    t.client = client;
    t.seed = 100 + uint64_t(client);
    expected.push_back(alone.train(global, parts[size_t(client)], local, t.seed).weights);
  }
  std::vector<fl::GpuShare> modes = {fl::GpuShare::time_slice};
  if (gpu().lanes().partition) modes.push_back(fl::GpuShare::sm_partition);
  for (const fl::GpuShare mode : modes) {
    fl::ClientPool pool(task, Device::cuda(0), parts, local, 1, mode);
    BOOST_TEST(pool.partitions() == (mode == fl::GpuShare::sm_partition));
    pool.set_global(global);
    for (int64_t client = 0; client < 3; ++client) {
      fl::ClientTask t;
      t.client = t.index = client;
      t.share = 1.0 / 3;
      t.seed = 100 + uint64_t(client);
      pool.start(t);
    }
    for (int seen = 0; seen < 3;) {
      const auto out = pool.finished(1.0);
      if (!out) continue;
      ++seen;
      BOOST_TEST(int(out->status) == int(fl::ClientStatus::ok));
      BOOST_TEST((out->sms > 0) == pool.partitions());
      // The same kernels on other streams: the same bits (1e-6: a GPU's
      // atomics may add in another order).
      const auto& want = expected[size_t(out->task.client)];
      BOOST_REQUIRE(out->result.weights.size() == want.size());
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, double(std::abs(out->result.weights[i] - want[i])));
      BOOST_TEST(worst <= 1e-6, "client " << out->task.client << ": " << worst);
    }
  }
}

// TURBINE_EMU_GREEN_CONTEXTS=0: lanes without partitions, and fedsim's
// choice falls back to time slices (auto) or refuses (sm_partition).
BOOST_AUTO_TEST_CASE(no_green_contexts) {
  if (!green_contexts_disabled()) return;
  const kernels::Backend::LaneSupport support = gpu().lanes();
  BOOST_TEST(support.lanes);
  BOOST_TEST(!support.partition);
  BOOST_TEST(contains(support.why_not, "12.4"), support.why_not);
  on_thread([] {
    BOOST_CHECK_THROW(gpu().open_lane(0.5, true), Error);
    const auto lane = gpu().open_lane(0.5, false);
    BOOST_TEST(lane->units() == 0);
  });
  std::string note;
  BOOST_TEST(!fl::gpu_partitions(Device::cuda(0), fl::GpuShare::automatic, &note));
  BOOST_TEST(contains(note, "time slices"), note);
  try {
    fl::gpu_partitions(Device::cuda(0), fl::GpuShare::sm_partition);
    BOOST_FAIL("sm_partition without green contexts was accepted");
  } catch (const Error& e) {
    BOOST_TEST(contains(e.what(), "budget.gpu_share is sm_partition"), e.what());
  }
}

#include "cuda_test_main.hpp"
