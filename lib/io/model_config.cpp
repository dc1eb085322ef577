// Validated parsing of the model section.
#include "io/model_config.hpp"

#include <algorithm>
#include <vector>

#include "core/error.hpp"

namespace turbine::io {

namespace {

const std::vector<std::string> kKeys = {"type",        "vocab_size",         "hidden_size",
                                        "n_head",      "n_layer",            "layer_norm_epsilon",
                                        "hidden_dropout", "initializer_range"};

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string location(const YAML::Node& node, const std::string& file) {
  return fmt::format("{}:{}", file, node.Mark().line + 1);
}

template <typename T>
T get(const YAML::Node& node, const std::string& key, const std::string& file) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    TURBINE_FAIL("{}: model.{} has the wrong type ('{}'): expected {}", location(node, file), key,
                 node.Scalar(), std::is_integral_v<T> ? "an integer" : "a number");
  }
}

}  // namespace

nn::BloomConfig bloom_config_from_yaml(const YAML::Node& model, const std::string& file) {
  TURBINE_CHECK(model && model.IsMap(), "{}: `model:` must be a mapping of BLOOM sizes", file);
  nn::BloomConfig c;
  for (const auto& item : model) {
    const std::string key = item.first.as<std::string>();
    const YAML::Node& value = item.second;
    if (key == "type") {
      TURBINE_CHECK(value.as<std::string>() == "bloom", "{}: model.type '{}' is unknown: use bloom",
                    location(value, file), value.as<std::string>());
    } else if (key == "vocab_size") {
      c.vocab_size = get<int64_t>(value, key, file);
    } else if (key == "hidden_size") {
      c.hidden_size = get<int64_t>(value, key, file);
    } else if (key == "n_head") {
      c.n_head = get<int64_t>(value, key, file);
    } else if (key == "n_layer") {
      c.n_layer = get<int64_t>(value, key, file);
    } else if (key == "layer_norm_epsilon") {
      c.layer_norm_epsilon = get<float>(value, key, file);
    } else if (key == "hidden_dropout") {
      c.hidden_dropout = get<float>(value, key, file);
    } else if (key == "initializer_range") {
      c.initializer_range = get<float>(value, key, file);
    } else {
      const auto best = std::min_element(kKeys.begin(), kKeys.end(), [&](auto& a, auto& b) {
        return edit_distance(key, a) < edit_distance(key, b);
      });
      TURBINE_FAIL("{}: unknown key model.{}{}", location(item.first, file), key,
                   edit_distance(key, *best) <= 3 ? fmt::format(" (did you mean {}?)", *best)
                                                  : std::string());
    }
  }
  try {
    c.validate();
  } catch (const Error& e) {
    TURBINE_FAIL("{}: {}", location(model, file), e.what());
  }
  return c;
}

nn::BloomConfig load_bloom_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    TURBINE_FAIL("config file '{}' cannot be read", path);
  } catch (const YAML::Exception& e) {
    TURBINE_FAIL("{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.msg);
  }
  TURBINE_CHECK(root["model"], "{}: no `model:` section", path);
  return bloom_config_from_yaml(root["model"], path);
}

}  // namespace turbine::io
