// Warp collectives of the emulated device: shuffles, votes, __syncwarp and
// the m16n8k16 tensor-core mma. A collective completes when every lane of
// its mask has arrived at it; until then the arrived lanes wait (other
// threads run). Every lane of the mask must call the same collective at the
// same call site with the same mask, include itself in the mask, and not
// have returned; a shuffle may only read lanes of its mask. Breaking any of
// these is undefined on a GPU and reported here.
//
// The mma fragments follow the PTX ISA ("Matrix Fragments for mma.m16n8k16
// with floating point type"), with groupID = lane >> 2 and
// threadID_in_group = lane % 4, each 32-bit register holding two 16-bit
// elements, the lower-numbered one in the low half:
//   A (16 x 16, row):  a_i at row groupID (i in 0,1,4,5) or groupID + 8,
//                      column 2 * threadID_in_group + (i & 1) (+ 8 for i >= 4)
//   B (16 x 8, col):   b_i at row 2 * threadID_in_group + (i & 1) (+ 8 for
//                      i >= 2), column groupID
//   C, D (16 x 8 f32): c_i at row groupID (i < 2) or groupID + 8, column
//                      2 * threadID_in_group + (i & 1)
// The products are exact in double and each D element is C plus the sum
// of its 16 products, rounded once to f32 (tensor cores add in f32 with
// their own order and truncation; the differences are far below the
// 16-bit inputs' rounding).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "device_internal.hpp"

namespace turbine_emu::device {

namespace {

const char* op_name(const Collective& c) {
  if (c.kind == CollectiveKind::mma_bf16) return "mma.m16n8k16 (bf16)";
  if (c.kind == CollectiveKind::mma_f16) return "mma.m16n8k16 (f16)";
  switch (c.op) {
    case WarpOp::shfl_idx:
      return "__shfl_sync";
    case WarpOp::shfl_xor:
      return "__shfl_xor_sync";
    case WarpOp::shfl_up:
      return "__shfl_up_sync";
    case WarpOp::shfl_down:
      return "__shfl_down_sync";
    case WarpOp::ballot:
      return "__ballot_sync";
    case WarpOp::any:
      return "__any_sync";
    case WarpOp::all:
      return "__all_sync";
    case WarpOp::sync:
      return "__syncwarp";
  }
  return "a warp collective";
}

std::string lanes_text(unsigned mask) {
  std::string text;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (!(mask & (1u << lane))) continue;
    text += text.empty() ? "" : ",";
    text += std::to_string(lane);
  }
  return text;
}

// The source lane of a shuffle, or -1 when the lane keeps its own value.
int shuffle_source(WarpOp op, unsigned lane, int argument, int width) {
  const unsigned base = lane & ~unsigned(width - 1);
  switch (op) {
    case WarpOp::shfl_idx:
      return int(base + (unsigned(argument) & unsigned(width - 1)));
    case WarpOp::shfl_xor: {
      const unsigned source = lane ^ unsigned(argument);
      return source >= base && source < base + unsigned(width) ? int(source) : -1;
    }
    case WarpOp::shfl_up:
      return int(lane) - argument >= int(base) ? int(lane) - argument : -1;
    case WarpOp::shfl_down:
      return lane + unsigned(argument) < base + unsigned(width) ? int(lane) + argument : -1;
    default:
      return -1;
  }
}

template <class Convert>
void mma(Worker* const* lanes, Convert to_float) {
  float a[16][16], b[16][8], c[16][8];
  for (unsigned lane = 0; lane < 32; ++lane) {
    const MmaOperands& m = lanes[lane]->mma;
    const unsigned g = lane >> 2, t = lane % 4;
    for (unsigned i = 0; i < 8; ++i) {
      const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      const unsigned col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
      a[row][col] = to_float(static_cast<uint16_t>(m.a[i / 2] >> (16 * (i & 1))));
    }
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned row = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
      b[row][g] = to_float(static_cast<uint16_t>(m.b[i / 2] >> (16 * (i & 1))));
    }
    for (unsigned i = 0; i < 4; ++i) c[i < 2 ? g : g + 8][2 * t + (i & 1)] = m.d[i];
  }
  for (unsigned lane = 0; lane < 32; ++lane) {
    const unsigned g = lane >> 2, t = lane % 4;
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned row = i < 2 ? g : g + 8, col = 2 * t + (i & 1);
      double sum = c[row][col];
      for (unsigned k = 0; k < 16; ++k) sum += double(a[row][k]) * double(b[k][col]);
      lanes[lane]->mma.d[i] = static_cast<float>(sum);
    }
  }
}

void complete(Block& block, unsigned warp, const Collective& c) {
  Worker* const* lanes = block.workers + warp * kWarpSize;
  if (c.kind == CollectiveKind::mma_bf16) {
    mma(lanes, [](uint16_t h) { return bf16_bits_to_f32(h); });
  } else if (c.kind == CollectiveKind::mma_f16) {
    mma(lanes, [](uint16_t h) { return f16_bits_to_f32(h); });
  } else {
    uint64_t in[32] = {};
    for (unsigned lane = 0; lane < 32; ++lane)
      if (c.mask & (1u << lane)) in[lane] = lanes[lane]->value;
    uint64_t ballot = 0;
    for (unsigned lane = 0; lane < 32; ++lane)
      if ((c.mask & (1u << lane)) && in[lane] != 0) ballot |= 1u << lane;
    for (unsigned lane = 0; lane < 32; ++lane) {
      if (!(c.mask & (1u << lane))) continue;
      uint64_t out = 0;
      switch (c.op) {
        case WarpOp::shfl_idx:
        case WarpOp::shfl_xor:
        case WarpOp::shfl_up:
        case WarpOp::shfl_down: {
          const int source = shuffle_source(c.op, lane, lanes[lane]->argument, c.width);
          if (source >= 0 && !(c.mask & (1u << source))) {
            fatal("%s at %s:%u: lane %u reads lane %d, which is not in the mask 0x%08x", op_name(c),
                  c.site.file_name(), c.site.line(), lane, source, c.mask);
          }
          out = source < 0 ? in[lane] : in[source];
          break;
        }
        case WarpOp::ballot:
          out = ballot;
          break;
        case WarpOp::any:
          out = ballot != 0;
          break;
        case WarpOp::all:
          out = ballot == (c.mask & 0xffffffffull);
          break;
        case WarpOp::sync:
          break;
      }
      lanes[lane]->value = out;
    }
  }
  for (unsigned lane = 0; lane < 32; ++lane)
    if (c.mask & (1u << lane)) wake(block, *lanes[lane]);
}

// Joins the running lane to the collective of its mask (starting it if it is
// the first), completes it if the lane is the last, and waits.
void arrive(CollectiveKind kind, WarpOp op, unsigned mask, int width, const Site& site) {
  Block* block = running_block();
  Worker* w = running_worker();
  if (block == nullptr || w == nullptr)
    fatal("warp collective at %s:%u outside a kernel", site.file_name(), site.line());
  WarpState& warp = block->warps[w->warp];
  const unsigned bit = 1u << w->lane;
  const Collective mine{kind, op, mask, width, site, 0};
  if (!(mask & bit))
    fatal("%s at %s:%u with mask 0x%08x, which leaves out the calling lane", op_name(mine),
          site.file_name(), site.line(), mask);
  if (mask & ~warp.lanes)
    fatal("%s at %s:%u names lanes {%s} that the block does not have (%u threads)", op_name(mine),
          site.file_name(), site.line(), lanes_text(mask & ~warp.lanes).c_str(), block->threads);
  if (mask & warp.exited)
    fatal("%s at %s:%u waits for lanes {%s}, which have returned from the kernel", op_name(mine),
          site.file_name(), site.line(), lanes_text(mask & warp.exited).c_str());
  Collective* joined = nullptr;
  for (Collective& c : warp.pending) {
    if (!(c.mask & mask)) continue;
    if (c.mask != mask || c.kind != kind || c.op != op || c.width != width ||
        !same_site(c.site, site))
      fatal(
          "divergent warp collective: this lane is at %s %s:%u:%u (mask 0x%08x) while lanes "
          "{%s} wait at %s %s:%u:%u (mask 0x%08x)",
          op_name(mine), site.file_name(), site.line(), site.column(), mask,
          lanes_text(c.arrived).c_str(), op_name(c), c.site.file_name(), c.site.line(),
          c.site.column(), c.mask);
    joined = &c;
  }
  if (joined == nullptr) {
    warp.pending.push_back(mine);
    joined = &warp.pending.back();
  }
  joined->arrived |= bit;
  w->state = State::collective;
  w->site = site;
  if (joined->arrived == mask) {
    const Collective done = *joined;
    warp.pending.erase(warp.pending.begin() + (joined - warp.pending.data()));
    complete(*block, w->warp, done);
  }
  yield_to_scheduler();
}

}  // namespace

void check_warp_exit(Block& block, Worker& w) {
  WarpState& warp = block.warps[w.warp];
  for (const Collective& c : warp.pending)
    if (c.mask & (1u << w.lane))
      fatal("returned from the kernel while lanes {%s} wait for this lane at %s %s:%u",
            lanes_text(c.arrived).c_str(), op_name(c), c.site.file_name(), c.site.line());
  warp.exited |= 1u << w.lane;
}

void describe_waiting_collectives(const Block& block, char* out, size_t size) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < block.warps.size(); ++i) {
    for (const Collective& c : block.warps[i].pending) {
      const int n = std::snprintf(out + used, size - used,
                                  " warp %zu lanes {%s} wait at %s %s:%u for lanes {%s};", i,
                                  lanes_text(c.arrived).c_str(), op_name(c), c.site.file_name(),
                                  c.site.line(), lanes_text(c.mask & ~c.arrived).c_str());
      if (n < 0 || size_t(n) >= size - used) return;
      used += size_t(n);
    }
  }
}

}  // namespace turbine_emu::device

namespace turbine_emu {

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int argument, int width,
                         const Site& site) {
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0)
    device::fatal("warp collective at %s:%u with width %d (a power of 2 up to 32)",
                  site.file_name(), site.line(), width);
  device::Worker* w = device::running_worker();
  if (w != nullptr) {
    w->value = value;
    w->argument = argument;
  }
  device::arrive(device::CollectiveKind::warp_op, op, mask, width, site);
  return w->value;
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const Site& site) {
  device::Worker* w = device::running_worker();
  if (w != nullptr) w->mma = {d, a, b};
  device::arrive(device::CollectiveKind::mma_bf16, WarpOp::sync, 0xffffffffu, kWarpSize, site);
}

void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                      const Site& site) {
  device::Worker* w = device::running_worker();
  if (w != nullptr) w->mma = {d, a, b};
  device::arrive(device::CollectiveKind::mma_f16, WarpOp::sync, 0xffffffffu, kWarpSize, site);
}

}  // namespace turbine_emu
