// The `model:` section of a config file: BLOOM's sizes under Hugging Face's
// config.json names, validated key by key (unknown keys, wrong types).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "nn/bloom.hpp"

namespace turbine::io {

// Reads a `model:` mapping; `file` names the source in error messages.
nn::BloomConfig bloom_config_from_yaml(const YAML::Node& model, const std::string& file);
// Loads `model:` from a YAML file.
nn::BloomConfig load_bloom_config(const std::string& path);

}  // namespace turbine::io
