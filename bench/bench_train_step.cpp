// Times full BLOOM training steps (forward, backward, clipping, AdamW) on the
// CPU and prints one JSON line; tools/bench-train-step compares it with
// PyTorch on the same model and thread count.
#include <CLI/CLI.hpp>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "autograd/tape.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "nn/bloom.hpp"
#include "optim/adamw.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App app{"Time BLOOM training steps on the CPU"};
  nn::BloomConfig c{8192, 384, 6, 6};
  int64_t batch = 8, seq = 256;
  int steps = 5, warmup = 2;
  app.add_option("--vocab", c.vocab_size, "vocabulary size")->capture_default_str();
  app.add_option("--hidden", c.hidden_size, "hidden size")->capture_default_str();
  app.add_option("--heads", c.n_head, "attention heads")->capture_default_str();
  app.add_option("--layers", c.n_layer, "layers")->capture_default_str();
  app.add_option("--batch", batch, "sequences per step")->capture_default_str();
  app.add_option("--seq", seq, "tokens per sequence")->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  nn::Bloom model(c, 1234);
  optim::AdamW opt(model.parameters(), {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<int64_t> ids(batch * seq), targets(batch * seq);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = philox4x32(7, 0, i)[0] % c.vocab_size;
    targets[i] = philox4x32(7, 1, i)[0] % c.vocab_size;
  }
  const Tensor x = Tensor::from_vector<int64_t>({batch, seq}, ids);
  const Tensor y = Tensor::from_vector<int64_t>({batch, seq}, targets);

  std::vector<double> times;
  float loss = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    Timer timer;
    Tensor l = model.loss(x, y);
    autograd::backward(l);
    optim::clip_grad_norm(model.parameters(), 1.0);
    opt.step(1e-4f);
    opt.zero_grad();
    loss = l.item();
    if (step >= warmup) times.push_back(timer.seconds());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double tokens = double(batch * seq);
  const double flops = c.train_flops_per_token(seq) * tokens;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"impl\":\"turbine\",\"threads\":%d,\"params\":%lld,\"tokens_per_s\":%.1f,"
      "\"step_s\":%.4f,\"gflops\":%.1f,\"peak_tensor_mb\":%.1f,\"peak_rss_mb\":%.1f,"
      "\"loss\":%.4f}\n",
      omp_get_max_threads(), (long long)c.parameter_count(), tokens / median, median,
      flops / median / 1e9, memory_stats(Device::cpu()).peak_bytes / 1048576.0,
      usage.ru_maxrss / 1024.0, loss);
  return 0;
}
