// The safetensors reader and writer, and Hugging Face BLOOM import/export:
// round trips of every dtype, each kind of bad file refused with a message
// that names the fault, the tiny BLOOM that tools/make-hf-bloom wrote in
// Hugging Face's sharded layout giving PyTorch's logits, and export then
// import restoring every weight bit for bit.
#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/files.hpp"
#include "grad_check.hpp"
#include "infer/convert.hpp"
#include "io/hf_bloom.hpp"
#include "io/safetensors.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"
#include "train/checkpoint.hpp"

using namespace turbine;
using testing::contains;
using testing::error_of;
using testing::golden;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A safetensors file from a header and a data section, as given.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

std::string bytes(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(i * 7 + 1);
  return s;
}

std::string open_error(const std::string& path) {
  return error_of([&] { io::SafetensorsFile f(path); });
}

Tensor ramp(const Shape& shape, float scale) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = scale * float((i * 37) % 101 - 50);
  return t;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(write_then_read_every_dtype) {
  testing::TempDir dir("st_roundtrip");
  const Tensor f = ramp({3, 5}, 0.25f);
  std::vector<std::pair<std::string, Tensor>> tensors = {{"a.f32", f},
                                                         {"b.bf16", f.to(DType::bf16)},
                                                         {"c.f16", f.to(DType::f16)},
                                                         {"d.i64", Tensor::zeros({4}, DType::i64)},
                                                         {"e.scalar", Tensor::full({}, 2.5f)},
                                                         {"f.empty", Tensor::empty({0, 3})}};
  io::write_safetensors(dir.file("x.safetensors"), tensors, {{"format", "pt"}});
  const io::SafetensorsFile file(dir.file("x.safetensors"));
  BOOST_TEST(file.data_offset() % 8 == 0u);
  BOOST_TEST(file.metadata().at("format") == "pt");
  BOOST_TEST(file.tensors().size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    const Tensor back = file.read(name);
    BOOST_TEST(bitwise_equal(back, t), name);
  }
  BOOST_TEST(file.find("b.bf16")->dtype == "BF16");
  BOOST_TEST(!fs::exists(dir.file("x.safetensors.tmp")));
}

BOOST_AUTO_TEST_CASE(bad_files_are_refused_naming_the_fault) {
  testing::TempDir dir("st_bad");
  const std::string p = dir.file("bad.safetensors");
  auto header = [](const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e,
                   const std::string& more = "") {
    return fmt::format(R"({{"w":{{"dtype":"{}","shape":{},"data_offsets":[{},{}]}}{}}})", dtype,
                       shape, b, e, more);
  };

  std::ofstream(p, std::ios::binary) << "abc";
  BOOST_TEST(contains(open_error(p), "too short"), open_error(p));

  {  // a header length past the end of the file
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = 1000;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "{}";
  }
  BOOST_TEST(contains(open_error(p), "runs past the end"), open_error(p));

  write_raw(p, "{not json", "");
  BOOST_TEST(contains(open_error(p), "not valid JSON"), open_error(p));
  write_raw(p, "[1,2]", "");
  BOOST_TEST(contains(open_error(p), "not a JSON object"), open_error(p));

  write_raw(p, header("F12", "[2]", 0, 8), bytes(8));
  BOOST_TEST(contains(open_error(p), "unknown dtype 'F12'"), open_error(p));

  write_raw(p, header("F32", "[2,3]", 0, 20), bytes(20));
  BOOST_TEST(contains(open_error(p), "needs 24 bytes"), open_error(p));

  write_raw(p, header("F32", "[2]", 0, 8), bytes(4));  // truncated data
  BOOST_TEST(contains(open_error(p), "outside the 4 bytes of data"), open_error(p));

  write_raw(p, header("F32", "[2]", 8, 4), bytes(8));
  BOOST_TEST(contains(open_error(p), "before it begins"), open_error(p));

  write_raw(p,
            header("F32", "[2]", 0, 8, R"(,"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})"),
            bytes(12));
  BOOST_TEST(contains(open_error(p), "overlap"), open_error(p));
  BOOST_TEST(contains(open_error(p), "'w' and 'v'"), open_error(p));

  write_raw(p, header("F32", "[2]", 4, 12), bytes(12));
  BOOST_TEST(contains(open_error(p), "belong to no tensor (a hole before 'w')"), open_error(p));

  write_raw(p, header("F32", "[2]", 0, 8), bytes(10));
  BOOST_TEST(contains(open_error(p), "last 2 bytes"), open_error(p));

  write_raw(p, header("F32", "[-2]", 0, 8), bytes(8));
  BOOST_TEST(contains(open_error(p), "non-negative integer"), open_error(p));

  write_raw(p, R"({"w":{"dtype":"F32","shape":[2]}})", bytes(8));
  BOOST_TEST(contains(open_error(p), "has no \"data_offsets\""), open_error(p));

  // A valid file whose tensor Turbine has no dtype for opens; reading it fails by name.
  write_raw(p, header("F64", "[1]", 0, 8), bytes(8));
  const io::SafetensorsFile f64(p);
  const std::string e = error_of([&] { f64.read("w"); });
  BOOST_TEST((contains(e, "tensor 'w'") && contains(e, "'F64'")), e);
  BOOST_TEST(contains(error_of([&] { f64.read("nope"); }), "no tensor 'nope'"));
}

BOOST_AUTO_TEST_CASE(sharded_folders_are_checked_against_their_index) {
  testing::TempDir dir("st_folder");
  io::write_safetensors(dir.file("s1.safetensors"), {{"a", ramp({2}, 1)}, {"b", ramp({3}, 1)}});
  io::write_safetensors(dir.file("s2.safetensors"), {{"c", ramp({4}, 1)}});
  auto index = [&](const Json& map) {
    std::ofstream(dir.file("model.safetensors.index.json")) << Json{{"weight_map", map}}.dump();
  };
  auto folder_error = [&] { return error_of([&] { io::SafetensorsFolder f(dir.path.string()); }); };

  BOOST_TEST(contains(folder_error(), "neither model.safetensors nor"), folder_error());
  index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}});
  const io::SafetensorsFolder ok(dir.path.string());
  BOOST_TEST(ok.names() == (std::vector<std::string>{"a", "b", "c"}));
  BOOST_TEST(bitwise_equal(ok.read("c"), ramp({4}, 1)));

  index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s3.safetensors"}});
  BOOST_TEST((contains(folder_error(), "shard") && contains(folder_error(), "s3.safetensors")),
             folder_error());
  index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s1.safetensors"}});
  BOOST_TEST(contains(folder_error(), "puts 'c' in s1.safetensors"), folder_error());
  index({{"a", "s1.safetensors"}, {"c", "s2.safetensors"}});
  BOOST_TEST(contains(folder_error(), "holds 'b', which the index does not list"), folder_error());
  index({{"a", "../s1.safetensors"}});
  BOOST_TEST(contains(folder_error(), "not a plain file name"), folder_error());
}

// The Hugging Face folder tools/make-hf-bloom wrote (sharded, "transformer."
// names, tied head left out, F32/F16/BF16 tensors) gives PyTorch's logits.
BOOST_AUTO_TEST_CASE(hugging_face_bloom_matches_pytorch) {
  const infer::CheckpointModel m = infer::read_model(golden("hf_bloom_tiny"), Device::cpu());
  BOOST_TEST(m.model.config().hidden_size == 48);
  BOOST_TEST(m.model.config().n_head == 6);
  BOOST_TEST(m.model.config().vocab_size == 320);
  BOOST_TEST(*m.tokenizer.eos_id() == 2);
  const H5File expected(golden("hf_bloom_tiny_logits.h5"), H5File::Mode::read);
  const Tensor logits = m.model.logits(expected.read("input_ids"));
  const double err =
      testing::norm_error(logits.to_vector<float>(), expected.read("logits").to_vector<float>());
  BOOST_TEST_MESSAGE("logits normalized error " << err);
  BOOST_TEST(err < 1e-5);
}

BOOST_AUTO_TEST_CASE(export_then_import_round_trips_bit_for_bit) {
  testing::TempDir dir("st_export");
  const std::string checkpoint = dir.file("ckpt");
  infer::import_hf(golden("hf_bloom_tiny"), checkpoint);
  BOOST_TEST(contains(error_of([&] { infer::import_hf(golden("hf_bloom_tiny"), checkpoint); }),
                      "exists already"));
  const infer::CheckpointModel imported = infer::read_model(checkpoint, Device::cpu());

  infer::export_hf(checkpoint, dir.file("hf32"), DType::f32);
  const io::SafetensorsFile file(dir.file("hf32/model.safetensors"));
  BOOST_TEST(file.metadata().at("format") == "pt");  // transformers refuses files without it
  BOOST_TEST(file.find("transformer.word_embeddings.weight") != nullptr);
  BOOST_TEST(file.find("lm_head.weight") == nullptr);  // tied, as save_pretrained leaves it
  const infer::CheckpointModel back = infer::read_model(dir.file("hf32"), Device::cpu());
  BOOST_TEST(back.tokenizer.identity() == imported.tokenizer.identity());
  BOOST_TEST(back.model.config().n_layer == imported.model.config().n_layer);
  const auto& a = imported.model.parameters();
  const auto& b = back.model.parameters();
  BOOST_REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i)
    BOOST_TEST(bitwise_equal(a[i].tensor, b[i].tensor), a[i].name);

  // bf16 export holds the weights rounded once; importing it again is exact.
  infer::export_hf(checkpoint, dir.file("hf16"), DType::bf16);
  BOOST_TEST(io::SafetensorsFile(dir.file("hf16/model.safetensors"))
                 .find("transformer.h.0.mlp.dense_h_to_4h.weight")
                 ->dtype == "BF16");
  const infer::CheckpointModel half = infer::read_model(dir.file("hf16"), Device::cpu());
  for (size_t i = 0; i < a.size(); ++i)
    BOOST_TEST(bitwise_equal(half.model.parameters()[i].tensor,
                             a[i].tensor.to(DType::bf16).to(DType::f32)),
               a[i].name);
  BOOST_TEST(contains(error_of([&] { infer::export_hf(checkpoint, dir.file("hf32"), DType::f32); }),
                      "exists already"));
}

BOOST_AUTO_TEST_CASE(folders_are_written_whole_or_not_at_all) {
  testing::TempDir dir("st_atomic");
  const std::string out = dir.file("out") + "/";  // a trailing slash names the same folder
  const std::string e = error_of([&] {
    write_folder_atomically(out, [](const fs::path& tmp) {
      std::ofstream(tmp / "half") << "x";
      TURBINE_FAIL("disk full");
    });
  });
  BOOST_TEST(contains(e, "disk full"), e);
  BOOST_TEST(fs::is_empty(dir.path));  // neither the folder nor its temporary twin
  write_folder_atomically(out, [](const fs::path& tmp) { std::ofstream(tmp / "whole") << "x"; });
  BOOST_TEST(fs::exists(dir.path / "out" / "whole"));
  BOOST_TEST(contains(error_of([&] { write_folder_atomically(out, [](const fs::path&) {}); }),
                      "exists already"));
}

// Weights that do not fit the config are refused, naming the tensors.
BOOST_AUTO_TEST_CASE(missing_unexpected_and_untied_tensors_are_named) {
  testing::TempDir dir("st_names");
  const infer::CheckpointModel m = infer::read_model(golden("hf_bloom_tiny"), Device::cpu());
  const fs::path hf = dir.path / "hf";
  auto write_folder =
      [&](const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
        fs::remove_all(hf);
        fs::create_directories(hf);
        fs::copy_file(golden("hf_bloom_tiny/config.json"), hf / "config.json");
        fs::copy_file(golden("hf_bloom_tiny/tokenizer.json"), hf / "tokenizer.json");
        std::vector<std::pair<std::string, Tensor>> tensors;
        for (const nn::Parameter& p : m.model.parameters())
          tensors.emplace_back("transformer." + p.name, p.tensor);
        edit(tensors);
        io::write_safetensors((hf / "model.safetensors").string(), tensors);
      };
  auto read_error = [&] {
    return error_of([&] { infer::read_model(hf.string(), Device::cpu()); });
  };
  auto embeddings = [&] { return m.model.parameters()[0].tensor; };
  BOOST_REQUIRE(m.model.parameters()[0].name == "word_embeddings.weight");

  write_folder([](auto& t) { t.erase(t.begin() + 3); });
  BOOST_TEST(contains(read_error(), "lack 1 tensor(s)"), read_error());
  BOOST_TEST(contains(read_error(), m.model.parameters()[3].name), read_error());

  write_folder([](auto& t) { t.emplace_back("transformer.h.7.extra.weight", Tensor::zeros({2})); });
  BOOST_TEST(contains(read_error(), "transformer.h.7.extra.weight"), read_error());

  write_folder([&](auto& t) { t.emplace_back("lm_head.weight", embeddings()); });
  BOOST_TEST(read_error() == "(no error)");  // tied: equal to the embeddings
  write_folder(
      [&](auto& t) { t.emplace_back("lm_head.weight", ramp(embeddings().shape(), 1e-3f)); });
  BOOST_TEST(contains(read_error(), "lm_head.weight differs from the word embeddings"),
             read_error());

  write_folder([](auto& t) { t[1].second = Tensor::zeros({7}); });
  BOOST_TEST(contains(read_error(), "has shape [7], but config.json makes it"), read_error());

  write_folder([](auto& t) { t[1].second = Tensor::zeros(t[1].second.shape(), DType::i32); });
  BOOST_TEST(contains(read_error(), "is I32"), read_error());
}

BOOST_AUTO_TEST_CASE(config_json_fields_aliases_and_refusals) {
  testing::TempDir dir("st_config");
  auto config = [&](const Json& doc) {
    std::ofstream(dir.file("config.json")) << doc.dump();
    return dir.file("config.json");
  };
  const nn::BloomConfig c = io::bloom_config_from_hf(config({{"model_type", "bloom"},
                                                             {"n_embed", 64},
                                                             {"num_hidden_layers", 3},
                                                             {"num_attention_heads", 4},
                                                             {"vocab_size", 100},
                                                             {"layer_norm_epsilon", 1e-6}}));
  BOOST_TEST(c.hidden_size == 64);
  BOOST_TEST(c.n_layer == 3);
  BOOST_TEST(c.n_head == 4);
  BOOST_TEST(c.layer_norm_epsilon == 1e-6f);
  auto error = [&](const Json& doc) {
    const std::string path = config(doc);
    return error_of([&] { io::bloom_config_from_hf(path); });
  };
  BOOST_TEST(contains(error({{"model_type", "gpt2"}}), "model_type 'gpt2' is not BLOOM"));
  BOOST_TEST(contains(error({{"apply_residual_connection_post_layernorm", true}}),
                      "apply_residual_connection_post_layernorm"));
  BOOST_TEST(contains(error({{"hidden_size", 50}, {"n_head", 8}}), "not divisible"));
  BOOST_TEST(contains(error({{"n_layer", "two"}}), "n_layer must be an integer"));
  std::ofstream(dir.file("config.json")) << "{oops";
  BOOST_TEST(contains(error_of([&] { io::bloom_config_from_hf(dir.file("config.json")); }),
                      "not valid JSON"));
}
