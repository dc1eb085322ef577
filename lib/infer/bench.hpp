// infer bench: how fast a model decodes here, against the machine's memory
// bandwidth measured in the same run: batch-1 decoding reads every weight
// (and the KV cache) once per token, so the copy bandwidth (bytes copied
// per second) over the bytes read per token is its limit.
#pragma once

#include <string>

#include "infer/infer.hpp"

namespace turbine::infer {

struct BenchResult {
  double copy_gb_per_s = 0;                 // memcpy over all threads (bytes copied)
  double read_gb_per_s = 0;                 // a sum over all threads (bytes read)
  double prefill_tokens_per_s = 0;          // one 128-token prompt
  double time_to_first_token_s = 0;         // that prompt's prefill
  double decode_tokens_per_s[3] = {};       // batch 1, 8, 32
  double bytes_per_token = 0;               // batch 1: weights + the KV cache read
  double bandwidth_limit_tokens_per_s = 0;  // bytes_per_token at the copy bandwidth
  double read_limit_tokens_per_s = 0;       // and at the read bandwidth
  double resident_mib = 0;                  // the process, with the model loaded
  StreamStats stream;  // streamed weights (inference.zero.offload_param); zeros when resident
};

// Measures `model` (compacted as the options say by the caller); prints a
// readable report on stderr and returns the figures.
BenchResult bench(const LoadedModel& loaded, const InferOptions& options);
// Every backend call of `steps` decode steps at `batch` (after a 16-token
// prefill, which is in the table too), timed: a text table, per step.
std::string profile_decode(const LoadedModel& loaded, int64_t batch, int steps);

// Next-token perplexity over the first `tokens` tokens of a token data
// set's validation split (what prepare-data writes; its tokenizer must be the
// model's), in windows of `window` tokens, computed with decode's weights:
// the compact linear layers and LM head when the model has them. One rank,
// resident weights.
struct EvalResult {
  int64_t tokens = 0;  // predicted
  double mean_nll = 0, perplexity = 0;
};
EvalResult evaluate_perplexity(const LoadedModel& loaded, const std::string& data_path,
                               int64_t tokens, int64_t window);

// The checkpoint's perplexity with options.dtype weights and with f32 ones,
// loaded one after the other; logs both and the relative change.
struct EvalQuality {
  EvalResult weights, f32;
  double change() const { return weights.perplexity / f32.perplexity - 1; }
};
EvalQuality evaluate_quality(const std::string& checkpoint, Device device,
                             const InferOptions& options, const std::string& data_path,
                             int64_t tokens, int64_t window);
std::string eval_json(const EvalQuality& quality, const InferOptions& options);

// One JSON line of the figures (the weight type and model shape named).
std::string bench_json(const BenchResult& result, const LoadedModel& loaded,
                       const InferOptions& options);

}  // namespace turbine::infer
