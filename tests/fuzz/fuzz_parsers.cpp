// Mutation fuzzing of every reader of outside input: YAML configs under each
// app's schema and options, tokenizer.json, token data sets, checkpoints,
// safetensors, PNG/PNM images, the JSONL readers (preference pairs, prompts,
// VisualChat conversations) and the server's request parser. Each target
// starts from seeds made here (or the repository's configs), mutates them
// (bit flips, bytes set, ranges cut, doubled or spliced from another seed,
// grammar tokens inserted, truncation) and runs the reader in process. An
// input may be accepted or refused with turbine::Error (or the server's
// ApiError); anything else is a finding: another exception escaping, a
// crash (the input is kept in `current-<target>` of the findings folder
// before each run), or a hang (one input over --hang-seconds).
//
//   fuzz-parsers [--seconds S] [--seed N] [--findings DIR] [TARGET...]   (all by default)
//   fuzz-parsers --list
//   fuzz-parsers --replay FILE TARGET
// Regressions: files under tests/fuzz/regressions/<target>/ are replayed
// first, every run (the smoke test and tools/fuzz).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "cl/run.hpp"
#include "core/error.hpp"
#include "data/png.hpp"
#include "data/token_dataset.hpp"
#include "data/tokenizer.hpp"
#include "fl/sim.hpp"
#include "infer/infer.hpp"
#include "infer/openai.hpp"
#include "io/config.hpp"
#include "io/safetensors.hpp"
#include "multimodal/dialogue.hpp"
#include "rlhf/config.hpp"
#include "rlhf/data.hpp"
#include "rlhf/rlhf.hpp"
#include "tensor/hdf5.hpp"
#include "train/checkpoint.hpp"
#include "train/pretrain.hpp"

using namespace turbine;
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
}

struct Target {
  std::string name;
  std::function<std::vector<std::string>()> seeds;
  std::function<void(const std::string&)> run;  // throws Error (or ApiError) to refuse
  bool text = true;                             // grammar tokens are worth inserting
};

// A scratch folder for the inputs that readers take as files.
fs::path scratch() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("turbine-fuzz-" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// A target's run for a reader that takes a path: the input is written to
// scratch()/name first.
std::function<void(const std::string&)> as_file(
    const std::string& name, std::function<void(const std::string& path)> reader) {
  return [name, reader](const std::string& bytes) {
    const fs::path path = scratch() / name;
    write_file(path, bytes);
    reader(path.string());
  };
}

std::vector<std::string> config_seeds(const std::string& app_folder) {
  std::vector<std::string> seeds;
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  const fs::path dir = fs::path(root ? root : ".") / "configs" / app_folder;
  if (fs::is_directory(dir))
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.path().extension() == ".yaml") seeds.push_back(read_file(entry.path()));
  if (seeds.empty()) seeds.push_back("train_steps: 10\n");
  return seeds;
}

// A config through the app's schema and options (resolution catches what
// the schema cannot: batch arithmetic, impossible combinations).
Target config_target(const std::string& name, const std::string& folder,
                     std::function<io::ConfigSchema()> schema,
                     std::function<void(const io::Config&)> resolve) {
  return {name, [folder] { return config_seeds(folder); },
          [schema, resolve](const std::string& yaml) {
            const io::Config config = io::Config::from_string(yaml, "fuzz.yaml", schema());
            resolve(config);
          }};
}

std::string small_tokenizer_json() {
  data::Tokenizer::TrainOptions options;
  options.vocab_size = 300;
  options.min_frequency = 1;
  return data::Tokenizer::train({"In the beginning God created the heaven and the earth.",
                                 "And the earth was without form, and void; and darkness."},
                                options)
      .to_json();
}

std::string token_dataset_seed() {
  const fs::path path = scratch() / "seed-tokens.h5";
  fs::remove(path);
  data::TokenDatasetWriter writer(path.string(), 300, small_tokenizer_json(), "fuzz-seed", true);
  std::mt19937 rng(1);
  for (int d = 0; d < 40; ++d) {
    std::vector<int32_t> doc(size_t(rng() % 60));
    for (int32_t& t : doc) t = int32_t(rng() % 300);
    writer.add_document(doc, d % 10 == 0);
  }
  writer.finish();
  return read_file(path);
}

std::vector<Target> targets() {
  std::vector<Target> t;
  t.push_back(config_target(
      "config_pretrain", "pretrain", [] { return train::pretrain_schema(); },
      [](const io::Config& c) { train::pretrain_options(c, 2); }));
  t.push_back(config_target(
      "config_ulysses", "ulysses", [] { return train::pretrain_schema("ulysses-train"); },
      [](const io::Config& c) { train::ulysses_options(c, 2); }));
  // rlhf's file has a section per step over shared keys: resolved as `rlhf
  // all` does (every step, each refusal collected).
  t.push_back({"config_rlhf",
               [] {
                 // Their data folders, with empty JSONL files, in the scratch folder.
                 std::vector<std::string> seeds = config_seeds("rlhf");
                 for (std::string& seed : seeds) {
                   const std::string from = "data_path: data/";
                   const size_t at = seed.find(from);
                   if (at == std::string::npos) continue;
                   const size_t end = seed.find('\n', at);
                   const std::string folder = seed.substr(at + from.size(), end - at - from.size());
                   const fs::path data = scratch() / "data" / folder;
                   fs::create_directories(data);
                   for (const char* file : {"train.jsonl", "eval.jsonl"})
                     write_file(data / file, "");
                   seed.replace(at, end - at, "data_path: " + data.string());
                 }
                 return seeds;
               },
               as_file("rlhf.yaml", [](const std::string& path) {
                 std::vector<io::Config::IgnoredKey> ignored;
                 rlhf::configure_steps(path,
                                       {rlhf::Phase::sft, rlhf::Phase::reward, rlhf::Phase::ppo},
                                       {}, 2, ignored);
               })});
  t.push_back(config_target(
      "config_fedsim", "fedsim", [] { return fl::sim_schema(); },
      [](const io::Config& c) { fl::sim_options(c, 3); }));
  t.push_back(config_target(
      "config_cl_edge", "cl-edge", [] { return cl::cl_schema(); },
      [](const io::Config& c) { cl::cl_options(c, 1); }));
  t.push_back(config_target(
      "config_infer", "infer", [] { return infer::infer_schema(); },
      [](const io::Config& c) { infer::infer_options(c, 1); }));
  t.push_back({"tokenizer_json", [] { return std::vector<std::string>{small_tokenizer_json()}; },
               [](const std::string& json) {
                 const data::Tokenizer tok = data::Tokenizer::from_json(json, "fuzz");
                 tok.decode(tok.encode("And God said, Let there be light"));
               }});
  t.push_back({"token_dataset", [] { return std::vector<std::string>{token_dataset_seed()}; },
               as_file("tokens.h5",
                       [](const std::string& path) {
                         const data::TokenDataset ds = data::TokenDataset::open(path);
                         for (data::Split s : {data::Split::train, data::Split::valid}) {
                           std::vector<int32_t> tokens(size_t(ds.num_tokens(s)));
                           ds.read(s, 0, ds.num_tokens(s), tokens.data());
                         }
                       }),
               false});
  t.push_back(
      {"checkpoint",
       [] {
         const fs::path dir = scratch() / "seed-checkpoint";
         fs::remove_all(dir);
         fs::create_directories(dir);
         {
           H5File trainer((dir / "trainer.h5").string(), H5File::Mode::create);
           trainer.set_attribute("format_version", int64_t{1});
           trainer.set_attribute("step", int64_t{20});
           trainer.set_attribute("world_size", int64_t{2});
           trainer.set_attribute("lr_note", std::string("fuzz"));
           trainer.set_attribute("loss_scale", 65536.0);
           trainer.write("params/w", Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
           trainer.close();
         }
         return std::vector<std::string>{read_file(dir / "trainer.h5")};
       },
       [](const std::string& bytes) {
         const fs::path dir = scratch() / "checkpoint";
         fs::create_directories(dir);
         write_file(dir / "trainer.h5", bytes);
         write_file(dir / "model.h5", bytes);
         train::CheckpointStore::read_state(dir.string());
         train::CheckpointStore::read_weights(dir.string());
       },
       false});
  t.push_back({"safetensors",
               [] {
                 const fs::path path = scratch() / "seed.safetensors";
                 io::write_safetensors(
                     path.string(),
                     {{"a.weight", Tensor::from_vector<float>({2, 2}, {1, 2, 3, 4})},
                      {"b.bias", Tensor::from_vector<float>({3}, {5, 6, 7})}},
                     {{"format", "pt"}});
                 return std::vector<std::string>{read_file(path)};
               },
               as_file("fuzz.safetensors", [](const std::string& path) {
                 const io::SafetensorsFile file(path);
                 for (const auto& entry : file.tensors()) file.read(entry.name);
               })});
  t.push_back({"image",
               [] {
                 data::Image image{4, 3, 3, std::vector<uint8_t>(36)};
                 for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = uint8_t(i * 7);
                 const auto png = data::encode_png(image);
                 return std::vector<std::string>{std::string(png.begin(), png.end()),
                                                 "P6\n4 3\n255\n" + std::string(36, 'x'),
                                                 "P5 2 2 255 abcd"};
               },
               [](const std::string& bytes) {
                 data::decode_image(
                     std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 3);
               },
               false});
  t.push_back({"pairs_jsonl",
               [] {
                 return std::vector<std::string>{
                     "{\"prompt\": \"Who made the earth?\", \"chosen\": \"God.\", \"rejected\": "
                     "\"Nobody.\"}\n\n{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\", "
                     "\"extra\": 1}\n"};
               },
               as_file("pairs.jsonl", [](const std::string& path) { rlhf::read_pairs(path); })});
  t.push_back({"prompts_jsonl",
               [] {
                 return std::vector<std::string>{
                     "{\"prompt\": \"In the beginning\", \"max_new_tokens\": 8, \"temperature\": "
                     "0.7, \"top_k\": 40, \"top_p\": 0.9, \"stop\": [\"\\n\"], \"seed\": 3}\n"
                     "{\"prompt\": \"And God said\", \"stop\": \".\", \"logprobs\": 2}\n"};
               },
               as_file("prompts.jsonl", [](const std::string& path) {
                 infer::read_prompts_file(path, infer::SamplingOptions{});
               })});
  t.push_back({"conversations_jsonl",
               [] {
                 return std::vector<std::string>{
                     "{\"images\": [\"a.png\", \"b.png\"], \"rounds\": [{\"question\": \"<image> "
                     "<image> Which is a shoe?\", \"answer\": \"The first.\"}, {\"question\": "
                     "\"And the other?\", \"answer\": \"A bag.\"}]}\n"};
               },
               as_file("conversations.jsonl",
                       [](const std::string& path) { multimodal::load_conversations(path, 8); })});
  const auto request_seeds = [] {
    return std::vector<std::string>{
        R"({"model": "m", "prompt": "In the beginning", "max_tokens": 8, "temperature": 0.5,
            "top_p": 0.9, "stop": ["\n", "."], "stream": true, "logprobs": 2, "seed": 1})",
        R"({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_completion_tokens": 4, "logprobs": true, "top_logprobs": 2,
            "stream_options": {"include_usage": true}, "stream": true})"};
  };
  const auto request = [](bool chat) {
    return [chat](const std::string& body) {
      infer::openai::Defaults defaults;
      defaults.model = "m";
      try {
        if (chat)
          infer::openai::parse_chat(body, defaults);
        else
          infer::openai::parse_completion(body, defaults);
      } catch (const infer::openai::ApiError& e) {  // the server's 400: a refusal
        if (e.message.empty()) throw std::runtime_error("an ApiError without a message");
        throw Error(e.message);
      }
    };
  };
  t.push_back({"request_completion", request_seeds, request(false)});
  t.push_back({"request_chat", request_seeds, request(true)});
  return t;
}

const std::vector<std::string> kTokens = {
    "{",       "}",    "[",   "]",     ":",  ",",        "\"",      "null",
    "true",    "-1",   "0",   "1e999", "-0", "nan",      "\\u0000", "\\ud800",
    "\n",      "- ",   ": ",  "&a",    "*a", "!!binary", "~",       "9223372036854775808",
    "<image>", "\xff", "\x00"};

std::string mutate(std::string s, std::mt19937_64& rng, const std::vector<std::string>& seeds,
                   bool text) {
  const int count = 1 + int(rng() % 4);
  for (int k = 0; k < count; ++k) {
    const size_t n = s.size();
    switch (rng() % (text ? 8 : 7)) {
      case 0:  // flip a bit
        if (n) s[rng() % n] ^= char(1 << (rng() % 8));
        break;
      case 1:  // set a byte to an edge value
        if (n) s[rng() % n] = "\x00\xff\x7f\x80\x01"[rng() % 5];
        break;
      case 2:  // cut a range
        if (n) {
          const size_t at = rng() % n;
          s.erase(at, 1 + rng() % std::min<size_t>(n - at, 64));
        }
        break;
      case 3:  // double a range
        if (n) {
          const size_t at = rng() % n, len = 1 + rng() % std::min<size_t>(n - at, 64);
          s.insert(at, s.substr(at, len));
        }
        break;
      case 4:  // truncate
        if (n) s.resize(rng() % n);
        break;
      case 5: {  // splice from another seed
        const std::string& other = seeds[rng() % seeds.size()];
        if (!other.empty() && n) {
          const size_t from = rng() % other.size(), at = rng() % n;
          s.replace(at, rng() % (n - at + 1), other.substr(from, 1 + rng() % 64));
        }
        break;
      }
      case 6: {  // random bytes
        std::string bytes(1 + rng() % 8, '\0');
        for (char& c : bytes) c = char(rng());
        s.insert(n ? rng() % n : 0, bytes);
        break;
      }
      default:  // a grammar token
        s.insert(n ? rng() % n : 0, kTokens[rng() % kTokens.size()]);
    }
  }
  return s;
}

struct Outcome {
  int64_t runs = 0, accepted = 0, refused = 0, findings = 0;
  std::string last_refusal;  // the message, for --replay
};

// Runs one input; a finding is printed and its input kept.
bool run_one(const Target& target, const std::string& input, const fs::path& findings,
             Outcome& outcome) {
  ++outcome.runs;
  std::string problem;
  try {
    target.run(input);
    ++outcome.accepted;
    return true;
  } catch (const Error& e) {
    ++outcome.refused;
    outcome.last_refusal = e.what();
    return true;
  } catch (const std::exception& e) {
    problem = std::string("an exception other than turbine::Error escaped: ") + e.what();
  } catch (...) {
    problem = "a non-standard exception escaped";
  }
  ++outcome.findings;
  fs::create_directories(findings);
  const fs::path kept =
      findings / (target.name + "-" + std::to_string(std::hash<std::string>{}(input)) + ".bin");
  write_file(kept, input);
  std::printf("FINDING %s: %s (input kept in %s)\n", target.name.c_str(), problem.c_str(),
              kept.c_str());
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3, hang_seconds = 20;
  uint64_t seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  fs::path findings = "fuzz-findings";
  std::vector<std::string> wanted;
  std::string replay;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (arg == "--seconds")
      seconds = std::stod(value());
    else if (arg == "--hang-seconds")
      hang_seconds = std::stod(value());
    else if (arg == "--seed")
      seed = std::stoull(value());
    else if (arg == "--findings")
      findings = value();
    else if (arg == "--replay")
      replay = value();
    else if (arg == "--list") {
      for (const Target& t : targets()) std::printf("%s\n", t.name.c_str());
      return 0;
    } else if (arg == "-h" || arg == "--help") {
      std::printf(
          "usage: fuzz-parsers [--seconds S] [--seed N] [--findings DIR] "
          "[--hang-seconds S] [TARGET...] | --list | --replay FILE TARGET\n");
      return 0;
    } else {
      wanted.push_back(arg);
    }
  }
  std::vector<Target> all = targets();
  std::vector<Target> chosen;
  for (const Target& t : all)
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), t.name) != wanted.end())
      chosen.push_back(t);
  if (chosen.size() != (wanted.empty() ? all.size() : wanted.size())) {
    std::fprintf(stderr, "unknown target among the arguments (--list names them)\n");
    return 2;
  }

  // A hang: one input running past hang_seconds ends the run with its input kept.
  // The watchdog reads these locals, so it is declared after them and joined
  // (its destructor) before they go: a detached one read main's returned frame
  // while the process exited, now and then crashing the run that had passed.
  std::atomic<int64_t> started_ms{-1};
  std::string current_name;
  const std::jthread watchdog([&](const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const int64_t start = started_ms.load();
      const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count();
      if (start >= 0 && now - start > int64_t(hang_seconds * 1000)) {
        std::printf("FINDING %s: one input ran for more than %.0f s (a hang; input kept in %s)\n",
                    current_name.c_str(), hang_seconds,
                    (findings / ("current-" + current_name)).c_str());
        std::fflush(stdout);
        std::_Exit(3);
      }
    }
  });
  const auto timed = [&](const Target& target, const std::string& input, Outcome& outcome) {
    // Kept before the run, so a crash leaves it behind; removed when it returns.
    fs::create_directories(findings);
    const fs::path current = findings / ("current-" + target.name);
    write_file(current, input);
    current_name = target.name;
    started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count();
    const bool ok = run_one(target, input, findings, outcome);
    started_ms = -1;
    fs::remove(current);
    return ok;
  };

  if (!replay.empty()) {
    if (chosen.size() != 1 || wanted.size() != 1) {
      std::fprintf(stderr, "--replay FILE TARGET: name one target\n");
      return 2;
    }
    Outcome outcome;
    const bool ok = timed(chosen[0], read_file(replay), outcome);
    std::printf("%s: %s\n", replay.c_str(),
                ok ? (outcome.accepted ? "accepted" : ("refused: " + outcome.last_refusal).c_str())
                   : "FINDING");
    return ok ? 0 : 1;
  }

  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  const fs::path regressions = fs::path(root ? root : ".") / "tests/fuzz/regressions";
  std::printf("fuzzing %zu targets for %g s each (seed %llu)\n", chosen.size(), seconds,
              static_cast<unsigned long long>(seed));
  std::printf("%-20s %8s %9s %9s %9s %12s\n", "target", "runs", "accepted", "refused", "findings",
              "regressions");
  int64_t total_findings = 0;
  for (const Target& target : chosen) {
    Outcome outcome;
    int64_t replayed = 0;
    if (fs::is_directory(regressions / target.name))
      for (const auto& entry : fs::directory_iterator(regressions / target.name)) {
        timed(target, read_file(entry.path()), outcome);
        ++replayed;
      }
    std::vector<std::string> seeds = target.seeds();
    for (const std::string& s : seeds) timed(target, s, outcome);
    std::mt19937_64 rng(seed ^ std::hash<std::string>{}(target.name));
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::vector<std::string> pool = seeds;  // accepted mutants join the pool
    while (std::chrono::steady_clock::now() < end) {
      std::string input = mutate(pool[rng() % pool.size()], rng, seeds, target.text);
      const int64_t accepted_before = outcome.accepted;
      timed(target, input, outcome);
      if (outcome.accepted > accepted_before && pool.size() < 256) pool.push_back(std::move(input));
    }
    std::printf("%-20s %8lld %9lld %9lld %9lld %12lld\n", target.name.c_str(),
                static_cast<long long>(outcome.runs), static_cast<long long>(outcome.accepted),
                static_cast<long long>(outcome.refused), static_cast<long long>(outcome.findings),
                static_cast<long long>(replayed));
    std::fflush(stdout);
    total_findings += outcome.findings;
  }
  std::error_code ignored;
  fs::remove_all(scratch(), ignored);
  if (total_findings > 0) {
    std::printf(
        "%lld finding(s): inputs in %s; add each, once fixed, to "
        "tests/fuzz/regressions/<target>/\n",
        static_cast<long long>(total_findings), findings.c_str());
    return 1;
  }
  return 0;
}
