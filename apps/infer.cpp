// infer: text generation from a BLOOM checkpoint with a KV cache, on the CPU
// or a GPU, with f32, bf16, f16 or int8 weights.
//   infer generate --checkpoint runs/pretrain/checkpoints/step_N --prompt "And God said"
//   infer generate --checkpoint DIR --prompts-file prompts.jsonl > results.jsonl
//   infer bench --model configs/models/bloom-560m.yaml --set inference.dtype=int8
//   infer serve --checkpoint DIR --port 8000   (OpenAI-compatible HTTP server)
//   infer load --port 8000 --requests-file R.jsonl --concurrency 32
//   mpirun -np 2 infer generate ...   (tensor parallelism over the ranks)
//   infer generate --checkpoint VISUALCHAT --image a.png --image b.png --prompt "Which ...?"
// A checkpoint is what pretrain writes, or a Hugging Face BLOOM folder.
#include "infer/infer.hpp"

#include <cstdio>
#include <filesystem>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "infer/bench.hpp"
#include "infer/engine.hpp"
#include "infer/load_client.hpp"
#include "infer/server.hpp"
#include "multimodal/model.hpp"
#include "train/job.hpp"

using namespace turbine;

namespace {

// What the command line asks for, besides the job's config flags.
struct Args {
  std::string checkpoint, model_yaml;  // bench, serve: one of them
  std::string tokenizer;               // serve --model
  std::string prompt, prompts_file;    // generate: one of them
  std::vector<std::string> stop;       // generate --prompt
  std::vector<std::string> images;     // generate --image (VisualChat)
  std::string eval_data;               // bench --eval
  int64_t eval_tokens = 16384, eval_window = 256;
  std::vector<int64_t> profile_batches;  // bench --profile
  infer::HttpOptions http;               // serve
  // load: the requests (JSON bodies), how many to send, the expected tokens
  std::string requests_file, expect_file;
  int64_t requests = 0;
  infer::LoadOptions load;
};

// infer bench --eval: the perplexity of these weights and of f32 ones.
int run_eval(train::Job& job, const infer::InferOptions& options, const Args& a) {
  const infer::EvalQuality q =
      infer::evaluate_quality(a.checkpoint, job.pick_device(options.device), options, a.eval_data,
                              a.eval_tokens, a.eval_window);
  if (job.leader()) std::printf("%s\n", infer::eval_json(q, options).c_str());
  return 0;
}

// infer bench: the speed figures (and kernel profiles) of a checkpoint or of
// random weights of a model config's shape.
int run_bench(train::Job& job, const infer::InferOptions& options, const Args& a) {
  const Device device = job.pick_device(options.device);
  const infer::LoadedModel loaded =
      a.model_yaml.empty() ? infer::load_checkpoint(a.checkpoint, device, options, &job.world())
                           : infer::random_model(a.model_yaml, device, options, &job.world());
  const infer::BenchResult result = infer::bench(loaded, options);
  for (const int64_t batch : a.profile_batches) {  // every rank decodes; rank 0 prints
    const std::string table = infer::profile_decode(loaded, batch, 4);
    if (job.leader()) std::fputs(table.c_str(), stderr);
  }
  if (job.leader()) std::printf("%s\n", infer::bench_json(result, loaded, options).c_str());
  return 0;
}

// One prompt, its continuation streamed to stdout as it is produced.
int run_prompt(train::Job& job, const infer::LoadedModel& loaded,
               const infer::InferOptions& options, const Args& a) {
  const bool writer = job.leader();
  if (writer) std::fputs(a.prompt.c_str(), stdout);
  const infer::Completion c = infer::complete(
      loaded, a.prompt, options,
      [&](std::string_view text) {
        if (!writer) return;
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      },
      a.stop);
  if (writer) std::fputc('\n', stdout);
  log::info("{} prompt tokens, {} generated ({}), first token after {:.3f} s, {:.1f} tokens/s",
            c.prompt_tokens.size(), c.tokens.size(), c.finish_reason, c.seconds_to_first_token,
            c.tokens_per_second);
  return 0;
}

// A prompts file in batches, in file order, a JSON result a line; a stop
// signal ends the run after the current batch, on every rank alike.
int run_prompts_file(train::Job& job, const infer::LoadedModel& loaded,
                     const infer::InferOptions& options,
                     const std::vector<infer::Request>& requests) {
  for (size_t first = 0; first < requests.size(); first += size_t(options.batch_size)) {
    if (job.world().any(stop_requested())) {
      log::info("stopped on request ({}) after {} of {} prompts", stop_signal_name(), first,
                requests.size());
      return kExitStoppedResumable;
    }
    const size_t end = std::min(requests.size(), first + size_t(options.batch_size));
    const std::vector<infer::Request> batch(requests.begin() + long(first),
                                            requests.begin() + long(end));
    for (const infer::Completion& c : infer::complete_batch(loaded, batch, options))
      if (job.leader()) std::printf("%s\n", infer::completion_json(c).c_str());
    std::fflush(stdout);
    log::info("prompts {}-{} of {} done", first + 1, end, requests.size());
  }
  return 0;
}

// infer generate with a VisualChat checkpoint: the prompt is a question
// about the --image files, answered greedily.
int run_visualchat(train::Job& job, const infer::InferOptions& options, const Args& a) {
  TURBINE_CHECK(!a.prompt.empty(),
                "infer generate: a VisualChat checkpoint answers --prompt "
                "(a question about the --image files)");
  TURBINE_CHECK(job.world().size() == 1, "infer generate: VisualChat runs on one rank");
  multimodal::LoadedVisualChat chat =
      multimodal::load_visualchat(a.checkpoint, job.pick_device(options.device));
  const std::string answer =
      multimodal::answer_question(chat, a.images, {}, a.prompt, options.sampling.max_new_tokens);
  std::printf("%s\n", answer.c_str());
  log::info("{} image(s), {} attention; answered greedily", a.images.size(),
            chat.model->options().mmca ? "MMCA" : "causal");
  return 0;
}

// infer generate. Under tensor parallelism every rank decodes the same
// steps; rank 0 writes.
int run_generate(train::Job& job, const infer::InferOptions& options, const Args& a) {
  if (multimodal::is_visualchat_checkpoint(a.checkpoint)) return run_visualchat(job, options, a);
  TURBINE_CHECK(a.images.empty(),
                "infer generate: --image needs a VisualChat checkpoint (rlhf sft with "
                "model.type: visualchat); {} is a language model",
                a.checkpoint);
  const std::vector<infer::Request> requests =  // read first: a bad file fails fast
      a.prompts_file.empty() ? std::vector<infer::Request>{}
                             : infer::read_prompts_file(a.prompts_file, options.sampling);
  const infer::LoadedModel loaded =
      infer::load_checkpoint(a.checkpoint, job.pick_device(options.device), options, &job.world());
  if (loaded.compacted.layers > 0)
    log::info("weights: {} linear layers and the LM head in {}, {:.1f} MiB instead of {:.1f} MiB",
              loaded.compacted.layers, options.dtype,
              (loaded.compacted.bytes_after + loaded.lm_head_bytes) / 1048576.0,
              (loaded.compacted.bytes_before +
               4.0 * loaded.model.config().vocab_size * loaded.model.config().hidden_size) /
                  1048576.0);
  const int status = a.prompts_file.empty() ? run_prompt(job, loaded, options, a)
                                            : run_prompts_file(job, loaded, options, requests);
  if (status == 0) infer::log_stream_stats(loaded);
  return status;
}

// infer serve: the HTTP server on rank 0 (up at once, /health says when the
// weights are in), the engine's loop on every rank.
int run_serve(train::Job& job, const infer::InferOptions& options, Args a) {
  const std::filesystem::path source =
      std::filesystem::path(a.model_yaml.empty() ? a.checkpoint : a.model_yaml).lexically_normal();
  if (a.http.model_name.empty())
    a.http.model_name = a.model_yaml.empty() ? source.filename().string() : source.stem().string();
  if (a.http.model_name.empty()) a.http.model_name = source.parent_path().filename().string();
  infer::Metrics metrics;
  std::unique_ptr<infer::Server> server;
  if (job.leader()) server = std::make_unique<infer::Server>(a.http, options, metrics);
  const Device device = job.pick_device(options.device);
  infer::LoadedModel loaded =
      a.model_yaml.empty() ? infer::load_checkpoint(a.checkpoint, device, options, &job.world())
                           : infer::random_model(a.model_yaml, device, options, &job.world());
  if (!a.tokenizer.empty()) loaded.tokenizer = data::Tokenizer::load(a.tokenizer);
  TURBINE_CHECK(loaded.tokenizer.vocab_size() > 0,
                "infer serve: {} has no tokenizer (tokenizer.json); give one with --tokenizer",
                source.string());
  infer::Engine engine(loaded, options.serve, options.max_out_tokens,
                       job.leader() ? &metrics : nullptr);
  multimodal::LoadedVisualChat visualchat;
  if (a.model_yaml.empty() && multimodal::is_visualchat_checkpoint(a.checkpoint)) {
    TURBINE_CHECK(job.world().size() == 1, "infer serve: a VisualChat model runs on one rank");
    visualchat = multimodal::load_visualchat(a.checkpoint, device);
    if (server) server->attach_visualchat(visualchat);
  }
  if (server) server->attach(loaded, engine);
  engine.run();  // until a stop signal drains it
  if (server) server->stop();
  const infer::Engine::Stats stats = engine.stats();
  log::info("served {} engine steps; stopped", stats.steps);
  return 0;
}

// infer load: a bounded client; the report on stdout, exit 1 on any failure.
int run_load(const Args& a) {
  const std::vector<infer::LoadRequest> requests =
      infer::read_load_requests(a.requests_file, a.requests, a.expect_file);
  const infer::LoadReport report = infer::run_load(requests, a.load);
  std::printf("%s\n", infer::load_report_json(report, a.load).c_str());
  std::fprintf(stderr,
               "%zu requests at concurrency %d: %lld failed, %.2f requests/s, %.1f tokens/s, time "
               "to first token p50 %.1f ms p99 %.1f ms, inter-token p50 %.1f ms p99 %.1f ms\n",
               requests.size(), a.load.concurrency, static_cast<long long>(report.failed),
               report.requests_per_second, report.tokens_per_second, report.ttft_p50 * 1e3,
               report.ttft_p99 * 1e3, report.itl_p50 * 1e3, report.itl_p99 * 1e3);
  for (const infer::LoadResult& r : report.results)
    if (!r.ok) std::fprintf(stderr, "failed: %s\n", r.error.c_str());
  return report.failed == 0 ? 0 : 1;
}

// --checkpoint or --model (random weights of a config's shape), one of them.
void add_model_source(CLI::App& command, Args& a, const std::string& checkpoint_help,
                      const std::string& model_help) {
  auto* checkpoint = command.add_option("--checkpoint", a.checkpoint, checkpoint_help);
  command.add_option("--model", a.model_yaml, model_help)->excludes(checkpoint);
  command.callback([&a] {
    if (a.checkpoint.empty() && a.model_yaml.empty())
      throw CLI::RequiredError("--checkpoint or --model");
  });
}

CLI::App* add_generate(CLI::App& cli, Args& a) {
  CLI::App* generate = cli.add_subcommand("generate", "continue prompts; text streams to stdout");
  generate->add_option("--checkpoint", a.checkpoint, "a checkpoints/step_N folder")->required();
  auto* one = generate->add_option("--prompt", a.prompt, "the text to continue, streamed");
  auto* many = generate->add_option(
      "--prompts-file", a.prompts_file,
      "JSON lines {\"prompt\": ..., optional sampling keys}, run in batches of "
      "inference.batch_size; a JSON result a line on stdout");
  one->excludes(many);
  generate->add_option("--image", a.images,
                       "a PNG image for a VisualChat checkpoint's question (repeatable; the "
                       "prompt's <image> markers place them, else they come first)");
  generate
      ->add_option("--stop", a.stop,
                   "end the --prompt's text before this string (repeatable; a prompts file "
                   "sets \"stop\" per line)")
      ->excludes(many);
  generate->callback([&a] {
    if (a.prompt.empty() && a.prompts_file.empty())
      throw CLI::RequiredError("--prompt or --prompts-file");
  });
  return generate;
}

CLI::App* add_bench(CLI::App& cli, Args& a) {
  CLI::App* bench = cli.add_subcommand(
      "bench", "prefill and decode speed (batch 1, 8, 32) against the memory bandwidth");
  add_model_source(*bench, a, "a checkpoints/step_N folder",
                   "a model config (random weights of its shape)");
  bench
      ->add_option("--eval", a.eval_data,
                   "a token data set (prepare-data's HDF5, the checkpoint's tokenizer): "
                   "validation perplexity with these weights and with f32, instead of the speed "
                   "figures")
      ->needs(bench->get_option("--checkpoint"));
  bench->add_option("--eval-tokens", a.eval_tokens, "validation tokens --eval predicts")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--eval-window", a.eval_window, "tokens of context per --eval window")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  bench->add_option("--profile", a.profile_batches,
                    "also time every kernel call of a few decode steps at these batch sizes");
  return bench;
}

CLI::App* add_serve(CLI::App& cli, Args& a) {
  CLI::App* serve = cli.add_subcommand(
      "serve", "an OpenAI-compatible HTTP server (continuous batching, paged KV cache)");
  add_model_source(*serve, a, "a checkpoints/step_N folder (or a Hugging Face one)",
                   "a model config: random weights of its shape (benchmarks; needs --tokenizer)");
  serve->add_option("--tokenizer", a.tokenizer, "a tokenizer.json to use instead of the model's")
      ->check(CLI::ExistingFile);
  serve->add_option("--host", a.http.host, "address to listen on")->capture_default_str();
  serve->add_option("--port", a.http.port, "port to listen on; 0: any free one (logged)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  serve->add_option("--model-name", a.http.model_name,
                    "the model's name in the API (default: the checkpoint folder's name)");
  return serve;
}

CLI::App* add_load(CLI::App& cli, Args& a) {
  CLI::App* load = cli.add_subcommand(
      "load", "send requests to a server at a fixed concurrency; check and time the answers");
  load->add_option("--host", a.load.host, "the server's address")->capture_default_str();
  load->add_option("--port", a.load.port, "the server's port")
      ->required()
      ->check(CLI::Range(1, 65535));
  load->add_option("--requests-file", a.requests_file,
                   "JSON lines, each a request body (completions, or chat with \"messages\")")
      ->required()
      ->check(CLI::ExistingFile);
  load->add_option("--requests", a.requests,
                   "requests to send, cycling the file; 0: each line once")
      ->check(CLI::NonNegativeNumber);
  load->add_option("--concurrency", a.load.concurrency, "requests in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  load->add_option("--timeout", a.load.timeout_seconds, "seconds one request may take")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  load->add_option("--expect", a.expect_file,
                   "infer generate --prompts-file output for the same prompts: each answer must "
                   "hold exactly its tokens")
      ->check(CLI::ExistingFile);
  return load;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "Generate text with a BLOOM checkpoint (what pretrain writes, or a Hugging Face folder):\n"
      "  infer generate --checkpoint DIR --prompt TEXT [--config FILE] [--set key=value]\n"
      "  infer generate --checkpoint DIR --prompts-file F.jsonl  (one JSON result a line)\n"
      "  infer bench --model configs/models/X.yaml | --checkpoint DIR [--eval DATA.h5]\n"
      "  infer serve --checkpoint DIR [--port 8000]  (OpenAI-compatible HTTP server)\n"
      "  infer load --port 8000 --requests-file R.jsonl [--concurrency 32]\n"
      "Under mpirun the ranks split the model (tensor parallelism)."};
  cli.require_subcommand(1);
  Args a;
  CLI::App* generate = add_generate(cli, a);
  CLI::App* bench = add_bench(cli, a);
  CLI::App* serve = add_serve(cli, a);
  CLI::App* load = add_load(cli, a);
  train::JobFlags flags;
  for (CLI::App* command : {generate, bench, serve})
    flags.add_to(*command, /*resumable=*/false, /*config_required=*/false);
  CLI11_PARSE(cli, argc, argv);
  log::set_info_to_stderr(true);           // stdout is the generated text
  if (load->parsed()) return run_load(a);  // a client: no job, no model

  train::Job job(&argc, &argv);
  const auto options =
      job.configure<infer::InferOptions>(flags, infer::infer_schema(), infer::infer_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_yaml);
  return job.run([&] {
    if (bench->parsed())
      return a.eval_data.empty() ? run_bench(job, *options, a) : run_eval(job, *options, a);
    if (serve->parsed()) return run_serve(job, *options, a);
    return run_generate(job, *options, a);
  });
}
