// The config layer on DeepSpeed-style keys: defaults, overrides, every kind of error with its
// key, line and fix, and the resolved YAML read back to the same values.
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "io/config.hpp"

using namespace turbine;
using io::Config;
using io::ConfigSchema;
using io::ConfigType;

namespace {

ConfigSchema deepspeed_schema() {
  ConfigSchema s;
  s.integer("train_batch_size", 32, "global batch: micro x accumulation x data-parallel ranks")
      .at_least(1);
  s.integer("train_micro_batch_size_per_gpu", 4, "samples per rank per forward").at_least(1);
  s.integer("gradient_accumulation_steps", 1, "micro batches summed before a step").at_least(1);
  s.integer("steps_per_print", 10, "steps between progress lines").at_least(1);
  s.number("gradient_clipping", 1.0, "clip the global gradient norm to this; 0 disables")
      .at_least(0);
  s.string("optimizer.type", "AdamW", "optimizer").one_of({"AdamW", "SGD"});
  s.number("optimizer.params.lr", 1e-3, "peak learning rate").at_least(0);
  s.numbers("optimizer.params.betas", {0.9, 0.999}, "AdamW moment decay rates")
      .at_least(0)
      .at_most(1);
  s.number("optimizer.params.eps", 1e-8, "AdamW denominator term").at_least(0);
  s.number("optimizer.params.weight_decay", 0.01, "decoupled weight decay").at_least(0);
  s.string("scheduler.type", "WarmupLR", "learning-rate schedule")
      .one_of({"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"});
  s.integer("scheduler.params.warmup_num_steps", 100, "steps of linear warmup").at_least(0);
  s.integer("scheduler.params.total_num_steps", 1000, "steps of the whole run").at_least(1);
  s.boolean("bf16.enabled", false, "bf16 compute with fp32 master weights");
  s.integer("zero_optimization.stage", 0, "ZeRO stage: 0 off, 1 optimizer, 2 +gradients")
      .one_of({0, 1, 2});
  s.integers("data.seq_lens", {128}, "curriculum sequence lengths");
  s.strings("data.files", {}, "HDF5 token files");
  s.required("out", ConfigType::string, "output directory");
  s.mapping("tags", "free labels copied to the metrics");
  return s;
}

const char* kRun = R"(# a run
train_batch_size: 16
train_micro_batch_size_per_gpu: 2
gradient_accumulation_steps: 4
optimizer:
  type: AdamW
  params:
    lr: 3.0e-4
    betas: [0.9, 0.95]
    weight_decay: 0.1
scheduler:
  type: WarmupCosineLR
bf16:
  enabled: true
zero_optimization:
  stage: 1
out: runs/a
)";

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    Config::from_string(yaml, "run.yaml", deepspeed_schema(), overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  const bool found = text.find(part) != std::string::npos;
  if (!found) BOOST_TEST_MESSAGE("'" << part << "' is not in: " << text);
  return found;
}

}  // namespace

BOOST_AUTO_TEST_CASE(file_values_defaults_and_where) {
  const Config c = Config::from_string(kRun, "run.yaml", deepspeed_schema());
  BOOST_TEST(c.get<int64_t>("train_batch_size") == 16);
  BOOST_TEST(c.get<double>("optimizer.params.lr") == 3.0e-4);
  BOOST_TEST((c.get<std::vector<double>>("optimizer.params.betas") == std::vector{0.9, 0.95}));
  BOOST_TEST(c.get<std::string>("scheduler.type") == "WarmupCosineLR");
  BOOST_TEST(c.get<bool>("bf16.enabled"));
  BOOST_TEST(c.get<int64_t>("zero_optimization.stage") == 1);
  BOOST_TEST(c.get<std::string>("out") == "runs/a");
  // Defaults, also under a mapping the file gives.
  BOOST_TEST(c.get<double>("gradient_clipping") == 1.0);
  BOOST_TEST(c.get<int64_t>("steps_per_print") == 10);
  BOOST_TEST(c.get<double>("optimizer.params.eps") == 1e-8);
  BOOST_TEST(c.get<int64_t>("scheduler.params.warmup_num_steps") == 100);
  BOOST_TEST(c.get<std::vector<std::string>>("data.files").empty());
  BOOST_TEST(c.get<YAML::Node>("tags").size() == 0u);

  BOOST_TEST(c.has("train_batch_size"));
  BOOST_TEST(!c.has("gradient_clipping"));
  BOOST_TEST(c.where("train_batch_size") == "run.yaml:2");
  BOOST_TEST(c.where("optimizer.params.betas") == "run.yaml:9");
  BOOST_TEST(c.where("gradient_clipping") == "default");
}

BOOST_AUTO_TEST_CASE(overrides_are_yaml_values_and_win) {
  const Config c = Config::from_string(
      kRun, "run.yaml", deepspeed_schema(),
      {"optimizer.params.betas=[0.8,0.9]", "bf16.enabled=false", "train_batch_size=64",
       "scheduler.params.total_num_steps=5000", "data.seq_lens=[64, 128, 256]",
       "optimizer={type: SGD, params: {lr: 0.1}}", "tags.team=nlp", "tags.site.rack=7"});
  BOOST_TEST((c.get<std::vector<double>>("optimizer.params.betas") == std::vector{0.8, 0.9}));
  BOOST_TEST(!c.get<bool>("bf16.enabled"));
  BOOST_TEST(c.get<int64_t>("train_batch_size") == 64);
  // Keys the file does not have, under a mapping it does not have either.
  BOOST_TEST(c.get<int64_t>("scheduler.params.total_num_steps") == 5000);
  BOOST_TEST((c.get<std::vector<int64_t>>("data.seq_lens") == std::vector<int64_t>{64, 128, 256}));
  // A mapping sets the keys it names and leaves the others alone.
  BOOST_TEST(c.get<std::string>("optimizer.type") == "SGD");
  BOOST_TEST(c.get<double>("optimizer.params.lr") == 0.1);
  BOOST_TEST(c.get<double>("optimizer.params.weight_decay") == 0.1);
  BOOST_TEST(c.get<YAML::Node>("tags")["team"].as<std::string>() == "nlp");
  BOOST_TEST(c.get<YAML::Node>("tags")["site"]["rack"].as<int>() == 7);

  BOOST_TEST(c.has("scheduler.params.total_num_steps"));
  BOOST_TEST(c.where("bf16.enabled") == "--set bf16.enabled=false");
  BOOST_TEST(c.where("optimizer.params.lr") == "--set optimizer={type: SGD, params: {lr: 0.1}}");

  // No file at all: defaults and --set only.
  const Config bare = Config::from_string("", "defaults", deepspeed_schema(), {"out=x"});
  BOOST_TEST(bare.get<int64_t>("train_batch_size") == 32);
  BOOST_TEST(bare.get<std::string>("out") == "x");
}

BOOST_AUTO_TEST_CASE(unknown_keys_name_line_and_suggestion) {
  const std::string nested = error_of(std::string(kRun) + "optimiser:\n  type: SGD\n");
  BOOST_TEST(contains(nested, "run.yaml:18: unknown key optimiser: did you mean optimizer?"));

  const std::string lr =
      error_of("optimizer:\n  params:\n    learning_rate: 1.0e-4\nout: x\n");  // lr's long name
  BOOST_TEST(contains(lr, "run.yaml:3: unknown key optimizer.params.learning_rate"));
  BOOST_TEST(contains(lr, "did you mean lr?"));

  const std::string typo = error_of("train_batch_sise: 8\nout: x\n");
  BOOST_TEST(
      contains(typo, "run.yaml:1: unknown key train_batch_sise: did you mean train_batch_size?"));

  // Wrong nesting: the same last name elsewhere.
  const std::string stage = error_of("out: x\nstage: 2\n");
  BOOST_TEST(contains(stage, "did you mean zero_optimization.stage?"));

  // --set names the whole dotted key, since that is what the user retypes.
  const std::string set = error_of("out: x\n", {"optimizer.params.learning_rate=1e-4"});
  BOOST_TEST(contains(set,
                      "--set optimizer.params.learning_rate=1e-4: unknown key "
                      "optimizer.params.learning_rate: did you mean optimizer.params.lr?"));

  // Nothing near: the siblings are listed.
  const std::string far = error_of("out: x\nbf16:\n  precision: high\n");
  BOOST_TEST(contains(far, "run.yaml:3: unknown key bf16.precision: the keys of bf16 are enabled"));

  // A scalar key is not a mapping.
  const std::string below = error_of("out: x\n", {"train_batch_size.x=1"});
  BOOST_TEST(
      contains(below, "train_batch_size is an integer, so it has no key train_batch_size.x"));
}

BOOST_AUTO_TEST_CASE(wrong_types_say_what_was_expected) {
  const std::string integer = error_of("out: x\ntrain_batch_size: abc\n");
  BOOST_TEST(contains(integer, "run.yaml:2: train_batch_size: expected an integer, got 'abc'"));
  BOOST_TEST(
      contains(error_of("out: x\nsteps_per_print: 1.5\n"), "expected an integer, got '1.5'"));
  BOOST_TEST(contains(error_of("out: x\nbf16:\n  enabled: maybe\n"),
                      "run.yaml:3: bf16.enabled: expected a boolean (true or false), got 'maybe'"));
  BOOST_TEST(contains(error_of("out: x\ngradient_clipping: [1]\n"),
                      "gradient_clipping: expected a number, got a list"));
  BOOST_TEST(contains(error_of("out: x\noptimizer: AdamW\n"),
                      "run.yaml:2: optimizer: expected a mapping, got 'AdamW'"));
  BOOST_TEST(contains(error_of("out: x\noptimizer:\n  params:\n    betas: 0.9\n"),
                      "run.yaml:4: optimizer.params.betas: expected a list of numbers like [a, b], "
                      "got '0.9'"));
  const std::string item = error_of(
      "out: x\noptimizer:\n  params:\n    betas:\n      - 0.9\n"
      "      - high\n");
  BOOST_TEST(
      contains(item, "run.yaml:6: optimizer.params.betas[1]: expected a number, got 'high'"));
  BOOST_TEST(
      contains(error_of("out: x\n", {"train_batch_size=12x"}),
               "--set train_batch_size=12x: train_batch_size: expected an integer, got '12x'"));
  BOOST_TEST(contains(error_of("out: x\ntags: [a]\n"), "tags: expected a mapping, got a list"));
}

BOOST_AUTO_TEST_CASE(allowed_values_and_bounds_name_the_fix) {
  const std::string stage = error_of("out: x\nzero_optimization:\n  stage: 3\n");
  BOOST_TEST(contains(stage,
                      "run.yaml:3: zero_optimization.stage is 3, which is not allowed: "
                      "use one of 0, 1, 2"));
  const std::string sched = error_of("out: x\nscheduler:\n  type: WarmupCosineLr\n");
  BOOST_TEST(contains(sched, "scheduler.type is 'WarmupCosineLr', which is not allowed"));
  BOOST_TEST(contains(sched, "(did you mean WarmupCosineLR?)"));
  BOOST_TEST(contains(error_of("out: x\ntrain_batch_size: 0\n"),
                      "run.yaml:2: train_batch_size is 0: use a value >= 1"));
  BOOST_TEST(contains(error_of("out: x\n", {"optimizer.params.betas=[0.9, 1.5]"}),
                      "optimizer.params.betas is [0.9, 1.5]: use values in [0, 1]"));
}

BOOST_AUTO_TEST_CASE(missing_required_duplicates_and_bad_flags) {
  BOOST_TEST(contains(error_of("train_batch_size: 8\n"),
                      "run.yaml: missing required key out (output directory): add it to the "
                      "file or pass --set out=VALUE"));
  BOOST_TEST(contains(error_of("out: x\ntrain_batch_size: 8\ntrain_batch_size: 16\n"),
                      "run.yaml:3: train_batch_size is given twice (first at run.yaml:2)"));
  BOOST_TEST(contains(error_of("out: x\n", {"bf16.enabled"}),
                      "--set bf16.enabled: expected --set dotted.key=value"));
  BOOST_TEST(contains(error_of("out: x\n", {"optimizer..lr=1"}), "is not a dotted key"));
  BOOST_TEST(contains(error_of("out: x\n", {"optimizer.params.betas=[0.9"}),
                      "--set optimizer.params.betas=[0.9: the value is not valid YAML"));
}

BOOST_AUTO_TEST_CASE(all_problems_are_reported_at_once) {
  const std::string all =
      error_of("train_batch_size: abc\nzero_optimization:\n  stage: 5\noptimizer:\n  parms: {}\n",
               {"bf16.enabld=true"});
  BOOST_TEST(contains(all, "5 problems in config run.yaml:"));
  BOOST_TEST(contains(all, "\n  run.yaml:1: train_batch_size: expected an integer"));
  BOOST_TEST(contains(all, "\n  run.yaml:3: zero_optimization.stage is 5"));
  BOOST_TEST(contains(all, "\n  run.yaml:5: unknown key optimizer.parms: did you mean params?"));
  BOOST_TEST(contains(all,
                      "\n  --set bf16.enabld=true: unknown key bf16.enabld: did you mean "
                      "bf16.enabled?"));
  BOOST_TEST(contains(all, "\n  run.yaml: missing required key out"));
}

BOOST_AUTO_TEST_CASE(files_syntax_errors_and_cross_key_checks) {
  const ConfigSchema schema = deepspeed_schema();
  const auto dir = std::filesystem::temp_directory_path() / "turbine_test_config";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.yaml").string();
  std::ofstream(path) << kRun;
  const Config c = Config::load(path, schema, {"gradient_clipping=0.5"});
  BOOST_TEST(c.where("train_micro_batch_size_per_gpu") == path + ":3");
  BOOST_TEST(c.get<double>("gradient_clipping") == 0.5);

  const auto error_loading = [&](const std::string& p) {
    try {
      Config::load(p, schema);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  BOOST_TEST(
      contains(error_loading((dir / "missing.yaml").string()), "missing.yaml' does not exist"));
  BOOST_TEST(contains(error_loading(dir.string()), "is a directory"));
  std::ofstream(dir / "broken.yaml") << "out: x\noptimizer:\n  type: [AdamW\n  params: {}\n";
  BOOST_TEST(
      contains(error_loading((dir / "broken.yaml").string()), "broken.yaml:4: YAML syntax error"));
  BOOST_TEST(
      contains(error_of("out: x\ntrain_batch_size: 8: 9\n"), "run.yaml:2: YAML syntax error"));
  std::filesystem::remove_all(dir);

  // The DeepSpeed batch identity, checked by an app across keys, named at the file's line.
  const int64_t ranks = 2;
  const auto batch_check = [&](const Config& config) {
    const int64_t batch = config.get<int64_t>("train_batch_size");
    const int64_t micro = config.get<int64_t>("train_micro_batch_size_per_gpu");
    const int64_t accumulation = config.get<int64_t>("gradient_accumulation_steps");
    if (batch != micro * accumulation * ranks) {
      config.fail("train_batch_size",
                  fmt::format("train_batch_size {} != micro {} x accumulation {} x {} ranks: set "
                              "train_batch_size: {}",
                              batch, micro, accumulation, ranks, micro * accumulation * ranks));
    }
  };
  BOOST_CHECK_NO_THROW(batch_check(c));
  const auto message = [&](const Config& config) {
    try {
      batch_check(config);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const Config changed = Config::from_string(kRun, "run.yaml", schema, {"train_batch_size=32"});
  BOOST_TEST(contains(message(changed),
                      "--set train_batch_size=32: train_batch_size 32 != micro 2 "
                      "x accumulation 4 x 2 ranks: set train_batch_size: 16"));
  const Config fresh = Config::from_string("out: x\n", "run.yaml", schema);
  BOOST_TEST(
      contains(message(fresh), "run.yaml (default train_batch_size=32): train_batch_size 32"));
}

BOOST_AUTO_TEST_CASE(resolved_yaml_reads_back_the_same) {
  const ConfigSchema schema = deepspeed_schema();
  const Config c = Config::from_string(
      kRun, "run.yaml", schema,
      {"tags.team=nlp", R"(data.files=[a.h5, 'true', '', '"\2 x'])", "optimizer.params.eps=1e-8"});
  const std::string text = c.to_yaml();
  BOOST_TEST_MESSAGE(text);
  // Declaration order, nested, with help as comments.
  BOOST_TEST(text.find("train_batch_size: 16") < text.find("optimizer:"));
  BOOST_TEST(text.find("optimizer:") < text.find("  params:"));
  BOOST_TEST(contains(text, "    betas: [0.9, 0.95]"));
  BOOST_TEST(contains(text, "gradient_clipping: 1.0"));
  BOOST_TEST(contains(text, "# peak learning rate"));

  const Config back = Config::from_string(text, "config.yaml", schema);
  for (const ConfigSchema::Key& key : schema.keys()) {
    BOOST_TEST_CONTEXT(key.name) {
      switch (key.type) {
        case ConfigType::boolean:
          BOOST_TEST(back.get<bool>(key.name) == c.get<bool>(key.name));
          break;
        case ConfigType::integer:
          BOOST_TEST(back.get<int64_t>(key.name) == c.get<int64_t>(key.name));
          break;
        case ConfigType::number:
          BOOST_TEST(back.get<double>(key.name) == c.get<double>(key.name));
          break;
        case ConfigType::string:
          BOOST_TEST(back.get<std::string>(key.name) == c.get<std::string>(key.name));
          break;
        case ConfigType::integer_list:
          BOOST_TEST(
              (back.get<std::vector<int64_t>>(key.name) == c.get<std::vector<int64_t>>(key.name)));
          break;
        case ConfigType::number_list:
          BOOST_TEST(
              (back.get<std::vector<double>>(key.name) == c.get<std::vector<double>>(key.name)));
          break;
        case ConfigType::string_list:
          BOOST_TEST((back.get<std::vector<std::string>>(key.name) ==
                      c.get<std::vector<std::string>>(key.name)));
          break;
        case ConfigType::mapping: {
          YAML::Emitter a, b;
          a << YAML::Flow << back.get<YAML::Node>(key.name);
          b << YAML::Flow << c.get<YAML::Node>(key.name);
          BOOST_TEST(std::string(a.c_str()) == std::string(b.c_str()));
          break;
        }
      }
    }
  }
  BOOST_TEST(back.get<std::vector<std::string>>("data.files") ==
                 (std::vector<std::string>{"a.h5", "true", "", "\"\\2 x"}),
             boost::test_tools::per_element());
  BOOST_TEST(back.to_yaml() == text);
}

BOOST_AUTO_TEST_CASE(schema_and_access_mistakes_are_errors) {
  ConfigSchema s;
  s.integer("zero_optimization.stage", 0, "stage");
  BOOST_CHECK_THROW(s.integer("zero_optimization.stage", 1, "again"), Error);
  BOOST_CHECK_THROW(s.integer("zero_optimization", 1, "a parent"), Error);
  BOOST_CHECK_THROW(s.integer("zero_optimization.stage.x", 1, "below a key"), Error);
  BOOST_CHECK_THROW(s.integer("steps", 0, "bad default").at_least(1), Error);
  BOOST_CHECK_THROW(s.string("name", "x", "wrong kind of allowed value").one_of({1}), Error);
  BOOST_CHECK_THROW(s.boolean("flag", true, "no bounds").at_most(1), Error);
  const Config c = Config::from_string("", "t.yaml", s);
  BOOST_CHECK_THROW(c.get<double>("zero_optimization.stage"), Error);
  try {
    c.get<int64_t>("zero_optimization.stag");
    BOOST_FAIL("an undeclared key was read");
  } catch (const Error& e) {
    BOOST_TEST(contains(e.what(), "did you mean zero_optimization.stage?"));
  }
}
