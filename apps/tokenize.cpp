// tokenize: encodes stdin into token ids, one line of space-separated ids per
// input line (the newline itself is not encoded), or with --decode turns
// lines of ids back into text.
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace {

std::vector<int32_t> parse_ids(const std::string& line, int64_t line_number) {
  std::vector<int32_t> ids;
  const char* p = line.data();
  const char* end = p + line.size();
  while (true) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) ++p;
    if (p == end) break;
    int32_t id = 0;
    const auto [next, error] = std::from_chars(p, end, id);
    TURBINE_CHECK(
        error == std::errc() && (next == end || *next == ' ' || *next == '\t' || *next == '\r'),
        "stdin line {}: '{}' is not a token id; --decode reads lines of integers "
        "separated by spaces",
        line_number, line.substr(p - line.data(), 20));
    ids.push_back(id);
    p = next;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Encode text from stdin into token ids, one line of ids per line of text (the newline "
      "itself is not encoded); with --decode, turn lines of ids back into text."};
  std::string tokenizer_path;
  bool decode = false;
  app.add_option("--tokenizer", tokenizer_path,
                 "a Hugging Face tokenizer.json, or a directory holding tokenizer.json or GPT-2's "
                 "encoder.json + vocab.bpe (tools/fetch-gpt2 prints one)")
      ->required();
  app.add_flag("--decode", decode, "read lines of space-separated token ids and print the text");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto tokenizer = turbine::data::Tokenizer::load(tokenizer_path);
    std::ios::sync_with_stdio(false);
    std::string line;
    std::string out;
    int64_t line_number = 0;
    while (std::getline(std::cin, line)) {
      ++line_number;
      out.clear();
      if (decode) {
        out = tokenizer.decode(parse_ids(line, line_number));
      } else {
        for (const int32_t id : tokenizer.encode(line)) {
          if (!out.empty()) out.push_back(' ');
          out += std::to_string(id);
        }
      }
      out.push_back('\n');
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    TURBINE_CHECK(std::fflush(stdout) == 0, "writing to stdout failed");
  } catch (const turbine::Error& e) {
    std::fprintf(stderr, "tokenize: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
