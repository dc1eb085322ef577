// The client compute budget of budget.hpp.
#include "fl/budget.hpp"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <thread>

#include "core/error.hpp"

namespace turbine::fl {

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

CpuBudget::CpuBudget(double share, double cores) : share_(share) {
  TURBINE_CHECK(share > 0 && share <= 1,
                "a client's compute share of a worker must be in (0, 1], got {}", share);
  TURBINE_CHECK(cores >= 1, "a worker has at least one core, got {}", cores);
  cores_ = share * cores;
  threads_ = std::max(1, int(std::ceil(cores_ - 1e-9)));
  duty_ = cores_ / threads_;
}

void CpuBudget::start(Clocks clocks) {
  if (!clocks.cpu) clocks.cpu = thread_cpu_seconds;
  if (!clocks.wall) clocks.wall = steady_seconds;
  if (!clocks.sleep)
    clocks.sleep = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  clocks_ = std::move(clocks);
  omp_set_num_threads(threads_);
  cpu0_ = clocks_.cpu();
  wall0_ = clocks_.wall();
  slept_ = 0;
}

double CpuBudget::cpu_seconds() const {
  return (clocks_.cpu() - cpu0_) * threads_;
}

double CpuBudget::pace() {
  if (duty_ >= 1) return 0;  // whole cores: the threads are the cap
  // The quota allows cores() CPU seconds a wall second: wait until the wall
  // time since start covers what was used.
  const double wait = cpu_seconds() / cores_ - (clocks_.wall() - wall0_);
  if (wait <= 0) return 0;
  clocks_.sleep(wait);
  slept_ += wait;
  return wait;
}

}  // namespace turbine::fl
