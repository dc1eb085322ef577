// The `model:` section of a config file: BLOOM's sizes under Hugging Face's
// config.json names, declared as config keys (model.hidden_size, ...) and read back.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "io/config.hpp"
#include "nn/bloom.hpp"

namespace turbine::io {

// Declares model.type, model.vocab_size, ... with BloomConfig's defaults, so an app's schema
// carries the model section.
void declare_bloom_config(ConfigSchema& schema);
// Reads the model.* keys of a loaded config and checks the sizes fit together.
nn::BloomConfig bloom_config_from(const Config& config);

// Reads a `model:` mapping; `file` names the source in error messages.
nn::BloomConfig bloom_config_from_yaml(const YAML::Node& model, const std::string& file);
// Loads `model:` from a YAML file; other top-level sections are left to their readers.
nn::BloomConfig load_bloom_config(const std::string& path);
// A YAML document with the `model:` section of config (each key with its help
// as a comment), which load_bloom_config reads back.
std::string bloom_config_yaml(const nn::BloomConfig& config);

}  // namespace turbine::io
