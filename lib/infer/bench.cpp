// infer bench (infer/bench.hpp).
#include "infer/bench.hpp"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "data/token_dataset.hpp"
#include "kernels/profiling.hpp"

namespace turbine::infer {

namespace {

// Copy bandwidth (bytes copied per second; each is read once and written
// once): 512 MiB split among the threads, best of 3.
double measure_copy_gb_per_s() {
  const size_t n = size_t(1) << 29;
  std::vector<char> from(n, 1), to(n, 0);
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    Timer t;
#pragma omp parallel
    {
      const size_t threads = size_t(omp_get_num_threads()), me = size_t(omp_get_thread_num());
      const size_t begin = n / threads * me, end = me + 1 == threads ? n : n / threads * (me + 1);
      std::memcpy(to.data() + begin, from.data() + begin, end - begin);
    }
    best = std::max(best, double(n) / t.seconds() / 1e9);
  }
  return best;
}

double resident_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  return 0;
}

// Read bandwidth: bytes per second an XOR over 512 MiB reads, split among
// the threads, best of 3 (integer lanes: the loop vectorizes without any
// reordering of float sums). Batch-1 decoding only reads its weights, so
// this is its tighter limit (a copy also writes every byte).
double measure_read_gb_per_s() {
  const size_t n = size_t(1) << 26;  // 8-byte words
  std::vector<uint64_t> data(n);
  for (size_t i = 0; i < n; ++i) data[i] = i * 0x9E3779B97F4A7C15ull;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int round = 0; round < 3; ++round) {
    Timer t;
    uint64_t folded = 0;
#pragma omp parallel for reduction(^ : folded) schedule(static)
    for (size_t i = 0; i < n; ++i) folded ^= data[i];
    best = std::max(best, double(n * sizeof(uint64_t)) / t.seconds() / 1e9);
    sink = sink ^ folded;
  }
  return best;
}

// Bytes one decoded token reads at batch 1 with `cached` positions: every
// weight of the blocks, the LM head (the embedding matrix), the cache; this
// rank's share of them under tensor parallelism.
double bytes_per_token(const LoadedModel& loaded, int64_t cached) {
  const nn::BloomConfig& c = loaded.model.config();
  const double share = double(loaded.model.heads()) / double(c.n_head);
  double bytes = 0;
  for (const nn::Parameter& p : loaded.model.parameters())
    if (p.name != "word_embeddings.weight") bytes += double(p.tensor.nbytes());
  bytes += double(loaded.compacted.bytes_after);  // compact weights are not parameters
  bytes += double(loaded.streamed_bytes);         // nor are streamed blocks
  bytes += loaded.lm_head_bytes > 0
               ? double(loaded.lm_head_bytes)  // the tied LM head
               : 4.0 * double(loaded.model.vocab_slice().count) * double(c.hidden_size);
  bytes += 2.0 * 4.0 * double(c.n_layer) * double(c.hidden_size) * share * double(cached);
  return bytes;
}

// Tokens/s of `steps` decode steps at `batch` after a 16-token prefill.
double decode_rate(const Decoder& decoder, int64_t batch, int64_t steps) {
  const int64_t prompt = 16;
  const nn::Bloom& model = decoder.model;
  nn::KvCache cache = decoder.new_cache(batch, prompt + steps + 1);
  std::vector<int32_t> ids(size_t(batch * prompt));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 7919 % model.config().vocab_size);
  decoder.decode(Tensor::from_vector<int32_t>({batch, prompt}, ids), cache);
  std::vector<int32_t> next(size_t(batch), 1);
  Timer t;
  for (int64_t s = 0; s < steps; ++s)  // logits on the host, as a sampler reads them
    decoder.decode(Tensor::from_vector<int32_t>({batch, 1}, next), cache);
  backend_for(model.device()).synchronize();
  return double(batch * steps) / t.seconds();
}

}  // namespace

BenchResult bench(const LoadedModel& loaded, const InferOptions& options) {
  const autograd::NoGradGuard inference;
  BenchResult r;
  r.resident_mib = resident_mib();  // the loaded model, before any measuring buffer
  r.copy_gb_per_s = measure_copy_gb_per_s();
  r.read_gb_per_s = measure_read_gb_per_s();
  const nn::Bloom& model = loaded.model;
  const Decoder decoder = loaded.decoder();
  {  // a 128-token prompt's prefill, after a warm-up
    for (int round = 0; round < 2; ++round) {
      nn::KvCache cache = decoder.new_cache(1, 129);
      std::vector<int32_t> ids(128);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 31 % model.config().vocab_size);
      Timer t;
      decoder.decode(Tensor::from_vector<int32_t>({1, 128}, ids), cache);
      r.time_to_first_token_s = t.seconds();
      r.prefill_tokens_per_s = 128 / r.time_to_first_token_s;
    }
  }
  const int64_t batches[3] = {1, 8, 32};
  for (int i = 0; i < 3; ++i) {
    decode_rate(decoder, batches[i], 2);  // warm-up
    r.decode_tokens_per_s[i] = decode_rate(decoder, batches[i], 16);
    log::info("decode batch {}: {:.1f} tokens/s", batches[i], r.decode_tokens_per_s[i]);
  }
  r.bytes_per_token = bytes_per_token(loaded, 24);
  r.bandwidth_limit_tokens_per_s = r.copy_gb_per_s * 1e9 / r.bytes_per_token;
  log::info("weights {}: prefill {:.1f} tokens/s (time to first token {:.3f} s for 128)",
            options.dtype, r.prefill_tokens_per_s, r.time_to_first_token_s);
  log::info("copy bandwidth {:.1f} GB/s, {:.1f} MB read per decoded token: limit {:.2f} tokens/s",
            r.copy_gb_per_s, r.bytes_per_token / 1e6, r.bandwidth_limit_tokens_per_s);
  log::info("decode vs bandwidth limit: {:.0f}%",
            100 * r.decode_tokens_per_s[0] / r.bandwidth_limit_tokens_per_s);
  r.read_limit_tokens_per_s = r.read_gb_per_s * 1e9 / r.bytes_per_token;
  log::info(
      "read bandwidth {:.1f} GB/s: limit {:.2f} tokens/s; decode vs read-bandwidth limit: "
      "{:.0f}%",
      r.read_gb_per_s, r.read_limit_tokens_per_s,
      100 * r.decode_tokens_per_s[0] / r.read_limit_tokens_per_s);
  log::info("resident memory {:.0f} MiB", r.resident_mib);
  if (loaded.streamer) {
    r.stream = loaded.streamer->stats();
    log_stream_stats(loaded);
  }
  return r;
}

std::string profile_decode(const LoadedModel& loaded, int64_t batch, int steps) {
  const autograd::NoGradGuard inference;
  const Device device = loaded.model.device();
  kernels::ProfilingBackend profiler(backend_for(device));
  decode_rate(loaded.decoder(), batch, 1);  // warm-up, unprofiled
  Timer timer;
  {
    ScopedBackend scoped(device, profiler);
    decode_rate(loaded.decoder(), batch, steps);
  }
  return fmt::format(
      "profile of decoding at batch {} (a 16-token prefill, then {} steps; every "
      "call synchronized), {:.3f} s in all\n{}",
      batch, steps, timer.seconds(), profiler.table(steps));
}

EvalResult evaluate_perplexity(const LoadedModel& loaded, const std::string& data_path,
                               int64_t tokens, int64_t window) {
  TURBINE_CHECK(!loaded.streamer && !loaded.tensor_parallel,
                "infer bench --eval runs on one rank with resident weights");
  TURBINE_CHECK(window >= 2 && tokens >= window, "--eval: window {} and tokens {} (>= window)",
                window, tokens);
  const data::TokenDataset dataset = data::TokenDataset::open(data_path);
  TURBINE_CHECK(dataset.tokenizer_identity() == loaded.tokenizer.identity(),
                "{} was tokenized with {}, but the model's tokenizer is {}: evaluate on data "
                "prepared with the checkpoint's tokenizer.json",
                data_path, dataset.tokenizer_identity(), loaded.tokenizer.identity());
  const int64_t available = dataset.num_tokens(data::Split::valid);
  TURBINE_CHECK(available >= window + 1,
                "{} holds {} validation tokens, fewer than one window of {}+1: prepare it with "
                "--valid-fraction, or lower --eval-window",
                data_path, available, window);
  const autograd::NoGradGuard inference;
  const nn::Bloom& model = loaded.model;
  EvalResult r;
  double nll_sum = 0;
  // Non-overlapping windows: tokens [s, s + window] predict [s + 1, s + window].
  for (int64_t start = 0; start + window + 1 <= available && r.tokens < tokens; start += window) {
    std::vector<int32_t> ids(size_t(window + 1));
    dataset.read(data::Split::valid, start, window + 1, ids.data());
    const std::vector<int32_t> input(ids.begin(), ids.end() - 1),
        target(ids.begin() + 1, ids.end());
    const Tensor h = model.hidden_states(Tensor::from_vector<int32_t>({1, window}, input));
    const Tensor logits = model.lm_head(h.view({window, model.config().hidden_size}));
    const Tensor loss = ops::cross_entropy(
        logits, Tensor::from_vector<int32_t>({window}, target).to(logits.device()), -100, nullptr);
    nll_sum += double(loss.item()) * double(window);
    r.tokens += window;
  }
  r.mean_nll = nll_sum / double(r.tokens);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

EvalQuality evaluate_quality(const std::string& checkpoint, Device device,
                             const InferOptions& options, const std::string& data_path,
                             int64_t tokens, int64_t window) {
  EvalQuality q;
  {
    const LoadedModel loaded = load_checkpoint(checkpoint, device, options);
    q.weights = evaluate_perplexity(loaded, data_path, tokens, window);
  }
  if (options.dtype == "f32") {
    q.f32 = q.weights;
  } else {
    InferOptions f32 = options;
    f32.dtype = "f32";
    q.f32 =
        evaluate_perplexity(load_checkpoint(checkpoint, device, f32), data_path, tokens, window);
  }
  log::info("eval: {} validation tokens of {} in windows of {}", q.weights.tokens, data_path,
            window);
  log::info("eval perplexity: f32 {:.4f}, {} {:.4f} ({:+.2f}%)", q.f32.perplexity, options.dtype,
            q.weights.perplexity, 100 * q.change());
  return q;
}

std::string eval_json(const EvalQuality& q, const InferOptions& options) {
  nlohmann::ordered_json line;
  line["weights"] = options.dtype;
  line["eval_tokens"] = q.weights.tokens;
  line["perplexity"] = q.weights.perplexity;
  line["perplexity_f32"] = q.f32.perplexity;
  line["perplexity_change"] = q.change();
  return line.dump();
}

std::string bench_json(const BenchResult& r, const LoadedModel& loaded,
                       const InferOptions& options) {
  const nn::BloomConfig& c = loaded.model.config();
  nlohmann::ordered_json line;
  line["weights"] = options.dtype;
  line["hidden"] = c.hidden_size;
  line["layers"] = c.n_layer;
  line["vocab"] = c.vocab_size;
  line["threads"] = omp_get_max_threads();
  line["copy_gb_per_s"] = r.copy_gb_per_s;
  line["prefill_tokens_per_s"] = r.prefill_tokens_per_s;
  line["time_to_first_token_s"] = r.time_to_first_token_s;
  line["decode_b1_tokens_per_s"] = r.decode_tokens_per_s[0];
  line["decode_b8_tokens_per_s"] = r.decode_tokens_per_s[1];
  line["decode_b32_tokens_per_s"] = r.decode_tokens_per_s[2];
  line["bytes_per_token"] = r.bytes_per_token;
  line["bandwidth_limit_tokens_per_s"] = r.bandwidth_limit_tokens_per_s;
  line["decode_vs_bandwidth_limit"] = r.decode_tokens_per_s[0] / r.bandwidth_limit_tokens_per_s;
  line["read_gb_per_s"] = r.read_gb_per_s;
  line["decode_vs_read_limit"] = r.decode_tokens_per_s[0] / r.read_limit_tokens_per_s;
  line["resident_mib"] = r.resident_mib;
  line["offload_param"] = options.offload.device;
  if (loaded.streamer) {
    line["stream_slots"] = loaded.streamer->slots();
    line["stream_gb_read"] = r.stream.bytes_read / 1e9;
    line["stream_read_s"] = r.stream.read_seconds;
    line["stream_wait_s"] = r.stream.wait_seconds;
  }
  return line.dump();
}

}  // namespace turbine::infer
