// Hugging Face BLOOM folders in and out of Turbine checkpoints (tools/import-hf
// and tools/export-hf): the weights, the model's config and the tokenizer.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "data/tokenizer.hpp"
#include "io/safetensors.hpp"
#include "nn/bloom.hpp"

namespace turbine::infer {

// The model config, tokenizer and weights of a Turbine checkpoint
// (config.yaml, model.h5, tokenizer.json) or a Hugging Face folder
// (config.json, safetensors weights, tokenizer.json), whichever `dir` is;
// weights are read by parameter name, so a part of a model (one block, when
// streaming) loads alone. Errors name the file at fault.
class WeightReader {
 public:
  explicit WeightReader(const std::string& dir);
  ~WeightReader();
  const nn::BloomConfig& config() const { return config_; }
  const data::Tokenizer& tokenizer() const { return tokenizer_; }
  // Fills params (named as nn::Bloom names them) with the stored weights.
  // subset: params are part of the model; otherwise they must be all of it.
  void load(const nn::ParameterList& params, bool subset = false) const;

 private:
  std::string dir_;
  bool hf_ = false;
  nn::BloomConfig config_;
  data::Tokenizer tokenizer_;
  std::unique_ptr<io::SafetensorsFolder> folder_;
};

// A BLOOM in f32 on the CPU with its tokenizer, read from a Turbine
// checkpoint (config.yaml, model.h5, tokenizer.json) or a Hugging Face
// folder (config.json, safetensors weights, tokenizer.json), whichever
// `dir` is. Errors name the file at fault.
struct CheckpointModel {
  nn::Bloom model;
  data::Tokenizer tokenizer;
};
// check_config (if given) sees the model's config before any weight is read.
CheckpointModel read_model(const std::string& dir, Device device,
                           const std::function<void(const nn::BloomConfig&)>& check_config = {});

// Writes the Hugging Face folder hf_dir as the Turbine checkpoint folder
// `checkpoint` (weights only; pretrain's init_from and infer read it).
void import_hf(const std::string& hf_dir, const std::string& checkpoint);

// Writes a Turbine checkpoint (or a Hugging Face folder) as a Hugging Face
// folder that transformers loads, with weights in dtype (f32, bf16, f16).
void export_hf(const std::string& checkpoint, const std::string& hf_dir, DType dtype);

}  // namespace turbine::infer
