// infer: text generation from a BLOOM checkpoint with a KV cache, on the CPU
// or a GPU, with f32, bf16, f16 or int8 weights.
//   infer generate --checkpoint runs/pretrain/checkpoints/step_N --prompt "And God said"
//   infer generate --checkpoint DIR --prompts-file prompts.jsonl > results.jsonl
//   infer bench --model configs/models/bloom-560m.yaml --set inference.dtype=int8
//   mpirun -np 2 infer generate ...   (tensor parallelism over the ranks)
// A checkpoint is what pretrain writes, or a Hugging Face BLOOM folder.
#include "infer/infer.hpp"

#include <cstdio>

#include "core/log.hpp"
#include "core/signals.hpp"
#include "infer/bench.hpp"
#include "train/job.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Generate text with a BLOOM checkpoint (what pretrain writes, or a Hugging Face folder):\n"
      "  infer generate --checkpoint DIR --prompt TEXT [--config FILE] [--set key=value]\n"
      "  infer generate --checkpoint DIR --prompts-file F.jsonl  (one JSON result a line)\n"
      "  infer bench --model configs/models/X.yaml | --checkpoint DIR [--eval DATA.h5]\n"
      "Under mpirun the ranks split the model (tensor parallelism)."};
  cli.require_subcommand(1);
  CLI::App* generate = cli.add_subcommand("generate", "continue prompts; text streams to stdout");
  CLI::App* bench = cli.add_subcommand(
      "bench", "prefill and decode speed (batch 1, 8, 32) against the memory bandwidth");
  train::JobFlags flags;
  flags.add_to(*generate, /*resumable=*/false, /*config_required=*/false);
  flags.add_to(*bench, /*resumable=*/false, /*config_required=*/false);
  std::string checkpoint, prompt, prompts_file, model_yaml;
  generate->add_option("--checkpoint", checkpoint, "a checkpoints/step_N folder")->required();
  auto* bench_checkpoint =
      bench->add_option("--checkpoint", checkpoint, "a checkpoints/step_N folder");
  bench->add_option("--model", model_yaml, "a model config (random weights of its shape)")
      ->excludes(bench_checkpoint);
  std::string eval_data;
  int64_t eval_tokens = 16384, eval_window = 256;
  auto* eval = bench->add_option("--eval", eval_data,
                                 "a token data set (prepare-data's HDF5, the checkpoint's "
                                 "tokenizer): validation perplexity with these weights and with "
                                 "f32, instead of the speed figures");
  eval->needs(bench_checkpoint);
  bench->add_option("--eval-tokens", eval_tokens, "validation tokens --eval predicts")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--eval-window", eval_window, "tokens of context per --eval window")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  std::vector<int64_t> profile_batches;
  bench->add_option("--profile", profile_batches,
                    "also time every kernel call of a few decode steps at these batch sizes");
  bench->callback([&] {
    if (checkpoint.empty() && model_yaml.empty())
      throw CLI::RequiredError("--checkpoint or --model");
  });
  auto* one = generate->add_option("--prompt", prompt, "the text to continue, streamed");
  auto* many = generate->add_option(
      "--prompts-file", prompts_file,
      "JSON lines {\"prompt\": ..., optional sampling keys}, run in batches of "
      "inference.batch_size; a JSON result a line on stdout");
  one->excludes(many);
  std::vector<std::string> stop;
  generate
      ->add_option("--stop", stop,
                   "end the --prompt's text before this string (repeatable; a prompts file "
                   "sets \"stop\" per line)")
      ->excludes(many);
  generate->callback([&] {
    if (prompt.empty() && prompts_file.empty())
      throw CLI::RequiredError("--prompt or --prompts-file");
  });
  CLI11_PARSE(cli, argc, argv);
  log::set_info_to_stderr(true);  // stdout is the generated text

  train::Job job(&argc, &argv);
  const auto options =
      job.configure<infer::InferOptions>(flags, infer::infer_schema(), infer::infer_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_yaml);
  return job.run([&] {
    if (bench->parsed() && !eval_data.empty()) {
      const Device device = job.pick_device(options->device);
      const infer::EvalQuality q = infer::evaluate_quality(checkpoint, device, *options, eval_data,
                                                           eval_tokens, eval_window);
      if (job.leader()) std::printf("%s\n", infer::eval_json(q, *options).c_str());
      return 0;
    }
    if (bench->parsed()) {
      const Device device = job.pick_device(options->device);
      const infer::LoadedModel loaded =
          model_yaml.empty() ? infer::load_checkpoint(checkpoint, device, *options, &job.world())
                             : infer::random_model(model_yaml, device, *options, &job.world());
      const infer::BenchResult result = infer::bench(loaded, *options);
      for (const int64_t batch : profile_batches) {  // every rank decodes; rank 0 prints
        const std::string table = infer::profile_decode(loaded, batch, 4);
        if (job.leader()) std::fputs(table.c_str(), stderr);
      }
      if (job.leader()) std::printf("%s\n", infer::bench_json(result, loaded, *options).c_str());
      return 0;
    }
    const std::vector<infer::Request> requests =
        prompts_file.empty() ? std::vector<infer::Request>{}
                             : infer::read_prompts_file(prompts_file, options->sampling);
    const Device device = job.pick_device(options->device);
    // Under tensor parallelism every rank decodes the same steps; rank 0 writes.
    const infer::LoadedModel loaded =
        infer::load_checkpoint(checkpoint, device, *options, &job.world());
    if (loaded.compacted.layers > 0)
      log::info("weights: {} linear layers and the LM head in {}, {:.1f} MiB instead of {:.1f} MiB",
                loaded.compacted.layers, options->dtype,
                (loaded.compacted.bytes_after + loaded.lm_head_bytes) / 1048576.0,
                (loaded.compacted.bytes_before +
                 4.0 * loaded.model.config().vocab_size * loaded.model.config().hidden_size) /
                    1048576.0);
    const bool writer = job.leader();
    if (prompts_file.empty()) {
      if (writer) std::fputs(prompt.c_str(), stdout);
      const infer::Completion c = infer::complete(
          loaded, prompt, *options,
          [&](std::string_view text) {
            if (!writer) return;
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
          },
          stop);
      if (writer) std::fputc('\n', stdout);
      log::info("{} prompt tokens, {} generated ({}), first token after {:.3f} s, {:.1f} tokens/s",
                c.prompt_tokens.size(), c.tokens.size(), c.finish_reason, c.seconds_to_first_token,
                c.tokens_per_second);
      infer::log_stream_stats(loaded);
      return 0;
    }
    // Batches in file order; a stop signal ends the run after the current one.
    for (size_t first = 0; first < requests.size(); first += size_t(options->batch_size)) {
      if (job.world().any(stop_requested())) {  // every rank stops at the same batch
        log::info("stopped on request ({}) after {} of {} prompts", stop_signal_name(), first,
                  requests.size());
        return kExitStoppedResumable;
      }
      const size_t end = std::min(requests.size(), first + size_t(options->batch_size));
      const std::vector<infer::Request> batch(requests.begin() + long(first),
                                              requests.begin() + long(end));
      for (const infer::Completion& c : infer::complete_batch(loaded, batch, *options))
        if (writer) std::printf("%s\n", infer::completion_json(c).c_str());
      std::fflush(stdout);
      log::info("prompts {}-{} of {} done", first + 1, end, requests.size());
    }
    infer::log_stream_stats(loaded);
    return 0;
  });
}
