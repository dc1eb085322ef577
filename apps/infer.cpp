// infer: text generation from a BLOOM checkpoint with a KV cache, on the CPU
// or a GPU, with f32, bf16, f16 or int8 weights.
//   infer generate --checkpoint runs/pretrain/checkpoints/step_N --prompt "And God said"
#include <cstdio>

#include "core/log.hpp"
#include "infer/infer.hpp"
#include "train/job.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{"Generate text with a BLOOM checkpoint (what pretrain writes):\n"
               "  infer generate --checkpoint DIR --prompt TEXT [--config FILE] [--set key=value]"};
  cli.require_subcommand(1);
  CLI::App* generate = cli.add_subcommand("generate", "continue a prompt, streamed to stdout");
  train::JobFlags flags;
  flags.add_to(*generate, /*resumable=*/false, /*config_required=*/false);
  std::string checkpoint, prompt;
  generate->add_option("--checkpoint", checkpoint, "a checkpoints/step_N folder")->required();
  generate->add_option("--prompt", prompt, "the text to continue")->required();
  CLI11_PARSE(cli, argc, argv);
  log::set_info_to_stderr(true);  // stdout is the generated text

  train::Job job(&argc, &argv);
  const auto options =
      job.configure<infer::InferOptions>(flags, infer::infer_schema(), infer::infer_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_yaml);
  return job.run([&] {
    const Device device = job.pick_device(options->device);
    const infer::LoadedModel loaded = infer::load_checkpoint(checkpoint, device, *options);
    if (loaded.compacted.layers > 0)
      log::info("weights: {} linear layers in {}, {:.1f} MiB instead of {:.1f} MiB",
                loaded.compacted.layers, options->dtype, loaded.compacted.bytes_after / 1048576.0,
                loaded.compacted.bytes_before / 1048576.0);
    if (!job.leader()) return 0;
    std::fputs(prompt.c_str(), stdout);
    const infer::Completion c = infer::complete(loaded, prompt, *options, [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    log::info("{} prompt tokens, {} generated ({}), first token after {:.3f} s, {:.1f} tokens/s",
              c.prompt_tokens.size(), c.tokens.size(), c.finish_reason, c.seconds_to_first_token,
              c.tokens_per_second);
    return 0;
  });
}
