// Reading models from either kind of folder, and converting between them.
#include "infer/convert.hpp"

#include <filesystem>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/hf_bloom.hpp"
#include "io/model_config.hpp"
#include "train/checkpoint.hpp"

namespace turbine::infer {

namespace fs = std::filesystem;

WeightReader::WeightReader(const std::string& dir) : dir_(dir) {
  const fs::path root(dir);
  TURBINE_CHECK(fs::is_directory(root),
                "{} is not a folder (give a checkpoints/step_N folder that pretrain wrote, or a "
                "Hugging Face BLOOM folder)",
                dir);
  hf_ = io::is_hf_folder(dir);
  if (!hf_) {
    for (const char* file : {"config.yaml", "model.h5"})
      TURBINE_CHECK(fs::exists(root / file),
                    "{} has no {}: neither a complete Turbine checkpoint nor a Hugging Face "
                    "folder (config.json and model.safetensors)",
                    dir, file);
  }
  TURBINE_CHECK(fs::exists(root / "tokenizer.json"),
                "{} has no tokenizer.json (checkpoints written before tokenizers travelled "
                "with them: copy the tokenizer.json of its data set there)",
                dir);
  tokenizer_ = data::Tokenizer::load((root / "tokenizer.json").string());
  config_ = hf_ ? io::bloom_config_from_hf((root / "config.json").string())
                : io::load_bloom_config((root / "config.yaml").string());
  TURBINE_CHECK(tokenizer_.vocab_size() <= config_.vocab_size,
                "{}: its tokenizer has {} tokens, the model {}", dir, tokenizer_.vocab_size(),
                config_.vocab_size);
  if (hf_) folder_ = std::make_unique<io::SafetensorsFolder>(dir);
}

WeightReader::~WeightReader() = default;

void WeightReader::load(const nn::ParameterList& params, bool subset) const {
  if (hf_)
    io::load_hf_bloom_weights(*folder_, params, subset);
  else
    train::CheckpointStore::load_weights(dir_, params);
}

CheckpointModel read_model(const std::string& dir, Device device,
                           const std::function<void(const nn::BloomConfig&)>& check_config) {
  const WeightReader reader(dir);
  if (check_config) check_config(reader.config());
  CheckpointModel out{nn::Bloom(reader.config(), 0, device), reader.tokenizer()};
  reader.load(out.model.parameters());
  return out;
}

void import_hf(const std::string& hf_dir, const std::string& checkpoint) {
  TURBINE_CHECK(io::is_hf_folder(hf_dir),
                "{} is not a Hugging Face model folder (config.json with model.safetensors or "
                "model.safetensors.index.json)",
                hf_dir);
  TURBINE_CHECK(!fs::exists(checkpoint), "{} exists already: refusing to overwrite it", checkpoint);
  CheckpointModel m = read_model(hf_dir, Device::cpu());
  train::StateMap state;
  state.set("imported_from", fs::absolute(hf_dir).string());
  state.set_file("tokenizer.json", m.tokenizer.to_json());
  train::CheckpointStore::save_weights(checkpoint, {{"model", &m.model.parameters(), nullptr}},
                                       state, io::bloom_config_yaml(m.model.config()));
}

void export_hf(const std::string& checkpoint, const std::string& hf_dir, DType dtype) {
  TURBINE_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16,
                "export: weights are written as f32, bf16 or f16, not {}", dtype_name(dtype));
  TURBINE_CHECK(!fs::exists(hf_dir), "{} exists already: refusing to overwrite it", hf_dir);
  const CheckpointModel m = read_model(checkpoint, Device::cpu());
  io::save_hf_bloom(hf_dir, m.model.config(), m.model.parameters(), m.tokenizer, dtype);
}

}  // namespace turbine::infer
