// The `infer` job's parts: its config (an `inference:` tree with DeepSpeed's
// key names where one exists, and `sampling:`), loading a checkpoint that
// pretrain wrote (its config.yaml, model.h5 and tokenizer.json) into a BLOOM
// on the chosen device with the chosen weight type, and one completion
// streamed as UTF-8 text.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"
#include "infer/generate.hpp"
#include "io/config.hpp"
#include "nn/bloom.hpp"
#include "nn/compact.hpp"

namespace turbine::infer {

struct InferOptions {
  std::string device = "cpu";
  std::string dtype = "f32";  // weights of the linear layers: f32, bf16, f16, int8
  int int8_group = 0;         // inputs per int8 scale; 0: one scale per output channel
  int64_t max_out_tokens = 1024;  // prompt + generated tokens one sequence may hold
  SamplingOptions sampling;
  std::string resolved_yaml;
};

io::ConfigSchema infer_schema();
InferOptions infer_options(const io::Config& config, int world_size);

struct LoadedModel {
  nn::Bloom model;
  data::Tokenizer tokenizer;
  nn::CompactReport compacted;  // layers = 0 in f32
};

// Reads <checkpoint>/config.yaml (model section), the weights of its part
// "model" and <checkpoint>/tokenizer.json; errors name the file. Then
// compacts the linear layers to options.dtype.
LoadedModel load_checkpoint(const std::string& checkpoint, Device device,
                            const InferOptions& options);

struct Completion {
  std::vector<int32_t> prompt_tokens, tokens;  // tokens: the generated ones
  std::string text;                            // the generated text
  std::string finish_reason;                   // "stop" (end of text) or "length"
  double seconds_to_first_token = 0, tokens_per_second = 0;
};

// Continues `prompt`, calling on_text with each newly completed piece of
// UTF-8 text (a character split over tokens waits for its last byte).
Completion complete(const LoadedModel& loaded, const std::string& prompt,
                    const InferOptions& options,
                    const std::function<void(std::string_view)>& on_text = {});

}  // namespace turbine::infer
