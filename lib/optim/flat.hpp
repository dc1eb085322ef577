// Flat parameter and gradient buffers: every parameter moves into one
// contiguous f32 array (in model order, padded to a multiple of the
// data-parallel world size) and its gradient becomes a view of a second
// one. Collectives, ZeRO shards and the optimizer then work on plain ranges.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "nn/module.hpp"

namespace turbine::optim {

struct Segment {
  std::string name;
  int64_t offset = 0, numel = 0;
  bool weight_decay = true;
};

class FlatParameters {
 public:
  // Relocates the parameters (every handle to them sees the flat memory) and
  // attaches the gradient views. pad_to: the total is rounded up to a multiple.
  explicit FlatParameters(const nn::ParameterList& params, int64_t pad_to = 1);

  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  int64_t numel() const { return numel_; }  // real elements, without padding
  int64_t padded_numel() const { return values_.numel(); }
  const std::vector<Segment>& segments() const { return segments_; }
  // Zeroes the gradients: backward then accumulates into them.
  void zero_grads();
  // The range of rank `rank` out of `world` equal shards of the padded buffer.
  std::pair<int64_t, int64_t> shard(int rank, int world) const;

 private:
  Tensor values_, grads_;
  int64_t numel_ = 0;
  std::vector<Segment> segments_;
};

}  // namespace turbine::optim
