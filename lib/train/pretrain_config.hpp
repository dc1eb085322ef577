// The pretrain job's config schema (DeepSpeed's key names where DeepSpeed
// has them) and its mapping onto PretrainOptions, with the cross-key checks
// (batch arithmetic, schedule lengths) reported against the config's lines.
#pragma once

#include "io/config.hpp"
#include "train/options.hpp"

namespace turbine::train {

io::ConfigSchema pretrain_schema();
// world_size: data-parallel ranks, for the batch arithmetic.
PretrainOptions pretrain_options(const io::Config& config, int world_size);

}  // namespace turbine::train
