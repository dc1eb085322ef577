// The pretraining loop: data-parallel BLOOM training on a token data set
// with gradient accumulation, ZeRO 0-2, evaluation, samples, metrics,
// checkpoints and exact resume.
#pragma once

#include "dist/communicator.hpp"
#include "train/options.hpp"

namespace turbine::train {

struct PretrainResult {
  int64_t steps = 0;
  double final_train_loss = 0, final_val_loss = 0;
  double tokens_per_second = 0;
  double unigram_entropy = 0;  // of the training tokens, nats (rank 0 only)
  bool stopped_early = false;  // a stop signal ended the run after a checkpoint
};

PretrainResult pretrain(const PretrainOptions& options, dist::Communicator& comm);

// Checks the options that need no data: batch arithmetic, ranges. Throws
// with the key to change.
void validate(const PretrainOptions& options, int world_size);

}  // namespace turbine::train
