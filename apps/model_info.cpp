// model-info: prints a BLOOM config's parameter count, its breakdown and the
// memory that fp32 training with AdamW needs, for one or more config files.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/error.hpp"
#include "io/model_config.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Print the size of BLOOM models described by config files"};
  std::vector<std::string> configs;
  app.add_option("--config,configs", configs, "YAML file(s) with a `model:` section")
      ->required()
      ->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);
  try {
    for (const std::string& path : configs) {
      const auto c = turbine::io::load_bloom_config(path);
      const int64_t n = c.parameter_count();
      const int64_t embedding = c.vocab_size * c.hidden_size;
      std::printf("%s\n", path.c_str());
      std::printf("  layers %lld, hidden %lld, heads %lld (head_dim %lld), vocab %lld\n",
                  (long long)c.n_layer, (long long)c.hidden_size, (long long)c.n_head,
                  (long long)c.head_dim(), (long long)c.vocab_size);
      std::printf("  parameters: %lld (%.1fM; %.3fB)\n", (long long)n, n / 1e6, n / 1e9);
      std::printf("    embeddings %lld, blocks %lld, norms %lld\n", (long long)embedding,
                  (long long)(n - embedding - 4 * c.hidden_size), (long long)(4 * c.hidden_size));
      std::printf("  fp32 weights %.2f GiB; with grads and AdamW state %.2f GiB\n",
                  n * 4.0 / (1 << 30), n * 16.0 / (1 << 30));
    }
  } catch (const turbine::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
