// The training layer's shared parts: DeepSpeed's documented example configs
// load into the schema pieces (written out by hand from docs/_pages/
// config-json.md and the data-efficiency tutorial), ignored and unsupported
// keys, and the checkpoint store's named parts with key/value state.
#define BOOST_TEST_MODULE train
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <set>

#include "dist/communicator.hpp"
#include "nn/bloom.hpp"
#include "test_util.hpp"
#include "train/checkpoint.hpp"
#include "train/engine.hpp"
#include "train/pretrain.hpp"
#include "train/schema.hpp"

using namespace turbine;
using testing::contains;
using testing::error_of;

namespace {

struct MpiFixture {
  int argc = boost::unit_test::framework::master_test_suite().argc;
  char** argv = boost::unit_test::framework::master_test_suite().argv;
  dist::MpiSession session{&argc, &argv};
};
BOOST_GLOBAL_FIXTURE(MpiFixture);

io::Config load(const std::string& json, const std::vector<std::string>& overrides = {}) {
  return io::Config::from_string(json, "ds_config.json", train::pretrain_schema(), overrides);
}

bool ignored(const io::Config& c, const std::string& key) {
  for (const auto& k : c.ignored())
    if (k.key == key) return !k.reason.empty();
  return false;
}

// DeepSpeed's data-efficiency example, as config-json.md prints it.
const char* kDataEfficiencyExample = R"({
  "data_efficiency": {
    "enabled": true,
    "seed": 1234,
    "data_routing": {
      "enabled": true,
      "random_ltd":{
        "enabled": true,
        "total_layer_num": 24,
        "random_ltd_layer_num": 22,
        "random_ltd_layer_id": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22],
        "model_mask_name": "attention_mask",
        "model_type": "decoder",
        "hidden_state_order": "seq_batch_dim",
        "random_ltd_schedule": {
          "min_value": 128,
          "max_value": 2048,
          "schedule_type":"fixed_linear",
          "schedule_config": {
            "require_steps": 200000,
            "seq_per_step": 16
          }
        }
      }
    },
    "data_sampling": {
      "enabled": true,
      "num_epochs": 1,
      "num_workers": 0,
      "curriculum_learning": {
        "enabled": true,
        "data_cluster_path": "/path/to/data_clusters",
        "curriculum_metrics": {
          "vocabularyrarity": {
            "index_to_sample_path": "/path/to/index_to_sample",
            "index_to_metric_path": "/path/to/index_to_metric",
            "difficulty_type": "percentile",
            "clustering_type": "schedule_based",
            "min_difficulty": 1,
            "max_difficulty": 100,
            "schedule_type": "fixed_root",
            "schedule_config": {
              "total_curriculum_step": 110000,
              "difficulty_step": 1,
              "root_degree": 2
            }
          }
        }
      }
    }
  }
})";

}  // namespace

BOOST_AUTO_TEST_SUITE(deepspeed_config)

BOOST_AUTO_TEST_CASE(data_efficiency_example_loads) {
  const io::Config c = load(kDataEfficiencyExample);
  BOOST_TEST(c.get<int64_t>("data_efficiency.data_routing.random_ltd.random_ltd_layer_num") == 22);
  BOOST_TEST(c.get<int64_t>("data_efficiency.data_routing.random_ltd.random_ltd_schedule."
                            "schedule_config.seq_per_step") == 16);
  BOOST_TEST(c.get<double>("data_efficiency.data_sampling.curriculum_learning.curriculum_metrics."
                           "vocabularyrarity.schedule_config.root_degree") == 2.0);
  for (const char* key :
       {"data_efficiency.data_routing.random_ltd.model_mask_name",
        "data_efficiency.data_routing.random_ltd.hidden_state_order",
        "data_efficiency.data_sampling.num_epochs", "data_efficiency.data_sampling.num_workers",
        "data_efficiency.data_sampling.curriculum_learning.data_cluster_path",
        "data_efficiency.data_sampling.curriculum_learning.curriculum_metrics.vocabularyrarity."
        "index_to_sample_path"})
    BOOST_TEST(ignored(c, key), key);
  // Ignored keys stay out of the resolved config, which loads back.
  BOOST_TEST(!contains(c.to_yaml(), "model_mask_name"));
  BOOST_TEST(load(c.to_yaml()).ignored().empty());
}

BOOST_AUTO_TEST_CASE(zero_fp16_optimizer_scheduler_examples_load) {
  // The batch, ZeRO (stage 2, the example's other keys as printed), fp16,
  // Adam and WarmupLR examples of config-json.md, in one file.
  const io::Config c = load(R"({
    "train_batch_size": 32,
    "train_micro_batch_size_per_gpu": 4,
    "gradient_accumulation_steps": 4,
    "steps_per_print": 10,
    "wall_clock_breakdown": false,
    "gradient_clipping": 1.0,
    "optimizer": {
      "type": "Adam",
      "params": {"lr": 0.001, "betas": [0.8, 0.999], "eps": 1e-8, "weight_decay": 3e-7}
    },
    "scheduler": {
      "type": "WarmupLR",
      "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.001, "warmup_num_steps": 1000}
    },
    "fp16": {
      "enabled": true, "auto_cast": false, "loss_scale": 0, "initial_scale_power": 16,
      "loss_scale_window": 1000, "hysteresis": 2, "consecutive_hysteresis": false,
      "min_loss_scale": 1
    },
    "zero_optimization": {
      "stage": 2,
      "allgather_partitions": true,
      "allgather_bucket_size": 5e8,
      "overlap_comm": false,
      "reduce_scatter": true,
      "reduce_bucket_size": 5e8,
      "contiguous_gradients" : true,
      "offload_param": {"device": "cpu", "nvme_path": "/local_nvme", "pin_memory": true,
                        "buffer_count": 5, "buffer_size": 1e8, "max_in_cpu": 1e9},
      "offload_optimizer": {"device": "cpu", "nvme_path": "/local_nvme", "pin_memory": true,
                            "ratio": 0.3, "buffer_count": 4, "fast_init": false},
      "stage3_max_live_parameters" : 1e9,
      "stage3_max_reuse_distance" : 1e9,
      "stage3_prefetch_bucket_size" : 5e8,
      "stage3_param_persistence_threshold" : 1e6,
      "sub_group_size" : 1e12,
      "elastic_checkpoint" : true,
      "stage3_gather_16bit_weights_on_model_save": false,
      "ignore_unused_parameters": true,
      "round_robin_gradients": false,
      "zero_hpz_partition_size": 1,
      "zero_quantized_weights": false,
      "zero_quantized_gradients": false,
      "log_trace_cache_warnings": false
    },
    "tensorboard": {"enabled": true, "output_path": "log/", "job_name": "run"},
    "flops_profiler": {"enabled": true, "profile_step": 1}
  })");
  const train::BatchOptions batch = train::batch_from(c, 2);
  BOOST_TEST(batch.global == 32);
  BOOST_TEST(batch.accumulation == 4);
  const optim::AdamWConfig adam = train::optimizer_from(c);
  BOOST_TEST(adam.beta1 == 0.8f);
  BOOST_TEST(adam.weight_decay == 3e-7f);
  const train::ScheduleOptions sched = train::scheduler_from(c, adam.lr, 5000);
  BOOST_TEST(sched.schedule.max_lr == 0.001);
  BOOST_TEST(sched.schedule.at(0) == 0.001 / 1000);  // linear warmup from warmup_min_lr 0
  BOOST_TEST(sched.schedule.at(4000) == 0.001);      // WarmupLR holds the peak
  const train::PrecisionOptions precision = train::precision_from(c);
  BOOST_TEST(precision.loss_scaling);
  BOOST_TEST(precision.loss_scale.window == 1000);
  const dist::ZeroConfig zero = train::zero_from(c);
  BOOST_TEST(zero.stage == 2);
  BOOST_TEST(zero.bucket_elements == 500'000'000);  // reduce_bucket_size, written 5e8
  for (const char* key :
       {"wall_clock_breakdown", "fp16.auto_cast", "zero_optimization.offload_param",
        "zero_optimization.contiguous_gradients", "zero_optimization.stage3_max_live_parameters",
        "tensorboard", "flops_profiler"})
    BOOST_TEST(ignored(c, key), key);
}

BOOST_AUTO_TEST_CASE(bf16_and_cosine_examples_load) {
  const io::Config c = load(R"({
    "bf16": {"enabled": true},
    "optimizer": {"type": "AdamW", "params": {"lr": 2e-4, "torch_adam": true}},
    "scheduler": {"type": "WarmupCosineLR",
                  "params": {"total_num_steps": 100, "warmup_min_ratio": 0.5,
                             "warmup_num_steps": 10, "cos_min_ratio": 0.01}}
  })");
  BOOST_TEST((train::precision_from(c).math == kernels::MathMode::bf16));
  const train::ScheduleOptions s = train::scheduler_from(c, train::optimizer_from(c).lr, 50);
  BOOST_TEST(s.schedule.total_steps == 100);
  BOOST_TEST(s.schedule.at(0) == 2e-4 * (0.5 + 0.5 / 10), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(s.schedule.at(100) == 2e-4 * 0.01, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(ignored(c, "optimizer.params.torch_adam"));
}

BOOST_AUTO_TEST_CASE(unsupported_and_unknown_keys_are_errors) {
  // A feature Turbine lacks that would change the run: an error with the reason.
  std::string e = error_of([] { load(R"({"sparse_attention": {"mode": "fixed"}})"); });
  BOOST_TEST(contains(e, "sparse_attention: sparse attention would change the model"), e);
  e = error_of([] { load(R"({"zero_optimization": {"zero_quantized_weights": true}})"); });
  BOOST_TEST(contains(e, "zero_quantized_weights is true, which is not allowed"), e);
  e = error_of([] { load(R"({"optimizer": {"params": {"adam_w_mode": false}}})", {}); });
  BOOST_TEST(e == "(no error)");  // a valid key; its value is refused when read
  e = error_of(
      [] { train::optimizer_from(load(R"({"optimizer": {"params": {"adam_w_mode": false}}})")); });
  BOOST_TEST(contains(e, "adam_w_mode: false (Adam with L2 regularization) is not supported"), e);
  // Neither DeepSpeed's nor Turbine's: unknown, with a suggestion.
  e = error_of([] { load(R"({"zero_optimization": {"overlap_com": true}})"); });
  BOOST_TEST(contains(e, "unknown key zero_optimization.overlap_com: did you mean overlap_comm?"),
             e);
  // An integer key takes a number only when it is integral.
  e = error_of([] { load(R"({"train_micro_batch_size_per_gpu": 2.5})"); });
  BOOST_TEST(contains(e, "expected an integer"), e);
  // --set reaches ignored keys too, and they are reported with the flag.
  const io::Config c = load("{}", {"wandb.enabled=true"});
  BOOST_TEST(c.ignored().size() == 1u);
  BOOST_TEST(c.ignored()[0].where == "--set wandb.enabled=true");
}

BOOST_AUTO_TEST_SUITE_END()

// ----------------------------------------------------------------- checkpoint parts

BOOST_AUTO_TEST_SUITE(checkpoint_parts)

namespace {
nn::BloomConfig tiny_model() {
  nn::BloomConfig c{64, 16, 2, 1};
  return c;
}

// One AdamW step on a loss of the model, so the optimizer state is not zero.
void train_one_step(train::Engine& engine, const nn::Bloom& model) {
  const Tensor ids = Tensor::from_vector<int64_t>({1, 4}, {1, 5, 9, 3});
  const Tensor targets = Tensor::from_vector<int64_t>({1, 4}, {5, 9, 3, 7});
  engine.zero_grad();
  engine.backward(model.loss(ids, targets), 0);
  engine.step(1e-2);
}
}  // namespace

BOOST_AUTO_TEST_CASE(named_parts_and_state_round_trip) {
  testing::TempDir dir("checkpoint_parts");
  dist::Communicator world = dist::Communicator::world();
  train::EngineOptions options;
  options.optimizer.lr = 1e-2f;
  nn::Bloom actor(tiny_model(), 1), critic(tiny_model(), 2), reference(tiny_model(), 3);
  train::Engine actor_engine("model", world, actor.parameters(), options);
  train::Engine critic_engine("critic", world, critic.parameters(), options);
  train_one_step(actor_engine, actor);
  train_one_step(critic_engine, critic);
  train::StateMap state;
  state.set("step", int64_t(7));
  state.set("reward_mean", 0.25);
  state.set("data_identity", std::string("kjv-bpe-1024"));

  train::CheckpointStore store(dir.file("checkpoints"), world);
  const std::vector<train::CheckpointPart> parts = {
      actor_engine.checkpoint_part(),
      critic_engine.checkpoint_part(),
      {"reference", &reference.parameters(), nullptr}};
  store.save(7, parts, state, "seed: 1\n", 0);
  const auto saved = store.latest();
  BOOST_REQUIRE(saved);
  // "model" keeps the first format's names; other parts are prefixed.
  for (const char* file : {"model.h5", "optimizer_rank00000.h5", "critic.h5",
                           "critic_optimizer_rank00000.h5", "reference.h5", "trainer.h5"})
    BOOST_TEST(std::filesystem::exists(std::filesystem::path(*saved) / file), file);
  BOOST_TEST(
      !std::filesystem::exists(std::filesystem::path(*saved) / "reference_optimizer_rank00000.h5"));

  // Fresh models of other seeds get everything back.
  nn::Bloom actor2(tiny_model(), 11), critic2(tiny_model(), 12), reference2(tiny_model(), 13);
  train::Engine actor2_engine("model", world, actor2.parameters(), options);
  train::Engine critic2_engine("critic", world, critic2.parameters(), options);
  const train::StateMap loaded =
      store.load(*saved, {actor2_engine.checkpoint_part(),
                          critic2_engine.checkpoint_part(),
                          {"reference", &reference2.parameters(), nullptr}});
  BOOST_TEST(loaded.get_int("step") == 7);
  BOOST_TEST(loaded.get_double("reward_mean") == 0.25);
  BOOST_TEST(loaded.get_string("data_identity") == "kjv-bpe-1024");
  BOOST_TEST(loaded.get_int("critic.numel") == critic_engine.optimizer().flat().numel());
  const auto same = [](const nn::ParameterList& a, const nn::ParameterList& b) {
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].tensor.to_vector<float>() != b[i].tensor.to_vector<float>()) return false;
    return true;
  };
  BOOST_TEST(same(actor.parameters(), actor2.parameters()));
  BOOST_TEST(same(critic.parameters(), critic2.parameters()));
  BOOST_TEST(same(reference.parameters(), reference2.parameters()));
  BOOST_TEST(!same(actor.parameters(), critic2.parameters()));
  for (auto [a, b] :
       {std::pair{&actor_engine, &actor2_engine}, {&critic_engine, &critic2_engine}}) {
    BOOST_TEST(a->optimizer().optimizer().exp_avg_sq().to_vector<float>() ==
               b->optimizer().optimizer().exp_avg_sq().to_vector<float>());
    BOOST_TEST(b->optimizer().optimizer().steps_taken() == 1);
  }
  // A part the checkpoint lacks is named in the error.
  const std::string e = error_of(
      [&] { train::CheckpointStore::load_weights(*saved, actor2.parameters(), "value_head"); });
  BOOST_TEST(contains(e, "has no part 'value_head'"), e);
  BOOST_TEST(contains(error_of([&] { loaded.get_int("reward_mean"); }), "is not an integer"));
}

// The newest intact checkpoint is chosen; damaged newer ones are moved aside
// only once one is found, and when all are damaged nothing moves.
BOOST_AUTO_TEST_CASE(newest_intact_skips_and_moves_damaged) {
  namespace fs = std::filesystem;
  testing::TempDir dir("newest_intact");
  std::vector<std::string> folders;
  for (const char* name : {"step_1", "step_2", "step_3", "step_4"}) {
    folders.push_back(dir.file(name));
    fs::create_directories(folders.back());
  }
  std::set<std::string> bad = {folders[2], folders[3]};
  const auto verify = [&](const std::string& f) {
    return std::string(bad.count(f) ? "crc differs" : "");
  };
  BOOST_TEST(!train::newest_intact({}, verify).has_value());
  BOOST_TEST(train::newest_intact(folders, verify).value_or("") == folders[1]);
  BOOST_TEST(!fs::exists(folders[3]));
  BOOST_TEST(fs::exists(dir.file("damaged-step_4")));
  BOOST_TEST(fs::exists(dir.file("damaged-step_3")));
  BOOST_TEST(fs::exists(folders[1]));

  const std::vector<std::string> left = {folders[0], folders[1]};
  bad = {left.begin(), left.end()};
  const std::string e = error_of([&] { train::newest_intact(left, verify); });
  BOOST_TEST(contains(e, "every checkpoint in " + dir.path.string() + " is damaged"), e);
  BOOST_TEST(fs::exists(folders[0]));
  BOOST_TEST(fs::exists(folders[1]));
}

BOOST_AUTO_TEST_SUITE_END()
