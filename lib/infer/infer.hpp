// The `infer` job's parts: its config (an `inference:` tree with DeepSpeed's
// key names where one exists, and `sampling:`), loading a checkpoint that
// pretrain wrote (its config.yaml, model.h5 and tokenizer.json) into a BLOOM
// on the chosen device with the chosen weight type, and one completion
// streamed as UTF-8 text.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"
#include "infer/generate.hpp"
#include "infer/stream.hpp"
#include "io/config.hpp"
#include "nn/bloom.hpp"
#include "nn/compact.hpp"

namespace turbine::infer {

// infer serve's engine (infer/engine.hpp): the `serve:` config.
struct ServeOptions {
  int64_t block_size = 16;  // positions per KV block
  double kv_cache_mb = 0;   // the block pool; 0: kv_cache_fraction of free memory (see pool_blocks)
  double kv_cache_fraction = 0.5;
  int64_t max_running = 64;   // sequences stepped together (vLLM's max_num_seqs)
  int64_t step_tokens = 512;  // tokens one step may run (max_num_batched_tokens)
  int64_t max_queued = 256;   // requests waiting for room; past it, 503
  double drain_seconds = 30;  // a stop signal's grace period for running requests
};

struct InferOptions {
  std::string device = "cpu";
  int64_t batch_size = 8;         // prompts of a --prompts-file decoded together
  std::string dtype = "f32";      // weights of the linear layers: f32, bf16, f16, int8
  int int8_group = 0;             // inputs per int8 scale; 0: one scale per output channel
  int64_t max_out_tokens = 1024;  // prompt + generated tokens one sequence may hold
  int64_t tp_size = 1;            // ranks that split the model (tensor parallelism)
  OffloadOptions offload;         // weight streaming
  SamplingOptions sampling;
  ServeOptions serve;
  std::string resolved_yaml;
};

io::ConfigSchema infer_schema();
InferOptions infer_options(const io::Config& config, int world_size);

struct LoadedModel {
  explicit LoadedModel(nn::Bloom m, data::Tokenizer t = {})
      : model(std::move(m)), tokenizer(std::move(t)) {}
  nn::Bloom model;
  data::Tokenizer tokenizer;
  nn::CompactReport compacted;  // layers = 0 in f32
  int64_t lm_head_bytes = 0;    // decode's compact LM head; 0: the f32 embedding matrix
  // The ranks that split the model (tp_size > 1), or null.
  std::unique_ptr<dist::ProcessGroup> tensor_parallel;
  // The blocks' weights when streamed (inference.zero.offload_param), or null.
  std::unique_ptr<BlockStreamer> streamer;
  int64_t streamed_bytes = 0;  // every streamed block, as staged
  Decoder decoder() const { return Decoder{model, tensor_parallel.get()}; }
};

// Reads a Turbine checkpoint (config.yaml, model.h5 and tokenizer.json) or a
// Hugging Face BLOOM folder (read_model); errors name the file. Then
// compacts the linear layers to options.dtype.
// With options.tp_size > 1 every rank of `world` (tp_size of them) calls it
// together: the head count is checked before any weight is read, then each
// rank keeps its part (dist::split_bloom).
LoadedModel load_checkpoint(const std::string& checkpoint, Device device,
                            const InferOptions& options, dist::Communicator* world = nullptr);

// A model of the shape in a model config (configs/models/X.yaml) with random
// weights and no tokenizer, compacted as the options say: for infer bench.
LoadedModel random_model(const std::string& model_yaml, Device device, const InferOptions& options,
                         dist::Communicator* world = nullptr);

struct Completion {
  std::vector<int32_t> prompt_tokens, tokens;  // tokens: the generated ones
  std::string text;                            // the generated text
  // "stop" (end of text or a stop string) or "length" (max_new_tokens, or
  // the sequence is full)
  std::string finish_reason;
  std::vector<double> logprobs;  // of each generated token, when asked
  double seconds_to_first_token = 0, tokens_per_second = 0;
};

// One prompt of a batch, with its own sampling.
struct Request {
  std::string prompt;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // the text ends before the first of these
  bool logprobs = false;
};

// A JSON-lines prompt file: each line {"prompt": ..., optional
// "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
// "seed", "stop" (a string or a list), "logprobs"}; the rest default to
// `defaults`. Errors name the file, line and key.
std::vector<Request> read_prompts_file(const std::string& path, const SamplingOptions& defaults);

// The requests decoded together as one batch (left-padded prompts over one
// KV cache): each row samples with its own options and stops on its own.
std::vector<Completion> complete_batch(const LoadedModel& loaded, const std::vector<Request>& batch,
                                       const InferOptions& options);

// On rank 0's log: what streaming read, in how long, and how long decoding
// waited for it (the rest of the reading overlapped the computation).
void log_stream_stats(const LoadedModel& loaded);

// A completion as the JSON line a prompts file run writes.
std::string completion_json(const Completion& completion);

// Continues `prompt`, calling on_text with each newly completed piece of
// UTF-8 text (a character split over tokens waits for its last byte).
// The text ends before the first of `stop` (text that could begin one is
// held back from on_text until it cannot).
Completion complete(const LoadedModel& loaded, const std::string& prompt,
                    const InferOptions& options,
                    const std::function<void(std::string_view)>& on_text = {},
                    const std::vector<std::string>& stop = {});

}  // namespace turbine::infer
