// Times full BLOOM training steps on the CPU or a GPU with pretrain's own
// step code (train::train_step over a train::Engine: forward, backward into
// the flat gradient buffer, one global-norm clip, AdamW over the flat buffer), and prints one JSON
// line; tools/bench-train-step (CPU) and tools/device-check (GPU) compare it with PyTorch on the
// same model. With
// --peak-tflops 0 the MFU is against a GEMM measured here in the same
// precision; otherwise against the given peak (the card's datasheet).
// --profile N then runs N more steps with every kernel call timed and prints
// where a step's time goes, op by op, before the JSON line.
#include <omp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/tape.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "dist/communicator.hpp"
#include "kernels/backend.hpp"
#include "kernels/profiling.hpp"
#include "nn/bloom.hpp"
#include "ops/ops.hpp"
#include "train/loop.hpp"
#include "train/schema.hpp"

using namespace turbine;

namespace {

// Positive and non-negative counts, with a message that reads as one.
const CLI::Range kPositive(1, 1 << 30), kNonNegative(0, 1 << 30);

struct Options {
  nn::BloomConfig model{8192, 384, 6, 6};
  int64_t batch = 8, seq = 256;
  int steps = 5, warmup = 2, profile_steps = 0, gemm_size = 0;
  std::string device = "cpu", precision = "f32", activations = "auto";
  double peak_tflops = 0;
};

int run(const Options& o);

// pretrain's step on one fixed batch: the same engine and step code, no data.
class FixedBatchTask final : public train::TrainTask {
 public:
  FixedBatchTask(const nn::Bloom& model, Tensor ids, Tensor targets)
      : model_(model), ids_(std::move(ids)), targets_(std::move(targets)) {}
  double learning_rate(const train::LoopCounters&) override { return 1e-4; }
  Tensor micro_batch_loss(const train::LoopCounters&, int64_t) override {
    return model_.loss(ids_, targets_);
  }
  train::StepWork step_work(const train::LoopCounters&) override { return {}; }

 private:
  const nn::Bloom& model_;
  Tensor ids_, targets_;
};

}  // namespace

int main(int argc, char** argv) {
  dist::MpiSession mpi(&argc, &argv);  // one rank: the optimizer is pretrain's
  CLI::App app{"Time BLOOM training steps on the CPU or a GPU"};
  Options o;
  app.add_option("--vocab", o.model.vocab_size, "vocabulary size")
      ->check(kPositive)
      ->capture_default_str();
  app.add_option("--hidden", o.model.hidden_size, "hidden size")
      ->check(kPositive)
      ->capture_default_str();
  app.add_option("--heads", o.model.n_head, "attention heads")
      ->check(kPositive)
      ->capture_default_str();
  app.add_option("--layers", o.model.n_layer, "layers")->check(kPositive)->capture_default_str();
  app.add_option("--batch", o.batch, "sequences per step")->check(kPositive)->capture_default_str();
  app.add_option("--seq", o.seq, "tokens per sequence")->check(kPositive)->capture_default_str();
  app.add_option("--steps", o.steps, "timed steps")->check(kPositive)->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed steps first")
      ->check(kNonNegative)
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", o.precision, "matrix products in f32, bf16 or f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  app.add_option("--activations", o.activations,
                 "activation_precision: auto (16-bit on a GPU in bf16/f16), f32 or 16bit")
      ->check(CLI::IsMember({"auto", "f32", "16bit"}))
      ->capture_default_str();
  app.add_option("--peak-tflops", o.peak_tflops,
                 "peak for MFU (the card's bf16 datasheet figure); 0: measure a GEMM here")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--gemm-size", o.gemm_size,
                 "side of the square GEMM timed for the reference figure; 0: the size "
                 "ops::measure_gemm_peak_tflops picks (2048 on a CPU, 8192 on a GPU)")
      ->check(kNonNegative)
      ->capture_default_str();
  app.add_option("--profile", o.profile_steps,
                 "then time every kernel call over this many more steps and print the table")
      ->check(kNonNegative)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // A bad model shape, no GPU, memory exhausted: one line, not a core dump.
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-train-step: %s\n", e.what());
    return 1;
  }
}

namespace {

int run(const Options& o) {
  const nn::BloomConfig& c = o.model;
  const Device device = Device::parse(o.device);
  kernels::Backend& be = backend_for(device);
  const kernels::MathMode math = o.precision == "bf16"  ? kernels::MathMode::bf16
                                 : o.precision == "f16" ? kernels::MathMode::f16
                                                        : kernels::MathMode::f32;
  kernels::MathModeGuard guard(be, math);
  const double gemm_tflops = o.gemm_size > 0 ? ops::measure_gemm_tflops(device, o.gemm_size, 1.0)
                                             : ops::measure_gemm_peak_tflops(device);
  const double peak_tflops = o.peak_tflops > 0 ? o.peak_tflops : gemm_tflops;

  nn::Bloom model(c, 1234, device);
  train::PrecisionOptions precision;  // pretrain's rule for the activations' type
  precision.math = math;
  precision.activations = o.activations;
  TURBINE_CHECK(o.activations != "16bit" || math != kernels::MathMode::f32,
                "--activations 16bit needs --precision bf16 or f16");
  model.set_activation_dtype(precision.activation_dtype(device));
  dist::Communicator world = dist::Communicator::world();
  train::EngineOptions engine_options;
  engine_options.optimizer = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
  train::Engine engine("model", world, model.parameters(), engine_options);
  std::vector<int64_t> ids(o.batch * o.seq), targets(o.batch * o.seq);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = philox4x32(7, 0, i)[0] % c.vocab_size;
    targets[i] = philox4x32(7, 1, i)[0] % c.vocab_size;
  }
  const Tensor x = Tensor::from_vector<int64_t>({o.batch, o.seq}, ids);
  const Tensor y = Tensor::from_vector<int64_t>({o.batch, o.seq}, targets);

  FixedBatchTask task(model, x, y);
  train::LoopCounters counters;
  double loss = 0;
  auto train_step = [&] {  // the loss's item() waits for the step's queued GPU work too
    loss = train::train_step(world, engine, task, counters).loss;
  };
  std::vector<double> times;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    Timer timer;
    train_step();
    if (step >= o.warmup) times.push_back(timer.seconds());
  }
  if (o.profile_steps > 0) {
    kernels::ProfilingBackend profiler(be);
    Timer timer;
    {
      ScopedBackend scoped(device, profiler);
      for (int step = 0; step < o.profile_steps; ++step) train_step();
    }
    std::printf("profile of %d step(s) on %s, %s: every call synchronized, %.3f s per step\n%s",
                o.profile_steps, device.str().c_str(), o.precision.c_str(),
                timer.seconds() / o.profile_steps, profiler.table(o.profile_steps).c_str());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double tokens = double(o.batch * o.seq);
  const double flops = c.train_flops_per_token(o.seq) * tokens;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"impl\":\"turbine\",\"device\":\"%s\",\"gemm_kernel\":\"%s\",\"precision\":\"%s\","
      "\"activations\":\"%s\",\"threads\":%d,"
      "\"params\":%lld,\"tokens_per_s\":%.1f,\"step_s\":%.4f,\"gflops\":%.1f,"
      "\"gemm_tflops\":%.3f,\"peak_tflops\":%.3f,\"mfu\":%.4f,\"peak_tensor_mb\":%.1f,"
      "\"reserved_mb\":%.1f,\"peak_rss_mb\":%.1f,\"loss\":%.4f}\n",
      device.str().c_str(), ops::gemm_kernel_name(device).c_str(), o.precision.c_str(),
      dtype_name(model.activation_dtype()), omp_get_max_threads(), (long long)c.parameter_count(),
      tokens / median, median, flops / median / 1e9, gemm_tflops, peak_tflops,
      flops / median / (peak_tflops * 1e12), memory_stats(device).peak_bytes / 1048576.0,
      be.reserved_bytes() / 1048576.0, usage.ru_maxrss / 1024.0, loss);
  return 0;
}

}  // namespace
