// Random-LTD's configuration and schedules (DeepSpeed's keys under
// data_efficiency.data_routing.random_ltd): which layers drop tokens, how
// many tokens they keep at each step (fixed_linear, as DeepSpeed's
// RandomLTDScheduler), the layer-tokens a step consumes (for the LayerToken
// learning-rate schedule) and the FLOPs it costs.
#pragma once

#include <cstdint>
#include <vector>

#include "io/config.hpp"
#include "nn/bloom.hpp"

namespace turbine::efficiency {

struct RandomLtdConfig {
  bool enabled = false;
  std::vector<int64_t> layer_ids;  // layers that drop tokens
  int64_t min_value = 0, max_value = 0;  // tokens kept per sequence, first and last
  int64_t require_steps = 1, seq_per_step = 1;

  // Tokens kept at 0-based step `step`: floor(step / require_steps x (max -
  // min) + min), rounded down to a multiple of seq_per_step, capped at max.
  int64_t kept_at(int64_t step) const;
  // Layer-tokens of one step of `batch` sequences of `seq` tokens through
  // `layers` layers: batch x (kept x ltd_layers + seq x (layers - ltd_layers)).
  double layer_tokens(int64_t step, int64_t batch, int64_t seq, int64_t layers) const;
  nn::TokenDropping dropping_at(int64_t step, uint64_t seed) const;
};

// DeepSpeed's random_ltd keys under data_efficiency.data_routing.
void declare_random_ltd_config(io::ConfigSchema& schema);
// Reads and validates them against the model and sequence length.
RandomLtdConfig random_ltd_from(const io::Config& config, int64_t n_layer, int64_t seq_len);

}  // namespace turbine::efficiency
