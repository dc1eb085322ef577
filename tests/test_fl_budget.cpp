// fedsim's client budgets and population (lib/fl/budget.hpp,
// lib/fl/population.hpp, MemoryBudget of lib/tensor): a compute share becomes
// the threads and duty cycle configured, and the pacing holds the CPU time
// used to the share of the wall time (checked on fake clocks: no timing);
// the OpenMP threads a budgeted client's kernels see are its threads; a
// memory cap charges every allocation exactly, refunds it on free and throws
// past the cap; device tiers, traces and availability windows are as
// configured and deterministic; bad traces name their line.
#define BOOST_TEST_MODULE fl_budget
#include <omp.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "fl/budget.hpp"
#include "fl/population.hpp"
#include "tensor/tensor.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("turbine_fl_budget_" + name);
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace

BOOST_AUTO_TEST_CASE(shares_become_threads_and_duty_cycles) {
  const fl::CpuBudget quarter(0.25, 1);
  BOOST_TEST(quarter.threads() == 1);
  BOOST_TEST(quarter.duty() == 0.25);
  const fl::CpuBudget half_of_eight(0.5, 8);
  BOOST_TEST(half_of_eight.threads() == 4);
  BOOST_TEST(half_of_eight.duty() == 1.0);
  const fl::CpuBudget odd(0.3, 8);  // 2.4 cores: 3 threads at 80%
  BOOST_TEST(odd.threads() == 3);
  BOOST_TEST(std::abs(odd.duty() - 0.8) < 1e-12);
  BOOST_TEST(contains(error_of([] { fl::CpuBudget(1.5, 4); }), "(0, 1]"));
  BOOST_TEST(contains(error_of([] { fl::CpuBudget(0, 4); }), "(0, 1]"));
}

BOOST_AUTO_TEST_CASE(pacing_holds_cpu_time_to_the_share_of_wall_time) {
  // Fake clocks: each unit of work takes 10 ms of CPU and of wall time; the
  // sleeps advance the wall clock only.
  double cpu = 0, wall = 0;
  fl::CpuBudget budget(0.25, 1);
  budget.start({[&] { return cpu; }, [&] { return wall; }, [&](double s) { wall += s; }});
  for (int step = 0; step < 20; ++step) {
    cpu += 0.01;
    wall += 0.01;
    budget.pace();
    BOOST_TEST(budget.cpu_seconds() <= 0.25 * wall + 1e-12);
  }
  BOOST_TEST(std::abs(wall - 0.2 / 0.25) < 1e-9);  // 4x the work's time
  BOOST_TEST(std::abs(budget.slept_seconds() - 0.6) < 1e-9);
  // Contention that already stretched the wall time needs no more sleep.
  cpu += 0.01;
  wall += 0.05;
  BOOST_TEST(budget.pace() == 0.0);
  // A whole worker is never paced.
  fl::CpuBudget whole(1.0, 1);
  whole.start({[&] { return cpu; }, [&] { return wall; }, [&](double) { BOOST_FAIL("slept"); }});
  cpu += 1;
  BOOST_TEST(whole.pace() == 0.0);
}

BOOST_AUTO_TEST_CASE(a_budgeted_thread_runs_its_kernels_on_its_threads) {
  int seen = 0;
  std::thread([&] {
    fl::CpuBudget budget(0.5, 4);
    budget.start();
#pragma omp parallel
    {
#pragma omp single
      seen = omp_get_num_threads();
    }
  }).join();
  BOOST_TEST(seen == 2);
}

BOOST_AUTO_TEST_CASE(a_memory_cap_charges_every_allocation_and_throws_past_it) {
  auto budget = std::make_shared<MemoryBudget>(int64_t(1) << 20, "client 7");
  {
    ScopedMemoryBudget scope(budget);
    Tensor a = Tensor::zeros({1000}, DType::f32, Device::cpu());
    Tensor b = Tensor::zeros({500}, DType::i64, Device::cpu());
    BOOST_TEST(budget->current_bytes() == 4000 + 4000);
    {
      Tensor c = a.clone();
      BOOST_TEST(budget->current_bytes() == 12000);
    }
    BOOST_TEST(budget->current_bytes() == 8000);
    BOOST_TEST(budget->peak_bytes() == 12000);
    const std::string e = error_of([] { Tensor::empty({300000}, DType::f32, Device::cpu()); });
    BOOST_TEST(contains(e, "client 7: out of memory"));
    BOOST_TEST(contains(e, "cap of 1.0 MiB"));
    BOOST_CHECK_THROW(Tensor::empty({300000}, DType::f32, Device::cpu()), OutOfMemory);
    BOOST_TEST(budget->current_bytes() == 8000);  // the failed allocation charged nothing
  }
  // Outside the scope nothing is charged.
  Tensor d = Tensor::zeros({1000}, DType::f32, Device::cpu());
  BOOST_TEST(budget->current_bytes() == 0);
}

BOOST_AUTO_TEST_CASE(drawn_devices_follow_their_tiers_deterministically) {
  fl::PopulationConfig c;
  c.clients = 4000;
  c.seed = 5;
  c.compute = {0.25, 0.5, 1.0};
  c.compute_weights = {2, 1, 1};
  c.memory_mb = {32, 64};
  c.bandwidth_lo = 1;
  c.bandwidth_hi = 100;
  c.batch_sizes = {16, 32};
  c.local_steps_lo = 5;
  c.local_steps_hi = 10;
  const fl::Population pop(c);
  std::map<double, int> tiers;
  for (int64_t i = 0; i < c.clients; ++i) {
    const auto& p = pop.profile(i);
    ++tiers[p.compute];
    BOOST_TEST((p.memory_mb == 32 || p.memory_mb == 64));
    BOOST_TEST((p.bandwidth_mbps >= 1 && p.bandwidth_mbps <= 100));
    BOOST_TEST((p.batch_size == 16 || p.batch_size == 32));
    BOOST_TEST((p.local_steps >= 5 && p.local_steps <= 10));
  }
  BOOST_TEST(std::abs(tiers[0.25] / 4000.0 - 0.5) < 0.05);
  BOOST_TEST(std::abs(tiers[1.0] / 4000.0 - 0.25) < 0.05);
  const fl::Population again(c);
  for (int64_t i = 0; i < c.clients; i += 97)
    BOOST_TEST(again.profile(i).bandwidth_mbps == pop.profile(i).bandwidth_mbps);
  // 100 MB both ways at 8 Mb/s: 200 s.
  fl::ClientProfile p;
  p.bandwidth_mbps = 8;
  BOOST_TEST(std::abs(p.communication_seconds(100'000'000) - 200) < 1e-9);
  BOOST_TEST(fl::ClientProfile().communication_seconds(100) == 0.0);
}

BOOST_AUTO_TEST_CASE(device_traces_are_dealt_out_and_bad_rows_name_their_line) {
  fl::PopulationConfig c;
  c.clients = 5;
  c.device_trace = write_file("devices.csv",
                              "# a comment\ncompute,memory_mb,bandwidth_mbps\n"
                              "0.25, 64, 10\n1.0,0,0  # fast\n");
  const fl::Population pop(c);
  BOOST_TEST(pop.profile(0).compute == 0.25);
  BOOST_TEST(pop.profile(0).memory_mb == 64);
  BOOST_TEST(pop.profile(1).compute == 1.0);
  BOOST_TEST(pop.profile(4).compute == 0.25);
  auto error_for = [&](const std::string& text) {
    c.device_trace = write_file("bad.csv", text);
    return error_of([&] { fl::Population bad(c); });
  };
  BOOST_TEST(
      contains(error_for("memory_mb\n64\n"), "bad.csv:1: the header lacks the column 'compute'"));
  BOOST_TEST(contains(error_for("compute,speed\n0.5,1\n"), "bad.csv:1: unknown column 'speed'"));
  BOOST_TEST(
      contains(error_for("compute,memory_mb\n0.5,1\n0.5\n"), "bad.csv:3: 1 values for 2 columns"));
  BOOST_TEST(
      contains(error_for("compute\n0.5\nfast\n"), "bad.csv:3: column 'compute' holds 'fast'"));
  BOOST_TEST(contains(error_for("compute\n\n1.5\n"), "bad.csv:3: compute 1.5"));
  BOOST_TEST(contains(error_for("compute\n"), "no rows"));
  c.device_trace = "/nonexistent/devices.csv";
  BOOST_TEST(contains(error_of([&] { fl::Population bad(c); }), "cannot open"));
}

BOOST_AUTO_TEST_CASE(availability_windows_from_traces_and_draws) {
  fl::PopulationConfig c;
  c.clients = 4;
  c.availability_trace =
      write_file("avail.csv", "client,start_s,end_s\n0,0,100\n0,200,300\n1,50,60\n");
  const fl::Population pop(c);
  BOOST_TEST(!pop.always_online());
  BOOST_TEST(pop.online(0, 10));
  BOOST_TEST(pop.online_until(0, 10) == 100);
  BOOST_TEST(!pop.online(0, 150));
  BOOST_TEST(pop.online_until(0, 250) == 300);
  BOOST_TEST(!pop.online(1, 10));
  BOOST_TEST(pop.online(3, 55));  // client 3 takes trace client 3 mod 2 = 1
  c.availability_trace = write_file("bad_avail.csv", "client,start_s\n0,0\n");
  BOOST_TEST(contains(error_of([&] { fl::Population bad(c); }),
                      "bad_avail.csv:1: the header lacks the column 'end_s'"));
  c.availability_trace = write_file("bad_avail.csv", "client,start_s,end_s\n0,5,1\n");
  BOOST_TEST(contains(error_of([&] { fl::Population bad(c); }), "bad_avail.csv:2: window"));

  // Drawn: online about mean_on / (mean_on + mean_off) of the time.
  fl::PopulationConfig d;
  d.clients = 200;
  d.mean_online_s = 300;
  d.mean_offline_s = 100;
  const fl::Population drawn(d);
  int online = 0, samples = 0;
  for (int64_t i = 0; i < d.clients; ++i)
    for (double t = 0; t < 20000; t += 500, ++samples) online += drawn.online(i, t) ? 1 : 0;
  BOOST_TEST(std::abs(double(online) / samples - 0.75) < 0.03);
  for (const fl::Window& w : drawn.windows(3, 5000)) {
    BOOST_TEST(drawn.online(3, w.start));
    BOOST_TEST(drawn.online_until(3, w.start) == w.end);
    BOOST_TEST(!drawn.online(3, w.end));
  }
  const fl::Population always(fl::PopulationConfig{});
  BOOST_TEST(always.online(0, 1e9));
}
