// The infer job's config, checkpoint loading and streamed completions.
#include "infer/infer.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "io/model_config.hpp"
#include "train/checkpoint.hpp"
#include "train/schema.hpp"

namespace turbine::infer {

namespace fs = std::filesystem;

io::ConfigSchema infer_schema() {
  io::ConfigSchema s;
  s.string("device", "cpu", "where to compute: cpu, or cuda")
      .one_of({io::ConfigValue(std::string("cpu")), io::ConfigValue(std::string("cuda"))});
  s.string("inference.dtype", "f32",
           "weights of the linear layers: f32, bf16, f16 or int8 (weight-only, f32 accumulation)")
      .one_of({io::ConfigValue(std::string("f32")), io::ConfigValue(std::string("bf16")),
               io::ConfigValue(std::string("f16")), io::ConfigValue(std::string("int8"))});
  s.integer("inference.int8_group", 0,
            "int8: inputs per scale (must divide the layer widths); 0: one per output channel")
      .at_least(0);
  s.integer("inference.max_out_tokens", 1024,
            "tokens one sequence may hold, prompt and output (the KV cache's size)")
      .at_least(2);
  s.integer("sampling.max_new_tokens", 128, "tokens to generate at most").at_least(1);
  s.number("sampling.temperature", 0.8, "sampling temperature; 0: greedy").at_least(0);
  s.integer("sampling.top_k", 40, "sample among the k likeliest tokens; 0: all").at_least(0);
  s.number("sampling.top_p", 1.0,
           "nucleus sampling: the likeliest tokens whose probability first reaches top_p; 1: all")
      .at_least(0);
  s.number("sampling.repetition_penalty", 1.0,
           "divide (positive) or multiply (negative) the logits of tokens already in the text; "
           "1: off")
      .at_least(0);
  s.integer("sampling.seed", 0, "seed of the sampling draws (reproducible)").at_least(0);
  return s;
}

InferOptions infer_options(const io::Config& c, int /*world_size*/) {
  InferOptions o;
  o.device = c.get<std::string>("device");
  if (o.device == "cuda" && kernels::cuda_device_count() == 0)
    c.fail("device", "device cuda: no CUDA device is visible on this machine; use device: cpu");
  o.dtype = c.get<std::string>("inference.dtype");
  o.int8_group = int(c.get<int64_t>("inference.int8_group"));
  o.max_out_tokens = c.get<int64_t>("inference.max_out_tokens");
  o.sampling.max_new_tokens = c.get<int64_t>("sampling.max_new_tokens");
  o.sampling.temperature = c.get<double>("sampling.temperature");
  o.sampling.top_k = c.get<int64_t>("sampling.top_k");
  o.sampling.seed = uint64_t(c.get<int64_t>("sampling.seed"));
  o.sampling.top_p = c.get<double>("sampling.top_p");
  if (o.sampling.top_p <= 0 || o.sampling.top_p > 1)
    c.fail("sampling.top_p", fmt::format("sampling.top_p {} must be in (0, 1]", o.sampling.top_p));
  o.sampling.repetition_penalty = c.get<double>("sampling.repetition_penalty");
  if (o.sampling.repetition_penalty <= 0)
    c.fail("sampling.repetition_penalty", "sampling.repetition_penalty must be > 0");
  o.sampling.context = o.max_out_tokens;
  o.resolved_yaml = train::resolved_yaml(c, {});
  return o;
}

namespace {
std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TURBINE_CHECK(in.is_open(), "{} cannot be read", path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}
}  // namespace

LoadedModel load_checkpoint(const std::string& checkpoint, Device device,
                            const InferOptions& options) {
  const fs::path dir(checkpoint);
  TURBINE_CHECK(fs::is_directory(dir),
                "checkpoint {} is not a folder (give a checkpoints/step_N folder that pretrain "
                "wrote)",
                checkpoint);
  for (const char* file : {"config.yaml", "model.h5"})
    TURBINE_CHECK(fs::exists(dir / file), "checkpoint {} has no {}: not a complete checkpoint",
                  checkpoint, file);
  TURBINE_CHECK(fs::exists(dir / "tokenizer.json"),
                "checkpoint {} has no tokenizer.json (checkpoints written before tokenizers "
                "travelled with them: copy the tokenizer.json of its data set there)",
                checkpoint);
  const nn::BloomConfig config = io::load_bloom_config((dir / "config.yaml").string());
  LoadedModel loaded{nn::Bloom(config, 0, device),
                     data::Tokenizer::from_json(read_file(dir / "tokenizer.json"),
                                                (dir / "tokenizer.json").string()),
                     {}};
  TURBINE_CHECK(loaded.tokenizer.vocab_size() <= config.vocab_size,
                "checkpoint {}: its tokenizer has {} tokens, the model {}", checkpoint,
                loaded.tokenizer.vocab_size(), config.vocab_size);
  train::CheckpointStore::load_weights(checkpoint, loaded.model.parameters());
  loaded.model.set_training(false);
  if (options.dtype != "f32") {
    const DType type = options.dtype == "int8" ? DType::i8 : dtype_from_name(options.dtype);
    loaded.compacted = nn::compact_linears(loaded.model, type, options.int8_group);
  }
  return loaded;
}

namespace {
// Bytes of `text` that end on a whole UTF-8 character.
size_t complete_utf8_prefix(std::string_view text) {
  size_t end = text.size();
  // Step back over at most 3 continuation bytes to the last lead byte.
  size_t i = end;
  for (int back = 0; back < 4 && i > 0; ++back) {
    const auto c = static_cast<unsigned char>(text[i - 1]);
    if ((c & 0xC0) != 0x80) {  // ASCII or a lead byte
      const size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
      return end - (i - 1) >= need ? end : i - 1;
    }
    --i;
  }
  return end;
}
}  // namespace

Completion complete(const LoadedModel& loaded, const std::string& prompt,
                    const InferOptions& options,
                    const std::function<void(std::string_view)>& on_text) {
  Completion out;
  out.prompt_tokens = loaded.tokenizer.encode(prompt);
  TURBINE_CHECK(!out.prompt_tokens.empty(), "the prompt encodes to no tokens");
  const int64_t room = options.max_out_tokens - int64_t(out.prompt_tokens.size());
  TURBINE_CHECK(room >= 1,
                "the prompt has {} tokens, but a sequence may hold {} (inference.max_out_tokens) "
                "with at least one generated",
                out.prompt_tokens.size(), options.max_out_tokens);
  SamplingOptions sampling = options.sampling;
  sampling.max_new_tokens = std::min(sampling.max_new_tokens, room);
  sampling.stop_token = loaded.tokenizer.eos_id().value_or(-1);
  size_t streamed = 0;
  Timer timer;
  generate(loaded.model, out.prompt_tokens, sampling, [&](int32_t token) {
    if (out.tokens.empty()) out.seconds_to_first_token = timer.seconds();
    out.tokens.push_back(token);
    if (token == sampling.stop_token) return;
    const std::string text = loaded.tokenizer.decode(out.tokens);
    const size_t ready = complete_utf8_prefix(text);
    if (ready > streamed && on_text) on_text(std::string_view(text).substr(streamed, ready - streamed));
    streamed = std::max(streamed, ready);
  });
  const double seconds = timer.seconds();
  const bool stopped = !out.tokens.empty() && out.tokens.back() == sampling.stop_token;
  std::vector<int32_t> text_tokens = out.tokens;
  if (stopped) text_tokens.pop_back();
  out.text = loaded.tokenizer.decode(text_tokens);
  if (on_text && out.text.size() > streamed) on_text(std::string_view(out.text).substr(streamed));
  out.finish_reason = stopped ? "stop" : "length";
  out.tokens_per_second = seconds > 0 ? double(out.tokens.size()) / seconds : 0;
  return out;
}

}  // namespace turbine::infer
