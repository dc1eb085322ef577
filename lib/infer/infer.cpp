// The infer job's config, checkpoint loading and streamed completions.
#include "infer/infer.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "dist/tensor_parallel.hpp"
#include "infer/convert.hpp"
#include "infer/stream.hpp"
#include "infer/text_stream.hpp"
#include "io/model_config.hpp"
#include "train/checkpoint.hpp"
#include "train/schema.hpp"

namespace turbine::infer {

io::ConfigSchema infer_schema() {
  io::ConfigSchema s;
  s.integer("inference.batch_size", 8, "prompts of a --prompts-file decoded together").at_least(1);
  s.string("device", "cpu", "where to compute: cpu, or cuda")
      .one_of({io::ConfigValue(std::string("cpu")), io::ConfigValue(std::string("cuda"))});
  s.string("inference.dtype", "f32",
           "weights of the linear layers: f32, bf16, f16 or int8 (weight-only, f32 accumulation)")
      .one_of({io::ConfigValue(std::string("f32")), io::ConfigValue(std::string("bf16")),
               io::ConfigValue(std::string("f16")), io::ConfigValue(std::string("int8"))});
  s.integer("inference.int8_group", 0,
            "int8: inputs per scale (must divide the layer widths); 0: one per output channel")
      .at_least(0);
  s.integer("inference.tensor_parallel.tp_size", 0,
            "ranks that split the model (Megatron's tensor parallelism; must divide n_head); 0: "
            "every rank of the job")
      .at_least(0);
  s.string("inference.zero.offload_param.device", "none",
           "stream the blocks' weights layer by layer (ZeRO-Inference) from nvme (a swap file) "
           "or cpu (host memory, for a GPU); none: keep them resident")
      .one_of({io::ConfigValue(std::string("none")), io::ConfigValue(std::string("cpu")),
               io::ConfigValue(std::string("nvme"))});
  s.string("inference.zero.offload_param.nvme_path", "",
           "folder of the swap file (fast local disk); empty: the system's temporary folder");
  s.number("inference.zero.offload_param.max_resident_mb", 0,
           "MiB of weights resident at once (embeddings, LM head, streamed slots); 0: two "
           "layers' slots")
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
  // infer serve
  s.integer("serve.block_size", 16, "positions per block of the paged KV cache").at_least(1);
  s.number("serve.kv_cache_mb", 0,
           "MiB of the KV block pool (per rank); 0: serve.kv_cache_fraction of the free memory")
      .at_least(0);
  s.number("serve.kv_cache_fraction", 0.5,
           "with kv_cache_mb 0: the share of the device's free memory (the host's available "
           "memory on the CPU) the block pool takes")
      .at_least(0);
  s.integer("serve.max_running", 64, "sequences stepped together at most (vLLM's max_num_seqs)")
      .at_least(1);
  s.integer("serve.step_tokens", 512,
            "tokens one step runs at most, decodes and prompt chunks together (vLLM's "
            "max_num_batched_tokens); at least max_running")
      .at_least(1);
  s.integer("serve.max_queued", 256, "requests waiting for room; past it the server answers 503")
      .at_least(0);
  s.number("serve.drain_seconds", 30,
           "after SIGTERM/SIGINT/SIGUSR1: seconds running requests get to finish before they are "
           "cancelled")
      .at_least(0);
  return s;
}

InferOptions infer_options(const io::Config& c, int world_size) {
  InferOptions o;
  o.device = c.get<std::string>("device");
  if (o.device == "cuda" && kernels::cuda_device_count() == 0)
    c.fail("device", "device cuda: no CUDA device is visible on this machine; use device: cpu");
  o.batch_size = c.get<int64_t>("inference.batch_size");
  o.dtype = c.get<std::string>("inference.dtype");
  o.int8_group = int(c.get<int64_t>("inference.int8_group"));
  o.max_out_tokens = c.get<int64_t>("inference.max_out_tokens");
  o.offload.device = c.get<std::string>("inference.zero.offload_param.device");
  o.offload.nvme_path = c.get<std::string>("inference.zero.offload_param.nvme_path");
  o.offload.max_resident_mb = c.get<double>("inference.zero.offload_param.max_resident_mb");
  if (o.offload.device == "cpu" && o.device == "cpu")
    c.fail("inference.zero.offload_param.device",
           "inference.zero.offload_param.device cpu streams host memory to a GPU; on device cpu "
           "the weights are in host memory already: use nvme to stream them from disk");
  o.tp_size = c.get<int64_t>("inference.tensor_parallel.tp_size");
  if (o.tp_size == 0) o.tp_size = world_size;
  if (o.tp_size != world_size)
    c.fail("inference.tensor_parallel.tp_size",
           fmt::format("inference.tensor_parallel.tp_size {} but the job has {} ranks: run it with "
                       "mpirun -np {} (replicas of a split model are not supported yet)",
                       o.tp_size, world_size, o.tp_size));
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
  o.serve.block_size = c.get<int64_t>("serve.block_size");
  o.serve.kv_cache_mb = c.get<double>("serve.kv_cache_mb");
  o.serve.kv_cache_fraction = c.get<double>("serve.kv_cache_fraction");
  if (o.serve.kv_cache_mb == 0 &&
      (o.serve.kv_cache_fraction <= 0 || o.serve.kv_cache_fraction > 0.95))
    c.fail("serve.kv_cache_fraction", "serve.kv_cache_fraction must be in (0, 0.95]");
  o.serve.max_running = c.get<int64_t>("serve.max_running");
  o.serve.step_tokens = c.get<int64_t>("serve.step_tokens");
  if (o.serve.step_tokens < o.serve.max_running)
    c.fail("serve.step_tokens",
           fmt::format("serve.step_tokens {} must be at least serve.max_running {}: every running "
                       "sequence decodes a token each step",
                       o.serve.step_tokens, o.serve.max_running));
  o.serve.max_queued = c.get<int64_t>("serve.max_queued");
  o.serve.drain_seconds = c.get<double>("serve.drain_seconds");
  o.resolved_yaml = train::resolved_yaml(c, {});
  return o;
}

namespace {
DType weight_type(const InferOptions& options) {
  return options.dtype == "int8" ? DType::i8 : dtype_from_name(options.dtype);
}

// Decode's LM head in the weight type; on one CPU rank the compact copy then
// serves the lookups too, and the f32 table goes.
void compact_head(LoadedModel& loaded, const InferOptions& options) {
  loaded.lm_head_bytes = loaded.model.compact_lm_head(weight_type(options), options.int8_group);
  if (loaded.model.device().is_cpu() && options.tp_size == 1) loaded.model.drop_f32_embedding();
}

// Resident blocks: split over the tensor-parallel ranks, then each rank's
// part (and its slice of the LM head) compacted to options.dtype.
void prepare(LoadedModel& loaded, const InferOptions& options, dist::Communicator* world) {
  if (options.tp_size > 1) {
    TURBINE_CHECK(world != nullptr && world->size() == options.tp_size,
                  "tensor parallelism over {} ranks needs a job of {} ranks", options.tp_size,
                  options.tp_size);
    loaded.tensor_parallel =
        std::make_unique<dist::ProcessGroup>(world->split(0, world->rank()), loaded.model.device());
    dist::split_bloom(loaded.model, *loaded.tensor_parallel);
  }
  if (options.dtype != "f32") {
    loaded.compacted = nn::compact_linears(loaded.model, weight_type(options), options.int8_group);
    compact_head(loaded, options);
  }
}

// Streamed blocks: the LM head compacted, and a BlockStreamer staging the
// blocks that load_block fills.
void stream(LoadedModel& loaded, const InferOptions& options,
            const std::function<void(int64_t, nn::BloomBlock&)>& load_block) {
  TURBINE_CHECK(options.tp_size == 1,
                "weight streaming (inference.zero.offload_param) with tensor parallelism is not "
                "supported yet: run one rank, or keep the weights resident");
  if (options.dtype != "f32") compact_head(loaded, options);
  int64_t resident = loaded.lm_head_bytes;
  for (const nn::Parameter& p : loaded.model.parameters()) resident += int64_t(p.tensor.nbytes());
  loaded.streamer = std::make_unique<BlockStreamer>(loaded.model.config(), loaded.model.device(),
                                                    weight_type(options), options.int8_group,
                                                    options.offload, resident, load_block);
  loaded.streamed_bytes = loaded.streamer->layer_bytes() * loaded.model.config().n_layer;
  loaded.model.set_block_source(loaded.streamer.get());
}

nn::Bloom::Blocks blocks_of(const InferOptions& options) {
  return options.offload.device == "none" ? nn::Bloom::Blocks::resident
                                          : nn::Bloom::Blocks::streamed;
}

// A model with its resident parts loaded made ready to decode: streamed
// (load_block fills each block) or split and compacted.
void finish(LoadedModel& loaded, const InferOptions& options, dist::Communicator* world,
            const std::function<void(int64_t, nn::BloomBlock&)>& load_block) {
  loaded.model.set_training(false);
  if (blocks_of(options) == nn::Bloom::Blocks::streamed)
    stream(loaded, options, load_block);
  else
    prepare(loaded, options, world);
  backend_for(loaded.model.device()).release_cached();  // the f32 or unsplit weights' blocks
}
}  // namespace

LoadedModel load_checkpoint(const std::string& checkpoint, Device device,
                            const InferOptions& options, dist::Communicator* world) {
  const WeightReader reader(checkpoint);
  reader.config().check_tensor_parallel(options.tp_size);  // before any weight is read
  const nn::Bloom::Blocks blocks = blocks_of(options);
  LoadedModel loaded(nn::Bloom(reader.config(), 0, device, blocks), reader.tokenizer());
  reader.load(loaded.model.parameters(), /*subset=*/blocks == nn::Bloom::Blocks::streamed);
  finish(loaded, options, world, [&](int64_t layer, nn::BloomBlock& block) {
    nn::ParameterList params;
    block.parameters(fmt::format("h.{}.", layer), params);
    reader.load(params, /*subset=*/true);
  });
  return loaded;
}

LoadedModel random_model(const std::string& model_yaml, Device device, const InferOptions& options,
                         dist::Communicator* world) {
  LoadedModel loaded(nn::Bloom(io::load_bloom_config(model_yaml), 1, device, blocks_of(options)));
  finish(loaded, options, world, [](int64_t, nn::BloomBlock&) {});  // their own random weights
  return loaded;
}

Completion complete(const LoadedModel& loaded, const std::string& prompt,
                    const InferOptions& options,
                    const std::function<void(std::string_view)>& on_text,
                    const std::vector<std::string>& stop) {
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
  TextStream stream(loaded.tokenizer, stop, int32_t(sampling.stop_token));
  Timer timer;
  generate(loaded.decoder(), out.prompt_tokens, sampling, [&](int32_t token) {
    if (out.tokens.empty()) out.seconds_to_first_token = timer.seconds();
    out.tokens.push_back(token);
    const std::string fresh = stream.push(token);
    if (on_text && !fresh.empty()) on_text(fresh);
    return !stream.stopped();
  });
  const double seconds = timer.seconds();
  const std::string rest = stream.finish();
  if (on_text && !rest.empty()) on_text(rest);
  out.text = stream.text();
  out.finish_reason = stream.stopped() ? "stop" : "length";
  out.tokens_per_second = seconds > 0 ? double(out.tokens.size()) / seconds : 0;
  return out;
}

namespace {

template <typename T>
T json_value(const nlohmann::json& line, const char* key, T fallback, const std::string& where) {
  if (!line.contains(key)) return fallback;
  try {
    return line.at(key).get<T>();
  } catch (const std::exception&) {
    TURBINE_FAIL("{}: \"{}\" has the wrong type ({})", where, key, line.at(key).dump());
  }
}

}  // namespace

std::vector<Request> read_prompts_file(const std::string& path, const SamplingOptions& defaults) {
  std::ifstream in(path);
  TURBINE_CHECK(in.is_open(), "prompts file {} cannot be read", path);
  static const std::vector<std::string> known = {"prompt", "max_new_tokens", "temperature",
                                                 "top_k",  "top_p",          "repetition_penalty",
                                                 "seed",   "stop",           "logprobs"};
  std::vector<Request> out;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines
    const std::string where = fmt::format("{} line {}", path, number);
    nlohmann::json line;
    try {
      line = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      TURBINE_FAIL("{}: not JSON: {}", where, e.what());
    }
    TURBINE_CHECK(line.is_object() && line.contains("prompt") && line["prompt"].is_string(),
                  "{}: each line must be an object with a \"prompt\" string", where);
    for (const auto& [key, value] : line.items())
      TURBINE_CHECK(std::find(known.begin(), known.end(), key) != known.end(),
                    "{}: unknown key \"{}\" (known: prompt, max_new_tokens, temperature, top_k, "
                    "top_p, repetition_penalty, seed, stop, logprobs)",
                    where, key);
    Request r;
    r.prompt = line["prompt"].get<std::string>();
    r.sampling = defaults;
    r.sampling.max_new_tokens = json_value(line, "max_new_tokens", defaults.max_new_tokens, where);
    r.sampling.temperature = json_value(line, "temperature", defaults.temperature, where);
    r.sampling.top_k = json_value(line, "top_k", defaults.top_k, where);
    r.sampling.top_p = json_value(line, "top_p", defaults.top_p, where);
    r.sampling.repetition_penalty =
        json_value(line, "repetition_penalty", defaults.repetition_penalty, where);
    r.sampling.seed = json_value(line, "seed", defaults.seed, where);
    r.logprobs = json_value(line, "logprobs", false, where);
    if (line.contains("stop")) {
      if (line["stop"].is_string())
        r.stop = {line["stop"].get<std::string>()};
      else
        r.stop = json_value(line, "stop", std::vector<std::string>{}, where);
    }
    TURBINE_CHECK(r.sampling.max_new_tokens >= 1 && r.sampling.temperature >= 0 &&
                      r.sampling.top_k >= 0 && r.sampling.top_p > 0 && r.sampling.top_p <= 1 &&
                      r.sampling.repetition_penalty > 0,
                  "{}: max_new_tokens >= 1, temperature >= 0, top_k >= 0, top_p in (0, 1] and "
                  "repetition_penalty > 0 are required",
                  where);
    out.push_back(std::move(r));
  }
  TURBINE_CHECK(!out.empty(), "prompts file {} holds no prompts", path);
  return out;
}

std::vector<Completion> complete_batch(const LoadedModel& loaded, const std::vector<Request>& batch,
                                       const InferOptions& options) {
  const autograd::NoGradGuard inference;
  const int64_t rows = int64_t(batch.size()), vocab = loaded.model.config().vocab_size;
  const int32_t eos = loaded.tokenizer.eos_id().value_or(-1);
  std::vector<Completion> out(batch.size());
  int64_t width = 0, longest_output = 1;
  for (int64_t r = 0; r < rows; ++r) {
    Completion& c = out[size_t(r)];
    c.prompt_tokens = loaded.tokenizer.encode(batch[size_t(r)].prompt);
    TURBINE_CHECK(!c.prompt_tokens.empty(), "prompt {} of the batch encodes to no tokens", r + 1);
    TURBINE_CHECK(int64_t(c.prompt_tokens.size()) < options.max_out_tokens,
                  "prompt {} of the batch has {} tokens, but a sequence may hold {} "
                  "(inference.max_out_tokens) with at least one generated",
                  r + 1, c.prompt_tokens.size(), options.max_out_tokens);
    width = std::max(width, int64_t(c.prompt_tokens.size()));
    longest_output = std::max(longest_output, batch[size_t(r)].sampling.max_new_tokens);
  }
  const int64_t capacity = std::min(options.max_out_tokens, width + longest_output);
  const Decoder decoder = loaded.decoder();
  nn::KvCache cache = decoder.new_cache(rows, capacity);
  std::vector<int32_t> padded;
  std::vector<uint8_t> valid;
  for (const Completion& c : out)
    for (int64_t t = 0; t < width; ++t) {
      const int64_t pad = width - int64_t(c.prompt_tokens.size());
      padded.push_back(t < pad ? 0 : c.prompt_tokens[size_t(t - pad)]);
      valid.push_back(t < pad ? 0 : 1);
    }
  Timer timer;
  Tensor logits = decoder.decode(Tensor::from_vector<int32_t>({rows, width}, padded), cache, valid);
  std::vector<bool> done(static_cast<size_t>(rows), false);
  std::vector<TextStream> streams;
  for (const Request& q : batch) streams.emplace_back(loaded.tokenizer, q.stop, eos);
  std::vector<std::vector<int32_t>> history(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) history[size_t(r)] = out[size_t(r)].prompt_tokens;
  for (int64_t step = 0;; ++step) {
    const auto all = logits.to_vector<float>();
    std::vector<int32_t> next(static_cast<size_t>(rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
      if (done[size_t(r)]) continue;
      const Request& q = batch[size_t(r)];
      Completion& c = out[size_t(r)];
      double logprob = 0;
      const int32_t token = sample_token(all.data() + r * vocab, vocab, q.sampling,
                                         history[size_t(r)], uint64_t(step), &logprob);
      if (c.tokens.empty()) c.seconds_to_first_token = timer.seconds();
      c.tokens.push_back(token);
      history[size_t(r)].push_back(token);
      if (q.logprobs) c.logprobs.push_back(logprob);
      next[size_t(r)] = token;
      streams[size_t(r)].push(token);
      if (streams[size_t(r)].stopped()) {
        c.finish_reason = "stop";
        done[size_t(r)] = true;
      } else if (int64_t(c.tokens.size()) >= q.sampling.max_new_tokens ||
                 cache.length() >= capacity) {
        c.finish_reason = "length";
        done[size_t(r)] = true;
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    // The batch steps together: finished rows are fed token 0 and their
    // logits are not read.
    logits = decoder.decode(Tensor::from_vector<int32_t>({rows, 1}, next), cache);
  }
  const double seconds = timer.seconds();
  for (int64_t r = 0; r < rows; ++r) {
    Completion& c = out[size_t(r)];
    streams[size_t(r)].finish();
    c.text = streams[size_t(r)].text();
    c.tokens_per_second = seconds > 0 ? double(c.tokens.size()) / seconds : 0;
  }
  return out;
}

void log_stream_stats(const LoadedModel& loaded) {
  if (!loaded.streamer) return;
  const StreamStats s = loaded.streamer->stats();
  log::info(
      "weights streamed: {} layers, {:.3f} GB read in {:.3f} s ({:.2f} GB/s); decoding "
      "waited {:.3f} s for them: {:.0f}% of the reading overlapped computation",
      s.layers_read, s.bytes_read / 1e9, s.read_seconds,
      s.read_seconds > 0 ? s.bytes_read / 1e9 / s.read_seconds : 0.0, s.wait_seconds,
      s.read_seconds > 0 ? 100 * std::max(0.0, 1 - s.wait_seconds / s.read_seconds) : 100.0);
}

std::string completion_json(const Completion& c) {
  nlohmann::ordered_json line;
  line["text"] = c.text;
  line["tokens"] = c.tokens;
  line["prompt_tokens"] = c.prompt_tokens.size();
  line["finish_reason"] = c.finish_reason;
  if (!c.logprobs.empty()) line["logprobs"] = c.logprobs;
  line["seconds_to_first_token"] = c.seconds_to_first_token;
  line["tokens_per_second"] = c.tokens_per_second;
  // Invalid UTF-8 (a character cut by max_new_tokens) is replaced, not fatal.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace turbine::infer
