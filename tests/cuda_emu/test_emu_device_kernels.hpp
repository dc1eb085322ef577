// Host entry points of test_emu_device_kernels.cu: small kernels that
// exercise the emulator's device half (barriers, shuffles, votes, mma,
// shared memory, launch checks), each launched with <<<...>>> through
// rewrite_cu.py like kernels/cuda. Pointers are device memory unless a
// test passes something else on purpose.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emu_test {

// out[i] = the value thread i + 1 (mod n) stored in shared memory; with
// `barrier` false the read races with the write.
void rotate_through_shared(float* out, unsigned threads, bool barrier);
// Warp 1 reads what warp 0 wrote to shared memory, without a barrier.
void cross_warp_race(float* out);
// out[0..2] = __syncthreads_or / _and / _count of (threadIdx.x == chosen).
void barrier_votes(int* out, unsigned threads, unsigned chosen);
// out[lane] for 64 threads: warp sum (xor butterfly), broadcast of lane 5,
// width-16 shuffle, up, down, a double and an int64 shuffle, ballot.
void shuffles(int64_t* out);
// Every block writes its linear index to out[index] (a grid of blocks x 1).
void mark_blocks(int* out, unsigned blocks_x, unsigned blocks_y);
// out[t] for thread t of each block: whether shared (static and dynamic)
// memory read back as 0xFF before this block wrote it.
void shared_starts_unwritten(int* out, unsigned blocks, unsigned threads, size_t dynamic_bytes);
// d (32 lanes x 4) += mma of per-lane fragments a (32 x 4), b (32 x 2).
void mma(bool bf16, float* d, const uint32_t* a, const uint32_t* b);
// *flag = 1 from a one-thread kernel launched with the given shape.
void set_flag(int* flag, unsigned grid_x, unsigned grid_y, unsigned block_x, unsigned block_y,
              size_t dynamic_bytes);
// Opts set_flag's kernel in to `bytes` of dynamic shared memory.
void allow_dynamic_shared(size_t bytes);

// Kernels with bugs; each must make the emulator abort.
void divergent_barrier();
void barrier_after_return();
void shuffle_with_returned_lane();
void divergent_shuffle();
void deadlock_shuffle_against_barrier();
void shared_overflow();
void shuffle_reads_lane_outside_mask();

}  // namespace emu_test
