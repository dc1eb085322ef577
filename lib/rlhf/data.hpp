// RLHF data as DeepSpeed-Chat reads it: JSON lines with "prompt", "chosen"
// and "rejected" (its local/jsonfile format; the text is " Human: ...
// Assistant: ..." dialogue), split among the three steps by data_split, and
// tokenized with the model's tokenizer into each step's samples:
//   SFT     " " prompt, then " " chosen and the end-of-text token; the
//           prompt's targets are masked out unless asked (train_on_prompt);
//           the whole sequence is cut at max_seq_len, as DeepSpeed-Chat does
//   reward  the same for chosen and for rejected, both cut at max_seq_len
//   PPO     " " prompt; prompts longer than max_prompt_seq_len are dropped
//           (DeepSpeed-Chat filters them), and batches are left-padded
// Samples that cannot train (an SFT prompt that fills max_seq_len, a pair
// whose cut sequences are equal, a pair whose chosen equals its rejected) are
// dropped and counted, never silently kept.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/loader.hpp"
#include "data/tokenizer.hpp"
#include "tensor/tensor.hpp"

namespace turbine::rlhf {

struct PreferencePair {
  std::string prompt, chosen, rejected;
  int64_t line = 0;  // in its file, from 1
};

// Reads a JSONL file of pairs. A line that is not a JSON object, or lacks one
// of the keys or has a non-string value, is an error naming the file, line
// and key. Blank lines are skipped; other keys are ignored.
std::vector<PreferencePair> read_pairs(const std::string& path);

// DeepSpeed-Chat's data_split: the items of phase `phase` (0-based) among n,
// after a seeded shuffle. Split weights are normalized; the boundaries are
// rounded as DeepSpeed-Chat rounds them (round(w_i * n) cumulated, then
// shifted so they end at n).
std::vector<int64_t> phase_indices(int64_t n, const std::vector<double>& split, int phase,
                                   uint64_t seed);

enum class Phase { sft = 0, reward = 1, ppo = 2 };
const char* phase_name(Phase phase);

struct TokenizeOptions {
  int64_t max_seq_len = 256;         // SFT and reward sequences
  int64_t max_prompt_seq_len = 128;  // PPO prompts
  int64_t max_answer_seq_len = 64;   // PPO answers
  bool train_on_prompt = false;      // SFT: the prompt's tokens are targets too
  // end_of_conversation_token: one token of the tokenizer that ends every
  // answer ("" : the tokenizer's end-of-text).
  std::string end_token = "<|endoftext|>";
};

// The id of options.end_token in `tokenizer`; an error naming the key when
// it is not one of its tokens.
int32_t end_token_id(const data::Tokenizer& tokenizer, const TokenizeOptions& options);

struct SftSample {
  std::vector<int32_t> ids;
  int64_t prompt_tokens = 0;  // the leading tokens that are prompt
};
struct RewardSample {
  std::vector<int32_t> chosen, rejected;
};
struct PromptSample {
  std::vector<int32_t> prompt;
  std::string chosen;  // the reference answer (for evaluation only)
};

// One step's samples of one file (train or eval).
struct PhaseData {
  std::vector<SftSample> sft;
  std::vector<RewardSample> reward;
  std::vector<PromptSample> prompts;
  int64_t pairs = 0;    // of the file in this phase
  int64_t dropped = 0;  // could not train (see above)
  std::string drop_reason;
  int64_t size() const;
};

// The pairs of `path` in phase `phase`, tokenized. Pairs whose chosen equals
// rejected are dropped for the reward phase with a warning naming their
// first lines.
PhaseData load_phase(const std::string& path, Phase phase, const std::vector<double>& split,
                     uint64_t seed, const data::Tokenizer& tokenizer,
                     const TokenizeOptions& options);

// Micro-batches. Rows are right-padded with `pad` to the longest row; the
// targets of padding (and of a masked prompt) are -100.
struct SftBatch {
  Tensor ids, targets;  // (B, T) i64
  int64_t targets_counted = 0;
};
SftBatch sft_batch(const std::vector<const SftSample*>& rows, bool train_on_prompt, int32_t pad);

// Chosen rows then rejected rows, (2B, T) right-padded, with each row's length.
struct RewardBatch {
  Tensor ids;  // (2B, T) i64
  std::vector<int64_t> lengths;
};
RewardBatch reward_batch(const std::vector<const RewardSample*>& rows, int32_t pad);

// The global order of a step's samples over epochs (data::EpochOrder) and the
// rows data-parallel rank `rank` takes for micro-batch `micro` of the step
// starting at `first` (global sample index).
std::vector<int64_t> rank_rows(data::EpochOrder& order, int64_t first, int64_t micro_batch,
                               int64_t accumulation, int rank, int64_t micro);

}  // namespace turbine::rlhf
