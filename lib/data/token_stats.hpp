// Statistics of a token data set's split.
#pragma once

#include "data/token_dataset.hpp"

namespace turbine::data {

// Entropy of the split's unigram token distribution, in nats per token: the
// cross entropy of the best model that ignores context, a yardstick for a
// language model's loss.
double unigram_entropy(const TokenDataset& dataset, Split split);

}  // namespace turbine::data
