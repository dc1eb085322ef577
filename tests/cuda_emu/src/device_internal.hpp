// What the device half of the emulator shares between launch.cpp (fibers,
// blocks, barriers, shared memory) and device_warp.cpp (warp collectives and
// mma): the state of the running block and its threads, the switch back to
// the scheduler, and the fatal report of a kernel bug.
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <turbine_emu/common.hpp>
#include <turbine_emu/device.hpp>
#include <vector>

namespace turbine_emu::device {

namespace fctx = boost::context::detail;

enum class State : uint8_t { runnable, barrier, collective, exited };

// A lane's operands of a warp-wide mma, on its own stack while it waits.
struct MmaOperands {
  float* d;
  const uint32_t* a;
  const uint32_t* b;
};

// One emulated CUDA thread: a fiber with its own stack that runs the kernel
// body for one thread of a block, then waits to be handed the next block.
struct Worker {
  fctx::fcontext_t context = nullptr;  // where to resume it
  void* stack = nullptr;               // mapping, guard page first
  size_t stack_bytes = 0;
  uint3 thread{0, 0, 0};
  unsigned linear = 0, warp = 0, lane = 0;
  State state = State::runnable;
  Site site;  // where it waits
  int barrier_result = 0;
  uint64_t value = 0;  // a collective's operand, then its result
  int argument = 0;    // a shuffle's source lane, lane mask or delta
  MmaOperands mma{};
};

// A warp collective that some lanes of `mask` have reached.
enum class CollectiveKind : uint8_t { warp_op, mma_bf16, mma_f16 };
struct Collective {
  CollectiveKind kind;
  WarpOp op;
  unsigned mask;
  int width;
  Site site;
  unsigned arrived = 0;
};

struct WarpState {
  unsigned lanes = 0;   // lanes that exist (a last partial warp has fewer)
  unsigned exited = 0;  // lanes whose thread has returned
  std::vector<Collective> pending;
};

struct StaticShared {
  const void* key;
  unsigned char* data;
  size_t bytes;
  Site site;
};

// splitmix64: the scheduler's choices, from the launch's seed.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// The runnable threads of a block and the order the scheduler takes them in.
// Uniform: any runnable thread, at random. Warp priority: the runnable thread
// of the highest-priority warp (lanes in a random order), with the warps'
// priorities drawn again at every barrier, so that one warp runs as far as
// it can before another starts: the schedule that exposes a reader that a
// barrier no longer holds back (uniform choices almost never starve one
// thread that long).
class RunQueue {
 public:
  enum class Policy : uint8_t { uniform, warp_priority };

  void reset(Policy policy, unsigned threads, Rng& rng);
  // New warp priorities (at a barrier, when no thread is runnable).
  void shuffle_priorities(Rng& rng);
  void push(unsigned thread);
  unsigned pop(Rng& rng);
  bool empty() const { return threads_.empty(); }
  Policy policy() const { return policy_; }

 private:
  uint32_t key(unsigned thread) const {
    return (uint32_t(warp_rank_[thread / 32]) << 5) | lane_rank_[thread % 32];
  }
  Policy policy_ = Policy::uniform;
  std::vector<unsigned> threads_;   // uniform: a bag; warp priority: a heap by key
  std::vector<uint8_t> warp_rank_;  // higher runs first
  uint8_t lane_rank_[32] = {};
};

// The block being run on this host thread.
struct Block {
  const LaunchConfig* config = nullptr;
  void (*entry)(const void*) = nullptr;
  const void* closure = nullptr;
  uint3 index{0, 0, 0};
  unsigned threads = 0;
  Worker* const* workers = nullptr;  // [threads], by linear thread index
  RunQueue::Policy policy = RunQueue::Policy::uniform;
  RunQueue runnable;
  unsigned exited = 0;
  Rng rng{0};

  // The barrier phase in progress.
  unsigned barrier_arrived = 0;
  Site barrier_site;
  BarrierReduce barrier_reduce = BarrierReduce::none;
  int barrier_value = 0;

  std::vector<WarpState> warps;

  // Shared memory: static declarations carved from an arena, and the
  // launch's dynamic allocation, each followed by canary bytes.
  unsigned char* static_arena = nullptr;
  size_t static_used = 0;
  std::vector<StaticShared> statics;
  unsigned char* dynamic = nullptr;
  size_t dynamic_bytes = 0;
};

// The running block and thread of this host thread (null outside kernels).
Block* running_block();
Worker* running_worker();

// Makes `w` runnable again (after a barrier or collective completes).
void wake(Block& block, Worker& w);

// Suspends the running thread until the scheduler resumes it.
void yield_to_scheduler();

// Whether two call sites are the same.
bool same_site(const Site& a, const Site& b);

// Reports a kernel bug at the running thread (kernel, block, thread, the
// schedule's seed) and aborts: the launch cannot go on meaningfully.
[[noreturn]] void fatal(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Called when a thread returns from the kernel: an exit that a barrier or a
// collective waits for is a bug (launch.cpp checks the barrier, this the warp).
void check_warp_exit(Block& block, Worker& w);

// The warp-level part of a deadlock report: who waits where, for whom.
void describe_waiting_collectives(const Block& block, char* out, size_t size);

}  // namespace turbine_emu::device
