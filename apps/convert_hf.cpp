// convert-hf: Hugging Face BLOOM folders in and out of Turbine checkpoints
// (what tools/import-hf and tools/export-hf run).
//   convert-hf import ~/models/bloom-560m --output models/bloom-560m
//   convert-hf export runs/pretrain/checkpoints/step_N --output hf/kjv-bloom --dtype bf16
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/error.hpp"
#include "infer/convert.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{"Convert BLOOM models between Hugging Face folders and Turbine checkpoints"};
  cli.require_subcommand(1);
  std::string input, output, dtype = "f32";
  CLI::App* import =
      cli.add_subcommand("import",
                         "a Hugging Face folder (config.json, model.safetensors or its index, "
                         "tokenizer.json) to a Turbine checkpoint folder");
  import->add_option("folder", input, "the Hugging Face folder")->required();
  import->add_option("--output,-o", output, "the checkpoint folder to create")->required();
  CLI::App* export_ = cli.add_subcommand(
      "export", "a Turbine checkpoint to a Hugging Face folder that transformers loads");
  export_->add_option("checkpoint", input, "a checkpoints/step_N folder")->required();
  export_->add_option("--output,-o", output, "the Hugging Face folder to create")->required();
  export_->add_option("--dtype", dtype, "weights as written: f32, bf16 or f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  try {
    if (import->parsed()) {
      infer::import_hf(input, output);
      std::fprintf(stderr, "imported %s as the checkpoint %s\n", input.c_str(), output.c_str());
    } else {
      infer::export_hf(input, output, dtype_from_name(dtype));
      std::fprintf(stderr, "exported %s to %s (%s weights)\n", input.c_str(), output.c_str(),
                   dtype.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
