// Hugging Face BLOOM folders (config.json, safetensors weights, tokenizer.json)
// to Turbine and back. Turbine's parameter names are Hugging Face's without
// BloomForCausalLM's "transformer." prefix, and its query_key_value already
// has HF's (head, q/k/v, head_dim) output order, so weights convert by name
// alone. The LM head is tied to the word embeddings: an "lm_head.weight" in
// a folder must equal them (an untied head is refused), and exports leave it
// out, as save_pretrained does.
#pragma once

#include <string>

#include "data/tokenizer.hpp"
#include "io/safetensors.hpp"
#include "nn/bloom.hpp"

namespace turbine::io {

// Reads a BLOOM config.json with transformers' defaults and aliases (n_embed
// for hidden_size, num_hidden_layers, num_attention_heads); refuses other
// model types and the variants Turbine does not compute
// (apply_residual_connection_post_layernorm).
nn::BloomConfig bloom_config_from_hf(const std::string& config_json_path);

// A config.json that transformers loads as BloomForCausalLM; token ids for
// bos/eos/pad/unk come from the tokenizer where it has such tokens.
std::string hf_bloom_config_json(const nn::BloomConfig& config, const data::Tokenizer& tokenizer,
                                 DType weights_dtype);

// Copies a folder's tensors into params (converted to f32). Every parameter
// must be there with its shape, and (unless `subset`: params are part of the
// model, e.g. one streamed block's) nothing else may be; errors name them.
void load_hf_bloom_weights(const SafetensorsFolder& folder, const nn::ParameterList& params,
                           bool subset = false);

// Writes a Hugging Face BLOOM folder: config.json, model.safetensors (weights
// in `dtype`: f32, bf16 or f16, "transformer."-prefixed),
// tokenizer.json and tokenizer_config.json. The folder is written under a
// temporary name and renamed when complete; an existing one is refused.
void save_hf_bloom(const std::string& dir, const nn::BloomConfig& config,
                   const nn::ParameterList& params, const data::Tokenizer& tokenizer, DType dtype);

// Whether dir looks like a Hugging Face model folder (a config.json beside
// safetensors weights).
bool is_hf_folder(const std::string& dir);

}  // namespace turbine::io
