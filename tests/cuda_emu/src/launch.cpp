// The device half of the CUDA emulator: kernel launches. A launch is checked
// as the runtime checks it, then its blocks run one after another (in a
// shuffled order) on the calling host thread. Each CUDA thread of a block is
// a fiber (Boost.Context fcontext on a pooled stack with a guard page), and
// a thread runs until it reaches a scheduling point (a barrier, a warp
// collective, an mma) or returns. The scheduler then picks the next runnable
// thread by a seeded random policy drawn per launch (RunQueue): uniformly at
// random, or by random warp priorities redrawn at every barrier, which lets
// one warp run far ahead of another. So two threads that share data without
// a barrier between them see each other's writes in a different order from
// launch to launch, as on a GPU.
//
// Barriers: every thread of the block must reach the same __syncthreads
// call site in each phase; threads meeting at different sites is reported
// as a divergent barrier. A thread that returns while others wait at a
// barrier, or a barrier reached after some thread returned, is reported
// too: CUDA makes a barrier that not all threads reach undefined (real GPUs
// happen to count exited threads as arrived, which hides such bugs).
//
// Shared memory: each __shared__ declaration is carved from a per-block
// arena by the first thread that reaches it, and the dynamic allocation is
// one per launch; both are filled with 0xFF bytes (NaN floats) when a block
// starts, so reading before writing shows up, and followed by canary bytes
// checked when the block ends, so writing past the end does too.
//
// TURBINE_EMU_SEED=<n> fixes the schedule (the seed is printed with every
// report and once per process).
#include <sanitizer/common_interface_defs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>

#include "device_internal.hpp"
#include "host_internal.hpp"

thread_local constinit uint3 threadIdx{0, 0, 0};
thread_local constinit uint3 blockIdx{0, 0, 0};
thread_local constinit dim3 blockDim{1, 1, 1};
thread_local constinit dim3 gridDim{1, 1, 1};

#if defined(__SANITIZE_ADDRESS__)
#define TURBINE_EMU_ASAN 1
#else
#define TURBINE_EMU_ASAN 0
#endif

namespace turbine_emu::device {

namespace {

// Deep enough for the kernels' register arrays and the emulator's frames;
// untouched pages cost nothing. AddressSanitizer's redzones need more.
constexpr size_t kStackBytes = (TURBINE_EMU_ASAN ? 1024 : 256) * 1024;
constexpr size_t kStaticSharedLimit = 48 * 1024;
constexpr size_t kMaxStaticDeclarations = 64;
constexpr size_t kCanaryBytes = 64;
constexpr unsigned char kCanary = 0xA5;
constexpr unsigned char kUnwritten = 0xFF;

uint64_t process_seed() {
  static const uint64_t seed = [] {
    uint64_t s = 0;
    if (const char* env = std::getenv("TURBINE_EMU_SEED"); env != nullptr && *env != '\0') {
      s = std::strtoull(env, nullptr, 0);
    } else {
      std::random_device device;
      s = (uint64_t(device()) << 32) ^ device();
      std::fprintf(stderr,
                   "turbine_emu: schedule seed %llu (TURBINE_EMU_SEED=%llu repeats this run)\n",
                   static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    }
    return s;
  }();
  return seed;
}

// The scheduler of one host thread: its pool of worker fibers and what runs.
struct Scheduler {
  fctx::fcontext_t context = nullptr;  // the scheduler's side, while a worker runs
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Worker*> block_workers;
  Block* block = nullptr;
  Worker* current = nullptr;
  uint64_t launches = 0;
#if TURBINE_EMU_ASAN
  const void* stack_bottom = nullptr;  // the host thread's stack, for ASan's fiber switches
  size_t stack_size = 0;
#endif
  ~Scheduler();
};

thread_local Scheduler scheduler;

void worker_main(fctx::transfer_t from);

Worker& make_worker() {
  auto w = std::make_unique<Worker>();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  w->stack_bytes = kStackBytes + page;
  w->stack = mmap(nullptr, w->stack_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (w->stack == MAP_FAILED) {
    std::fprintf(stderr, "turbine_emu: cannot map a %zu-byte fiber stack\n", w->stack_bytes);
    std::abort();
  }
  mprotect(w->stack, page, PROT_NONE);  // an overflow faults instead of corrupting
  w->context =
      fctx::make_fcontext(static_cast<char*>(w->stack) + w->stack_bytes, kStackBytes, worker_main);
  scheduler.workers.push_back(std::move(w));
  return *scheduler.workers.back();
}

Scheduler::~Scheduler() {
  // Workers are parked between kernels, never in one: their stacks hold no
  // objects that need destroying, so unmapping them is the whole cleanup.
  for (auto& w : workers) munmap(w->stack, w->stack_bytes);
}

// Switches from the scheduler into worker w until it yields or returns.
void resume(Worker& w) {
  scheduler.current = &w;
  threadIdx = w.thread;
#if TURBINE_EMU_ASAN
  void* fake_stack = nullptr;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  __sanitizer_start_switch_fiber(&fake_stack, static_cast<char*>(w.stack) + page, kStackBytes);
#endif
  const fctx::transfer_t back = fctx::jump_fcontext(w.context, &w);
#if TURBINE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  w.context = back.fctx;
  scheduler.current = nullptr;
}

void worker_main(fctx::transfer_t from) {
#if TURBINE_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.stack_bottom, &scheduler.stack_size);
#endif
  scheduler.context = from.fctx;
  Worker& self = *static_cast<Worker*>(from.data);
  for (;;) {
    Block& block = *scheduler.block;
    block.entry(block.closure);
    // Returned from the kernel: leave the block for good.
    if (block.barrier_arrived > 0)
      fatal(
          "returned while %u thread(s) wait at __syncthreads (%s:%u); a barrier must be "
          "reached by every thread of the block",
          block.barrier_arrived, block.barrier_site.file_name(), block.barrier_site.line());
    check_warp_exit(block, self);
    self.state = State::exited;
    ++block.exited;
    yield_to_scheduler();
  }
}

// Fills a region and its canaries: [canary][bytes of 0xFF][canary].
void poison(unsigned char* data, size_t bytes) {
  std::memset(data - kCanaryBytes, kCanary, kCanaryBytes);
  std::memset(data, kUnwritten, bytes);
  std::memset(data + bytes, kCanary, kCanaryBytes);
}

bool canaries_intact(const unsigned char* data, size_t bytes) {
  for (size_t i = 0; i < kCanaryBytes; ++i)
    if (data[-1 - static_cast<ptrdiff_t>(i)] != kCanary || data[bytes + i] != kCanary) return false;
  return true;
}

std::string site_text(const Site& s) {
  char text[512];
  std::snprintf(text, sizeof text, "%s:%u", s.file_name(), s.line());
  return text;
}

void report_deadlock(Block& block) {
  // Group the waiting threads by what they wait for.
  unsigned at_barrier = 0;
  for (unsigned t = 0; t < block.threads; ++t)
    if (block.workers[t]->state == State::barrier) ++at_barrier;
  char warps[2048] = "";
  describe_waiting_collectives(block, warps, sizeof warps);
  char barrier[600] = "";
  if (at_barrier > 0)
    std::snprintf(barrier, sizeof barrier, " %u thread(s) wait at __syncthreads (%s);", at_barrier,
                  site_text(block.barrier_site).c_str());
  fatal("deadlock: no thread of the block can go on (%u of %u returned);%s%s", block.exited,
        block.threads, barrier, warps);
}

void run_block(Block& block) {
  blockIdx = block.index;
  block.runnable.reset(block.policy, block.threads, block.rng);
  block.exited = 0;
  block.barrier_arrived = 0;
  block.static_used = 0;
  block.statics.clear();
  poison(block.dynamic, block.dynamic_bytes);
  for (auto& warp : block.warps) {
    warp.exited = 0;
    warp.pending.clear();
  }
  for (unsigned t = 0; t < block.threads; ++t) {
    Worker& w = *block.workers[t];
    w.thread = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
    w.linear = t;
    w.warp = t / kWarpSize;
    w.lane = t % kWarpSize;
    w.state = State::runnable;
    block.runnable.push(t);
  }
  while (!block.runnable.empty()) resume(*block.workers[block.runnable.pop(block.rng)]);
  if (block.exited != block.threads) report_deadlock(block);
  if (!canaries_intact(block.dynamic, block.dynamic_bytes))
    fatal("a thread wrote outside the %zu bytes of dynamic shared memory (extern __shared__)",
          block.dynamic_bytes);
  for (const StaticShared& s : block.statics)
    if (!canaries_intact(s.data, s.bytes))
      fatal("a thread wrote outside the __shared__ declaration at %s (%zu bytes)",
            site_text(s.site).c_str(), s.bytes);
}

// The i-th block of a permutation of [0, count): offset + i * stride with the
// stride coprime to count, so every block runs once, in a shuffled order.
struct BlockOrder {
  uint64_t count, offset = 0, stride = 1;
  BlockOrder(uint64_t n, Rng& rng) : count(n) {
    if (n < 2) return;
    offset = rng.below(n);
    for (int attempt = 0; attempt < 16; ++attempt) {
      const uint64_t s = 1 + rng.below(n - 1);
      if (std::gcd(s, n) == 1) {
        stride = s;
        break;
      }
    }
  }
  uint64_t operator[](uint64_t i) const {
    return static_cast<uint64_t>((offset + static_cast<unsigned __int128>(i) * stride) % count);
  }
};

[[noreturn]] void vfatal(const char* format, va_list args) {
  const Block* block = scheduler.block;
  const Worker* w = scheduler.current;
  char message[4096];
  std::vsnprintf(message, sizeof message, format, args);
  if (block != nullptr) {
    std::fprintf(stderr, "turbine_emu: kernel %s (launched at %s), block (%u,%u,%u)",
                 block->config->name, site_text(block->config->site).c_str(), block->index.x,
                 block->index.y, block->index.z);
    if (w != nullptr)
      std::fprintf(stderr, ", thread (%u,%u,%u) [warp %u lane %u]", w->thread.x, w->thread.y,
                   w->thread.z, w->warp, w->lane);
    std::fprintf(stderr, ": %s\n", message);
  } else {
    std::fprintf(stderr, "turbine_emu: %s\n", message);
  }
  std::fprintf(stderr, "turbine_emu: schedule seed %llu (TURBINE_EMU_SEED=%llu repeats it)\n",
               static_cast<unsigned long long>(process_seed()),
               static_cast<unsigned long long>(process_seed()));
  std::fflush(stderr);
  std::abort();
}

}  // namespace

void RunQueue::reset(Policy policy, unsigned threads, Rng& rng) {
  policy_ = policy;
  threads_.clear();
  threads_.reserve(threads);
  warp_rank_.resize((threads + kWarpSize - 1) / kWarpSize);
  for (unsigned i = 0; i < 32; ++i) lane_rank_[i] = static_cast<uint8_t>(i);
  for (unsigned i = 31; i > 0; --i) std::swap(lane_rank_[i], lane_rank_[rng.below(i + 1)]);
  shuffle_priorities(rng);
}

void RunQueue::shuffle_priorities(Rng& rng) {
  for (size_t i = 0; i < warp_rank_.size(); ++i) warp_rank_[i] = static_cast<uint8_t>(i);
  for (size_t i = warp_rank_.size(); i > 1; --i)
    std::swap(warp_rank_[i - 1], warp_rank_[rng.below(i)]);
}

void RunQueue::push(unsigned thread) {
  threads_.push_back(thread);
  if (policy_ == Policy::warp_priority)
    std::push_heap(threads_.begin(), threads_.end(),
                   [this](unsigned a, unsigned b) { return key(a) < key(b); });
}

unsigned RunQueue::pop(Rng& rng) {
  if (policy_ == Policy::warp_priority) {
    std::pop_heap(threads_.begin(), threads_.end(),
                  [this](unsigned a, unsigned b) { return key(a) < key(b); });
  } else {
    std::swap(threads_[rng.below(threads_.size())], threads_.back());
  }
  const unsigned thread = threads_.back();
  threads_.pop_back();
  return thread;
}

Block* running_block() {
  return scheduler.block;
}
Worker* running_worker() {
  return scheduler.current;
}

void wake(Block& block, Worker& w) {
  w.state = State::runnable;
  block.runnable.push(w.linear);
}

void yield_to_scheduler() {
#if TURBINE_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, scheduler.stack_bottom, scheduler.stack_size);
#endif
  const fctx::transfer_t back = fctx::jump_fcontext(scheduler.context, nullptr);
#if TURBINE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &scheduler.stack_bottom, &scheduler.stack_size);
#endif
  scheduler.context = back.fctx;
}

bool same_site(const Site& a, const Site& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

void fatal(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vfatal(format, args);
}

}  // namespace turbine_emu::device

namespace turbine_emu {

using device::Block;
using device::fatal;
using device::scheduler;
using device::State;
using device::Worker;

int block_barrier(BarrierReduce reduce, int predicate, const Site& site) {
  Block* block = device::running_block();
  Worker* w = device::running_worker();
  if (block == nullptr || w == nullptr)
    fatal("__syncthreads at %s outside a kernel", device::site_text(site).c_str());
  if (block->exited > 0)
    fatal(
        "reached __syncthreads at %s after %u thread(s) of the block returned: a barrier must "
        "be reached by every thread of the block",
        device::site_text(site).c_str(), block->exited);
  if (block->barrier_arrived == 0) {
    block->barrier_site = site;
    block->barrier_reduce = reduce;
    block->barrier_value = reduce == BarrierReduce::all ? 1 : 0;
  } else if (!device::same_site(site, block->barrier_site) || reduce != block->barrier_reduce) {
    fatal("divergent __syncthreads: this thread is at %s while %u other(s) wait at %s",
          device::site_text(site).c_str(), block->barrier_arrived,
          device::site_text(block->barrier_site).c_str());
  }
  const int p = predicate != 0;
  switch (reduce) {
    case BarrierReduce::none:
      break;
    case BarrierReduce::count:
      block->barrier_value += p;
      break;
    case BarrierReduce::all:
      block->barrier_value &= p;
      break;
    case BarrierReduce::any:
      block->barrier_value |= p;
      break;
  }
  w->state = State::barrier;
  w->site = site;
  if (++block->barrier_arrived == block->threads) {
    block->barrier_arrived = 0;
    block->runnable.shuffle_priorities(block->rng);
    for (unsigned t = 0; t < block->threads; ++t) {
      block->workers[t]->barrier_result = block->barrier_value;
      device::wake(*block, *block->workers[t]);
    }
  }
  device::yield_to_scheduler();
  return w->barrier_result;
}

void* static_shared_storage(const void* key, size_t bytes, size_t align, const Site& site) {
  Block* block = device::running_block();
  if (block == nullptr)
    fatal("__shared__ declaration at %s used outside a kernel", device::site_text(site).c_str());
  for (const device::StaticShared& s : block->statics)
    if (s.key == key) return s.data;
  const size_t start =
      (block->static_used + device::kCanaryBytes + std::max<size_t>(align, 16) - 1) /
      std::max<size_t>(align, 16) * std::max<size_t>(align, 16);
  size_t total = bytes;
  for (const device::StaticShared& s : block->statics) total += s.bytes;
  if (total > device::kStaticSharedLimit || block->statics.size() == device::kMaxStaticDeclarations)
    fatal(
        "the kernel's static __shared__ memory (%zu bytes with the declaration at %s) exceeds "
        "the 48 KiB limit",
        total, device::site_text(site).c_str());
  if (max_dynamic_shared_bytes(block->config->kernel) <= kDefaultDynamicShared &&
      total + block->dynamic_bytes > kDefaultDynamicShared)
    fatal(
        "static (%zu) plus dynamic (%zu) shared memory exceed 48 KiB without "
        "cudaFuncAttributeMaxDynamicSharedMemorySize: the launch fails on a GPU",
        total, block->dynamic_bytes);
  unsigned char* data = block->static_arena + start;
  device::poison(data, bytes);
  block->static_used = start + bytes;
  block->statics.push_back({key, data, bytes, site});
  return data;
}

void* dynamic_shared_storage(const Site& site) {
  Block* block = device::running_block();
  if (block == nullptr)
    fatal("extern __shared__ at %s used outside a kernel", device::site_text(site).c_str());
  return block->dynamic;
}

bool check_launch(const LaunchConfig& config) {
  const auto refuse = [&](cudaError_t err, const char* why, auto... args) {
    char message[512];
    std::snprintf(message, sizeof message, why, args...);
    fail(err, "kernel launch", "%s (launched at %s): %s", config.name,
         device::site_text(config.site).c_str(), message);
    return false;
  };
  const dim3 b = config.block, g = config.grid;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      threads > uint64_t(kMaxThreadsPerBlock))
    return refuse(cudaErrorInvalidConfiguration,
                  "block (%u,%u,%u) is empty or over the limits "
                  "(1024 threads, 1024 x 1024 x 64)",
                  b.x, b.y, b.z);
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
    return refuse(cudaErrorInvalidConfiguration,
                  "grid (%u,%u,%u) is empty or over the limits (2^31 - 1 x 65535 x 65535)", g.x,
                  g.y, g.z);
  const size_t allowed = max_dynamic_shared_bytes(config.kernel);
  if (config.dynamic_shared > allowed)
    return refuse(cudaErrorInvalidValue,
                  "%zu bytes of dynamic shared memory requested, %zu allowed (above 48 KiB "
                  "a kernel must opt in with cudaFuncSetAttribute)",
                  config.dynamic_shared, allowed);
  if (check_launch_stream(config.stream) != cudaSuccess) return false;
  return true;
}

void reject_pointer_argument(const LaunchConfig& config, int index, const void* pointer) {
  fail(cudaErrorInvalidValue, "kernel launch",
       "kernel %s argument %d is not device memory: %p is %s (launched at %s)", config.name, index,
       pointer,
       is_freed_device_pointer(pointer) ? "in a freed device allocation"
                                        : "host memory or outside any allocation",
       device::site_text(config.site).c_str());
}

void run_grid(const LaunchConfig& config, void (*entry)(const void*), const void* closure) {
  device::Scheduler& s = scheduler;
  if (s.block != nullptr) fatal("kernel %s launched from a kernel (not emulated)", config.name);
  const unsigned threads = config.block.x * config.block.y * config.block.z;
  while (s.workers.size() < threads) device::make_worker();

  device::Rng rng{device::process_seed() ^ (0x5851f42d4c957f2dull * ++s.launches)};
  rng.next();
  std::vector<unsigned char> static_arena(device::kStaticSharedLimit +
                                          (device::kMaxStaticDeclarations + 1) *
                                              (device::kCanaryBytes + 16));
  std::vector<unsigned char> dynamic(config.dynamic_shared + 2 * device::kCanaryBytes + 16);
  unsigned char* dynamic_start = dynamic.data() + device::kCanaryBytes;
  dynamic_start += (16 - reinterpret_cast<uintptr_t>(dynamic_start) % 16) % 16;

  s.block_workers.resize(threads);
  for (unsigned t = 0; t < threads; ++t) s.block_workers[t] = s.workers[t].get();
  Block block;
  block.config = &config;
  block.entry = entry;
  block.closure = closure;
  block.threads = threads;
  block.workers = s.block_workers.data();
  block.rng = rng;
  // A third of the launches take threads uniformly at random, the others by
  // warp priority (see RunQueue).
  block.policy = rng.below(3) == 0 ? device::RunQueue::Policy::uniform
                                   : device::RunQueue::Policy::warp_priority;
  block.static_arena = static_arena.data();
  block.dynamic = dynamic_start;
  block.dynamic_bytes = config.dynamic_shared;
  block.warps.resize((threads + kWarpSize - 1) / kWarpSize);
  for (unsigned w = 0; w < block.warps.size(); ++w) {
    const unsigned lanes = std::min<unsigned>(kWarpSize, threads - w * kWarpSize);
    block.warps[w].lanes = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  }

  gridDim = config.grid;
  blockDim = config.block;
  s.block = &block;
  const uint64_t blocks = uint64_t(config.grid.x) * config.grid.y * config.grid.z;
  const device::BlockOrder order(blocks, block.rng);
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t linear = order[i];
    block.index = {static_cast<unsigned>(linear % config.grid.x),
                   static_cast<unsigned>(linear / config.grid.x % config.grid.y),
                   static_cast<unsigned>(linear / (uint64_t(config.grid.x) * config.grid.y))};
    device::run_block(block);
  }
  s.block = nullptr;
  threadIdx = blockIdx = {0, 0, 0};
  gridDim = blockDim = dim3{1, 1, 1};
}

}  // namespace turbine_emu
