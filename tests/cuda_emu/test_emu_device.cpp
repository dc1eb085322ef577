// The CUDA emulator's device half, tested on its own: barriers order shared
// memory under the random schedule and a missing one shows, votes and
// shuffles exchange the right values, mma matches a plain product in the
// PTX ISA's fragment layouts, shared memory starts unwritten (0xFF) in every
// block, launches are refused as the runtime refuses them, and kernel bugs
// (divergent barriers and shuffles, exits that a barrier or shuffle waits
// for, deadlocks, shared-memory overflows) abort with a report naming the
// source line. The aborting cases run in a forked child.
#define BOOST_TEST_MODULE emu_device
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "tests/cuda_emu/test_emu_device_kernels.hpp"

namespace {

// A device buffer of n T, freed at scope exit.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n, int byte = 0) : n_(n) {
    BOOST_REQUIRE_EQUAL(cudaMalloc(&ptr_, n * sizeof(T)), cudaSuccess);
    BOOST_REQUIRE_EQUAL(cudaMemset(ptr_, byte, n * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  std::vector<T> read() const {
    std::vector<T> host(n_);
    BOOST_REQUIRE_EQUAL(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost),
                        cudaSuccess);
    return host;
  }
  void write(const std::vector<T>& host) {
    BOOST_REQUIRE_EQUAL(host.size(), n_);
    BOOST_REQUIRE_EQUAL(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice),
                        cudaSuccess);
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// Runs fn in a child process and returns its stderr; the child must abort.
std::string stderr_of_aborting(const std::function<void()>& fn) {
  int pipe_fds[2];
  BOOST_REQUIRE_EQUAL(pipe(pipe_fds), 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    close(pipe_fds[0]);
    dup2(pipe_fds[1], STDERR_FILENO);
    std::signal(SIGABRT, SIG_DFL);  // Boost.Test's handler would catch the abort
    fn();
    std::_Exit(0);  // no abort: the parent reports it
  }
  close(pipe_fds[1]);
  std::string output;
  char chunk[4096];
  for (ssize_t got; (got = read(pipe_fds[0], chunk, sizeof chunk)) > 0;)
    output.append(chunk, static_cast<size_t>(got));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  BOOST_TEST_INFO("child stderr: " << output);
  BOOST_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  return output;
}

// "test_emu_device_kernels.cu:N" for the line marked "// site: name" there.
std::string site(const std::string& name) {
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  BOOST_REQUIRE_MESSAGE(root != nullptr, "TURBINE_SOURCE_ROOT is not set");
  std::ifstream in(std::string(root) + "/tests/cuda_emu/test_emu_device_kernels.cu");
  BOOST_REQUIRE(in.good());
  std::string line;
  for (int number = 1; std::getline(in, line); ++number)
    if (line.ends_with("// site: " + name))
      return "test_emu_device_kernels.cu:" + std::to_string(number);
  BOOST_FAIL("no line marked " + name);
  return {};
}

void check_abort(const std::function<void()>& fn, const std::vector<std::string>& expected) {
  const std::string output = stderr_of_aborting(fn);
  for (const std::string& text : expected) {
    BOOST_TEST_INFO("stderr: " << output);
    BOOST_CHECK(output.find(text) != std::string::npos);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(barrier_orders_shared_memory) {
  for (unsigned threads : {32u, 96u, 256u, 1024u}) {
    DeviceBuffer<float> out(threads);
    for (int repeat = 0; repeat < 5; ++repeat) {
      emu_test::rotate_through_shared(out.get(), threads, true);
      BOOST_REQUIRE_EQUAL(cudaGetLastError(), cudaSuccess);
      const std::vector<float> got = out.read();
      for (unsigned t = 0; t < threads; ++t) BOOST_REQUIRE_EQUAL(got[t], float((t + 1) % threads));
    }
  }
}

BOOST_AUTO_TEST_CASE(missing_barrier_reads_unwritten_shared_memory) {
  // Without the barrier some thread runs before its neighbour has written:
  // it reads 0xFF bytes, a NaN.
  DeviceBuffer<float> out(256);
  emu_test::rotate_through_shared(out.get(), 256, false);
  int nan = 0;
  for (float x : out.read()) nan += std::isnan(x);
  BOOST_TEST(nan > 0);

  // The planted race across warps: warp 1 reads what warp 0 writes. A
  // schedule may run all of warp 0 first (as a GPU may), but hardly twenty
  // in a row: at most a third of them do.
  DeviceBuffer<float> race(32);
  int racy_launches = 0;
  for (int launch = 0; launch < 20; ++launch) {
    emu_test::cross_warp_race(race.get());
    nan = 0;
    for (float x : race.read()) nan += std::isnan(x);
    racy_launches += nan > 0;
  }
  BOOST_TEST(racy_launches > 0);
}

BOOST_AUTO_TEST_CASE(barrier_votes) {
  DeviceBuffer<int> out(3);
  emu_test::barrier_votes(out.get(), 128, 77);
  BOOST_TEST(out.read() == (std::vector<int>{1, 0, 1}), boost::test_tools::per_element());
  emu_test::barrier_votes(out.get(), 128, 1000);  // no thread chosen
  BOOST_TEST(out.read() == (std::vector<int>{0, 0, 0}), boost::test_tools::per_element());
  emu_test::barrier_votes(out.get(), 1, 0);  // the only thread
  BOOST_TEST(out.read() == (std::vector<int>{1, 1, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(shuffles_and_ballot) {
  DeviceBuffer<int64_t> out(64 * 8);
  emu_test::shuffles(out.get());
  BOOST_REQUIRE_EQUAL(cudaGetLastError(), cudaSuccess);
  const std::vector<int64_t> got = out.read();
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    const int64_t* row = &got[size_t(t) * 8];
    BOOST_TEST_CONTEXT("thread " << t) {
      BOOST_TEST(row[0] == 31 * 32 / 2);
      BOOST_TEST(row[1] == 50);
      BOOST_TEST(row[2] == (lane < 16 ? 3 : 19));
      BOOST_TEST(row[3] == (lane >= 2 ? lane - 2 : lane));  // below the segment: own value
      BOOST_TEST(row[4] == (lane < 30 ? lane + 2 : lane));
      BOOST_TEST(row[5] == 2 * (lane ^ 1) + 1);
      BOOST_TEST(row[6] == int64_t(31) << 40);
      BOOST_TEST(row[7] == 0x49249249);  // lanes 0, 3, 6, ..., 30
    }
  }
}

BOOST_AUTO_TEST_CASE(every_block_runs_once) {
  DeviceBuffer<int> out(37 * 5);
  emu_test::mark_blocks(out.get(), 37, 5);
  const std::vector<int> got = out.read();
  for (int i = 0; i < 37 * 5; ++i) BOOST_REQUIRE_EQUAL(got[size_t(i)], 1 + i);
}

BOOST_AUTO_TEST_CASE(shared_memory_starts_unwritten_in_every_block) {
  const unsigned blocks = 3, threads = 64;
  DeviceBuffer<int> out(blocks * threads);
  emu_test::shared_starts_unwritten(out.get(), blocks, threads, 1000);
  BOOST_REQUIRE_EQUAL(cudaGetLastError(), cudaSuccess);
  for (int fresh : out.read()) BOOST_REQUIRE_EQUAL(fresh, 1);
}

namespace {

// The m16n8k16 product on the emulator against a plain one: fragments built
// from row-major A (16 x 16), B (16 x 8) and C (16 x 8) by the PTX ISA's
// rules, D read back the same way.
void check_mma(bool bf16) {
  std::mt19937 gen(bf16 ? 1 : 2);
  std::normal_distribution<float> normal;
  const auto bits = [&](float x) {
    return bf16 ? turbine_emu::f32_to_bf16_bits(x) : turbine_emu::f32_to_f16_bits(x);
  };
  const auto value = [&](uint16_t h) {
    return bf16 ? turbine_emu::bf16_bits_to_f32(h) : turbine_emu::f16_bits_to_f32(h);
  };
  uint16_t a[16][16], b[16][8];
  float c[16][8];
  for (auto& row : a)
    for (auto& x : row) x = bits(normal(gen));
  for (auto& row : b)
    for (auto& x : row) x = bits(normal(gen));
  for (auto& row : c)
    for (auto& x : row) x = normal(gen);
  std::vector<uint32_t> fa(32 * 4), fb(32 * 2);
  std::vector<float> fd(32 * 4);
  for (unsigned lane = 0; lane < 32; ++lane) {
    const unsigned g = lane / 4, t = lane % 4;
    const auto pair = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | uint32_t(hi) << 16; };
    fa[lane * 4 + 0] = pair(a[g][2 * t], a[g][2 * t + 1]);
    fa[lane * 4 + 1] = pair(a[g + 8][2 * t], a[g + 8][2 * t + 1]);
    fa[lane * 4 + 2] = pair(a[g][2 * t + 8], a[g][2 * t + 9]);
    fa[lane * 4 + 3] = pair(a[g + 8][2 * t + 8], a[g + 8][2 * t + 9]);
    fb[lane * 2 + 0] = pair(b[2 * t][g], b[2 * t + 1][g]);
    fb[lane * 2 + 1] = pair(b[2 * t + 8][g], b[2 * t + 9][g]);
    fd[lane * 4 + 0] = c[g][2 * t];
    fd[lane * 4 + 1] = c[g][2 * t + 1];
    fd[lane * 4 + 2] = c[g + 8][2 * t];
    fd[lane * 4 + 3] = c[g + 8][2 * t + 1];
  }
  DeviceBuffer<uint32_t> da(fa.size()), db(fb.size());
  DeviceBuffer<float> dd(fd.size());
  da.write(fa);
  db.write(fb);
  dd.write(fd);
  emu_test::mma(bf16, dd.get(), da.get(), db.get());
  BOOST_REQUIRE_EQUAL(cudaGetLastError(), cudaSuccess);
  const std::vector<float> got = dd.read();
  for (unsigned lane = 0; lane < 32; ++lane) {
    const unsigned g = lane / 4, t = lane % 4;
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned m = i < 2 ? g : g + 8, n = 2 * t + i % 2;
      double expect = c[m][n];
      for (int k = 0; k < 16; ++k) expect += double(value(a[m][k])) * value(b[k][n]);
      BOOST_TEST_CONTEXT("lane " << lane << " element " << i) {
        BOOST_TEST(got[lane * 4 + i] == float(expect));
      }
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(mma_matches_a_plain_product) {
  check_mma(true);
  check_mma(false);
}

BOOST_AUTO_TEST_CASE(launch_checks) {
  DeviceBuffer<int> flag(1);
  const auto ran = [&] {
    const bool was = flag.read()[0] == 1;
    flag.write({0});
    return was;
  };
  emu_test::set_flag(flag.get(), 2, 3, 32, 4, 0);
  BOOST_TEST(cudaGetLastError() == cudaSuccess);
  BOOST_TEST(ran());

  emu_test::set_flag(flag.get(), 1, 1, 0, 1, 0);  // empty block
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  BOOST_TEST(!ran());
  emu_test::set_flag(flag.get(), 1, 1, 1025, 1, 0);  // too many threads
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  emu_test::set_flag(flag.get(), 1, 1, 64, 32, 0);  // 2048 threads
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  emu_test::set_flag(flag.get(), 0, 1, 32, 1, 0);  // empty grid
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  emu_test::set_flag(flag.get(), 1, 65536, 32, 1, 0);  // grid y over 65535
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  BOOST_TEST(!ran());

  // Above 48 KiB of dynamic shared memory only after opting in.
  emu_test::set_flag(flag.get(), 1, 1, 32, 1, 64 * 1024);
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidValue);
  BOOST_TEST(!ran());
  emu_test::allow_dynamic_shared(64 * 1024);
  emu_test::set_flag(flag.get(), 1, 1, 32, 1, 64 * 1024);
  BOOST_TEST(cudaGetLastError() == cudaSuccess);
  BOOST_TEST(ran());

  // Host memory and freed device memory are not kernel arguments.
  int host_flag = 0;
  emu_test::set_flag(&host_flag, 1, 1, 32, 1, 0);
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidValue);
  BOOST_TEST(host_flag == 0);
  int* freed = nullptr;
  BOOST_REQUIRE_EQUAL(cudaMalloc(&freed, sizeof(int)), cudaSuccess);
  BOOST_REQUIRE_EQUAL(cudaFree(freed), cudaSuccess);
  emu_test::set_flag(freed, 1, 1, 32, 1, 0);
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidValue);
}

BOOST_AUTO_TEST_CASE(kernel_bugs_abort_with_the_source_line) {
  check_abort(emu_test::divergent_barrier,
              {"divergent __syncthreads", site("divergent-a"), site("divergent-b")});
  check_abort(emu_test::barrier_after_return, {"__syncthreads", "returned", site("after-return")});
  check_abort(emu_test::shuffle_with_returned_lane, {"returned", "__shfl_xor_sync"});
  check_abort(emu_test::divergent_shuffle,
              {"divergent warp collective", site("shuffle-a"), site("shuffle-b")});
  check_abort(emu_test::deadlock_shuffle_against_barrier,
              {"deadlock", "__syncthreads", "__shfl_sync", site("deadlock-shuffle"),
               site("deadlock-barrier")});
  check_abort(emu_test::shared_overflow, {"wrote outside", site("overflow")});
  check_abort(emu_test::shuffle_reads_lane_outside_mask, {"not in the mask", site("outside-mask")});
}
