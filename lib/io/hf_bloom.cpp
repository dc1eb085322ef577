// Hugging Face BLOOM folders to Turbine and back.
#include "io/hf_bloom.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/files.hpp"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace turbine::io {

namespace {

constexpr const char* kPrefix = "transformer.";
constexpr const char* kLmHead = "lm_head.weight";

// "a, b, c and 4 more"
std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 6);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

std::string strip_prefix(const std::string& name) {
  return name.rfind(kPrefix, 0) == 0 ? name.substr(std::strlen(kPrefix)) : name;
}

// 1e-5f as 1e-05, not 9.99999974738e-06.
double shortest(float value) {
  return std::stod(fmt::format("{}", value));
}

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::bf16:
      return "bfloat16";
    case DType::f16:
      return "float16";
    default:
      TURBINE_FAIL("Hugging Face weights are f32, bf16 or f16, not {}", dtype_name(dtype));
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  TURBINE_CHECK(out.good(), "cannot write {}", path.string());
}

}  // namespace

nn::BloomConfig bloom_config_from_hf(const std::string& path) {
  std::ifstream in(path);
  TURBINE_CHECK(in.good(), "cannot open {}", path);
  Json doc;
  try {
    doc = Json::parse(in);
  } catch (const Json::exception& e) {
    TURBINE_FAIL("{}: not valid JSON ({})", path, e.what());
  }
  TURBINE_CHECK(doc.is_object(), "{}: not a JSON object", path);
  const std::string type = doc.value("model_type", "bloom");
  TURBINE_CHECK(type == "bloom", "{}: model_type '{}' is not BLOOM (Turbine imports BLOOM only)",
                path, type);
  TURBINE_CHECK(!doc.value("apply_residual_connection_post_layernorm", false),
                "{}: apply_residual_connection_post_layernorm is true; Turbine's BLOOM adds the "
                "residual before the layer norm, as every released BLOOM does",
                path);

  // transformers' BloomConfig defaults and the aliases its attribute_map and
  // __init__ accept.
  auto integer = [&](std::initializer_list<const char*> keys, int64_t fallback) {
    for (const char* key : keys) {
      if (!doc.contains(key)) continue;
      TURBINE_CHECK(doc[key].is_number_integer(), "{}: {} must be an integer, not {}", path, key,
                    doc[key].dump());
      return doc[key].get<int64_t>();
    }
    return fallback;
  };
  auto number = [&](const char* key, double fallback) {
    if (!doc.contains(key)) return fallback;
    TURBINE_CHECK(doc[key].is_number(), "{}: {} must be a number, not {}", path, key,
                  doc[key].dump());
    return doc[key].get<double>();
  };
  nn::BloomConfig c;
  c.vocab_size = integer({"vocab_size"}, 250880);
  c.hidden_size = integer({"n_embed", "hidden_size"}, 64);
  c.n_layer = integer({"n_layer", "num_hidden_layers"}, 2);
  c.n_head = integer({"n_head", "num_attention_heads"}, 8);
  c.layer_norm_epsilon = static_cast<float>(number("layer_norm_epsilon", 1e-5));
  c.initializer_range = static_cast<float>(number("initializer_range", 0.02));
  c.hidden_dropout = static_cast<float>(number("hidden_dropout", 0.0));
  try {
    c.validate();
  } catch (const Error& e) {
    TURBINE_FAIL("{}: {}", path, e.what());
  }
  return c;
}

std::string hf_bloom_config_json(const nn::BloomConfig& c, const data::Tokenizer& tokenizer,
                                 DType weights_dtype) {
  Json doc = {{"architectures", {"BloomForCausalLM"}},
              {"model_type", "bloom"},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"n_layer", c.n_layer},
              {"n_head", c.n_head},
              {"layer_norm_epsilon", shortest(c.layer_norm_epsilon)},
              {"initializer_range", shortest(c.initializer_range)},
              {"hidden_dropout", shortest(c.hidden_dropout)},
              {"attention_dropout", 0.0},
              {"apply_residual_connection_post_layernorm", false},
              {"pretraining_tp", 1},
              {"slow_but_exact", false},
              {"tie_word_embeddings", true},
              {"use_cache", true},
              {"torch_dtype", torch_dtype_name(weights_dtype)}};
  // BLOOM's own tokens where the tokenizer has them, else GPT-2's one token.
  const auto eos = tokenizer.eos_id();
  const auto bos = tokenizer.token_id("<s>");
  const auto pad = tokenizer.token_id("<pad>");
  const auto unk = tokenizer.token_id("<unk>");
  if (eos) doc["eos_token_id"] = *eos;
  if (bos || eos) doc["bos_token_id"] = bos ? *bos : *eos;
  if (pad || eos) doc["pad_token_id"] = pad ? *pad : *eos;
  if (unk) doc["unk_token_id"] = *unk;
  return doc.dump(2) + "\n";
}

void load_hf_bloom_weights(const SafetensorsFolder& folder, const nn::ParameterList& params,
                           bool subset) {
  std::map<std::string, std::string> file_name;  // Turbine name -> the folder's
  std::vector<std::string> unexpected;
  std::optional<std::string> lm_head;
  for (const std::string& name : folder.names()) {
    if (name == kLmHead || name == std::string(kPrefix) + kLmHead) {
      lm_head = name;
      continue;
    }
    const std::string ours = strip_prefix(name);
    TURBINE_CHECK(!file_name.count(ours), "{}: '{}' is there with and without the prefix '{}'",
                  folder.dir(), ours, kPrefix);
    file_name[ours] = name;
  }
  std::set<std::string> wanted;
  std::vector<std::string> missing;
  for (const nn::Parameter& p : params) {
    wanted.insert(p.name);
    if (!file_name.count(p.name)) missing.push_back(p.name);
  }
  for (const auto& [ours, theirs] : file_name)
    if (!wanted.count(ours) && !subset) unexpected.push_back(theirs);
  TURBINE_CHECK(missing.empty(), "{}: the weights lack {} tensor(s) the model needs: {}",
                folder.dir(), missing.size(), name_list(missing));
  TURBINE_CHECK(unexpected.empty(),
                "{}: the weights have {} tensor(s) a BLOOM of this config.json does not: {}",
                folder.dir(), unexpected.size(), name_list(unexpected));

  for (const nn::Parameter& p : params) {
    const std::string& name = file_name.at(p.name);
    const SafetensorsEntry& e = folder.entry(name);
    TURBINE_CHECK(e.shape == p.tensor.shape(),
                  "{}: tensor '{}' has shape {}, but config.json makes it {}", folder.dir(), name,
                  shape_str(e.shape), shape_str(p.tensor.shape()));
    TURBINE_CHECK(e.dtype == "F32" || e.dtype == "BF16" || e.dtype == "F16",
                  "{}: tensor '{}' is {}; BLOOM weights are read from F32, BF16 or F16",
                  folder.dir(), name, e.dtype);
    Tensor(p.tensor).copy_from(folder.read(name).to(DType::f32));
  }
  if (lm_head && !subset) {
    const Tensor head = folder.read(*lm_head).to(DType::f32);
    const Tensor embeddings = folder.read(file_name.at("word_embeddings.weight")).to(DType::f32);
    TURBINE_CHECK(head.shape() == embeddings.shape() &&
                      std::memcmp(head.raw_data(), embeddings.raw_data(), head.nbytes()) == 0,
                  "{}: {} differs from the word embeddings; Turbine's BLOOM ties its LM head to "
                  "them (tie_word_embeddings), as every released BLOOM does",
                  folder.dir(), *lm_head);
  }
}

void save_hf_bloom(const std::string& dir, const nn::BloomConfig& config,
                   const nn::ParameterList& params, const data::Tokenizer& tokenizer, DType dtype) {
  write_folder_atomically(dir, [&](const fs::path& tmp) {
    write_text(tmp / "config.json", hf_bloom_config_json(config, tokenizer, dtype));
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const nn::Parameter& p : params)
      tensors.emplace_back(kPrefix + p.name, dtype == DType::f32 ? p.tensor : p.tensor.to(dtype));
    write_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});
    tokenizer.save((tmp / "tokenizer.json").string());
    Json tokenizer_config = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
    if (const auto eos = tokenizer.eos_id()) {
      const std::string text = tokenizer.decode(std::vector<int32_t>{*eos});
      tokenizer_config["eos_token"] = text;
      tokenizer_config["bos_token"] = tokenizer.token_id("<s>") ? "<s>" : text;
      tokenizer_config["pad_token"] = tokenizer.token_id("<pad>") ? "<pad>" : text;
    }
    write_text(tmp / "tokenizer_config.json", tokenizer_config.dump(2) + "\n");
  });
}

bool is_hf_folder(const std::string& dir) {
  const fs::path root(dir);
  return fs::exists(root / "config.json") && (fs::exists(root / "model.safetensors") ||
                                              fs::exists(root / "model.safetensors.index.json"));
}

}  // namespace turbine::io
