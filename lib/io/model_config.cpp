// The model section as config keys: declaration with BloomConfig's defaults, and reading back.
#include "io/model_config.hpp"

#include "core/error.hpp"

namespace turbine::io {

namespace {
// 1e-5f as the double 1e-05, not 9.99999974738e-06, so --dry-run prints what a user wrote.
double shortest(float value) {
  return std::stod(fmt::format("{}", value));
}
}  // namespace

void declare_bloom_config(ConfigSchema& schema) {
  const nn::BloomConfig d;
  schema.string("model.type", "bloom", "model family").one_of({"bloom"});
  schema.integer("model.vocab_size", d.vocab_size, "tokens in the vocabulary").at_least(1);
  schema.integer("model.hidden_size", d.hidden_size, "width of the hidden states").at_least(1);
  schema.integer("model.n_head", d.n_head, "attention heads; must divide hidden_size").at_least(1);
  schema.integer("model.n_layer", d.n_layer, "transformer blocks").at_least(0);
  schema
      .number("model.layer_norm_epsilon", shortest(d.layer_norm_epsilon),
              "added to the variance in layer norms")
      .at_least(0);
  schema
      .number("model.hidden_dropout", shortest(d.hidden_dropout),
              "dropout after attention and MLP, in [0, 1)")
      .at_least(0)
      .at_most(1);
  schema
      .number("model.initializer_range", shortest(d.initializer_range),
              "standard deviation of the initial weights")
      .at_least(0);
}

nn::BloomConfig bloom_config_from(const Config& config) {
  nn::BloomConfig c;
  c.vocab_size = config.get<int64_t>("model.vocab_size");
  c.hidden_size = config.get<int64_t>("model.hidden_size");
  c.n_head = config.get<int64_t>("model.n_head");
  c.n_layer = config.get<int64_t>("model.n_layer");
  c.layer_norm_epsilon = static_cast<float>(config.get<double>("model.layer_norm_epsilon"));
  c.hidden_dropout = static_cast<float>(config.get<double>("model.hidden_dropout"));
  c.initializer_range = static_cast<float>(config.get<double>("model.initializer_range"));
  try {
    c.validate();
  } catch (const Error& e) {
    config.fail("model.hidden_size", e.what());
  }
  return c;
}

nn::BloomConfig bloom_config_from_yaml(const YAML::Node& model, const std::string& file) {
  TURBINE_CHECK(model, "{}: no `model:` section", file);
  ConfigSchema schema;
  declare_bloom_config(schema);
  YAML::Node root(YAML::NodeType::Map);
  root["model"] = model;  // shares the node, so its marks still give the file's lines
  return bloom_config_from(Config::from_yaml(root, file, schema));
}

nn::BloomConfig load_bloom_config(const std::string& path) {
  const YAML::Node root = read_yaml_file(path);
  TURBINE_CHECK(root["model"], "{}: no `model:` section", path);
  return bloom_config_from_yaml(root["model"], path);
}

std::string bloom_config_yaml(const nn::BloomConfig& c) {
  ConfigSchema schema;
  declare_bloom_config(schema);
  YAML::Node root(YAML::NodeType::Map);
  YAML::Node model = root["model"];
  model["type"] = "bloom";
  model["vocab_size"] = c.vocab_size;
  model["hidden_size"] = c.hidden_size;
  model["n_head"] = c.n_head;
  model["n_layer"] = c.n_layer;
  model["layer_norm_epsilon"] = shortest(c.layer_norm_epsilon);
  model["hidden_dropout"] = shortest(c.hidden_dropout);
  model["initializer_range"] = shortest(c.initializer_range);
  return Config::from_yaml(root, "model config", schema).to_yaml();
}

}  // namespace turbine::io
