// prepare-data: tokenizes text files, folders and JSON-lines files into a
// token data set (format in lib/data/token_dataset.hpp), with a given
// tokenizer or one it trains on the training documents.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/timer.hpp"
#include "data/token_dataset.hpp"
#include "data/tokenizer.hpp"

namespace fs = std::filesystem;
using turbine::Error;
using turbine::Timer;
using namespace turbine::data;

namespace {

enum class DocumentMode { paragraphs, lines, files };

struct Inputs {
  std::vector<fs::path> files;  // in the order documents are numbered
  int64_t total_bytes = 0;
  DocumentMode mode = DocumentMode::paragraphs;
  std::string jsonl_key = "text";
};

bool is_jsonl(const fs::path& file) {
  return file.extension() == ".jsonl" || file.extension() == ".ndjson";
}

bool is_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
}

// Each INPUT as given; a folder's files recursively, sorted by path, without
// hidden files and folders or the files this run writes.
std::vector<fs::path> list_files(const std::vector<std::string>& inputs,
                                 const std::vector<fs::path>& outputs) {
  const auto is_output = [&](const fs::path& p) {
    std::error_code error;
    for (const fs::path& output : outputs) {
      if (fs::exists(output, error) && fs::equivalent(p, output, error)) return true;
    }
    return false;
  };
  std::vector<fs::path> files;
  for (const std::string& input : inputs) {
    TURBINE_CHECK(fs::exists(input), "input '{}' not found", input);
    if (!fs::is_directory(input)) {
      files.emplace_back(input);
      continue;
    }
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(input);
         it != fs::recursive_directory_iterator(); ++it) {
      const bool hidden = it->path().filename().string().starts_with(".");
      if (hidden && it->is_directory()) it.disable_recursion_pending();
      if (!hidden && it->is_regular_file() && !is_output(it->path())) found.push_back(it->path());
    }
    TURBINE_CHECK(!found.empty(), "folder '{}' holds no files", input);
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

// Calls on_document(text, bytes) for each document of the inputs in order,
// with the bytes of input read so far. Documents that are blank are skipped.
void for_each_document(const Inputs& inputs,
                       const std::function<void(std::string&, int64_t)>& on_document) {
  int64_t bytes_before = 0;
  for (const fs::path& file : inputs.files) {
    std::ifstream in(file, std::ios::binary);
    TURBINE_CHECK(in, "cannot read '{}': {}", file.string(), std::strerror(errno));
    int64_t bytes = bytes_before;
    std::string document;
    const auto emit = [&] {
      if (!is_blank(document)) on_document(document, bytes);
      document.clear();
    };
    if (inputs.mode == DocumentMode::files && !is_jsonl(file)) {
      document.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      bytes += static_cast<int64_t>(document.size());
      emit();
    }
    std::string line;
    for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
      bytes += static_cast<int64_t>(line.size()) + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (is_jsonl(file)) {
        if (is_blank(line)) continue;
        const auto where = fmt::format("{}:{}", file.string(), line_number);
        const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
        TURBINE_CHECK(!record.is_discarded() && record.is_object(),
                      "{}: not a JSON object (JSON-lines files hold one object a line)", where);
        const auto value = record.find(inputs.jsonl_key);
        TURBINE_CHECK(value != record.end() && value->is_string(),
                      "{}: no string \"{}\" in this record; name the text's key with --jsonl-key",
                      where, inputs.jsonl_key);
        document = value->get<std::string>();
        emit();
      } else if (inputs.mode == DocumentMode::lines) {
        document = std::move(line);
        emit();
      } else if (is_blank(line)) {
        emit();  // a blank line ends a paragraph
      } else {
        if (!document.empty()) document += '\n';
        document += line;
      }
    }
    TURBINE_CHECK(!in.bad(), "reading '{}' failed: {}", file.string(), std::strerror(errno));
    bytes_before += static_cast<int64_t>(fs::file_size(file));
    bytes = bytes_before;
    emit();
  }
}

// The status line on stderr: redrawn on a terminal, else a plain line
// every 10 seconds and the last one. Text is only built when shown.
class Status {
 public:
  void update(const std::function<std::string()>& text, bool last = false) {
    const bool due = since_.seconds() >= 10.0;
    if (!line_.redraws() && !due && !last) return;
    if (due) since_.reset();
    line_.show(text(), due, last);
  }

 private:
  turbine::ProgressLine line_{stderr, true, true};
  Timer since_;
};

std::string megabytes(int64_t bytes) {
  return fmt::format("{:.1f} MB", bytes / 1e6);
}

std::string bytes_progress(const char* stage, int64_t done, int64_t total, const Timer& timer) {
  return fmt::format("prepare-data: {} {} / {} ({:.0f}%), {:.1f} MB/s", stage, megabytes(done),
                     megabytes(total), 100.0 * done / std::max<int64_t>(total, 1),
                     done / 1e6 / std::max(timer.seconds(), 1e-9));
}

// `output` without ".h5", then ".tokenizer.json".
std::string tokenizer_path_for(const std::string& output) {
  std::string stem = output;
  if (stem.ends_with(".h5")) stem.resize(stem.size() - 3);
  return stem + ".tokenizer.json";
}

Tokenizer train_tokenizer(const Inputs& inputs, int32_t vocab_size, uint64_t seed,
                          double valid_fraction) {
  Status progress;
  Timer timer;
  std::vector<std::string> documents;
  int64_t index = 0;
  for_each_document(inputs, [&](std::string& text, int64_t bytes) {
    if (!is_valid_document(seed, index++, valid_fraction)) documents.push_back(std::move(text));
    progress.update([&] { return bytes_progress("reading", bytes, inputs.total_bytes, timer); });
  });
  TURBINE_CHECK(!documents.empty(), "no training documents in the inputs");
  timer.reset();
  Tokenizer::TrainOptions options;
  options.vocab_size = vocab_size;
  options.progress = [&](int64_t learned, int64_t wanted) {
    progress.update([&] {
      return fmt::format(
          "prepare-data: training a tokenizer on {} documents: {} / {} merges, {:.0f} s",
          documents.size(), learned, wanted, timer.seconds());
    });
  };
  Tokenizer tokenizer = Tokenizer::train(documents, options);
  progress.update(
      [&] {
        return fmt::format("prepare-data: trained a {}-token tokenizer on {} documents in {:.1f} s",
                           tokenizer.vocab_size(), documents.size(), timer.seconds());
      },
      true);
  return tokenizer;
}

struct EncodeTotals {
  TokenDatasetStats stats;
  int64_t text_bytes = 0;  // of the documents, as encoded
  int64_t eos_tokens = 0;
};

// Encodes every document (a batch at a time, in parallel; results are
// written in document order, so the output does not depend on threads).
EncodeTotals encode_documents(const Inputs& inputs, const Tokenizer& tokenizer,
                              TokenDatasetWriter& writer, uint64_t seed, double valid_fraction) {
  constexpr size_t kBatchBytes = 4 << 20;
  const std::optional<int32_t> eos = tokenizer.eos_id();
  EncodeTotals totals;
  Status progress;
  Timer timer;
  std::vector<std::string> batch;
  std::vector<std::vector<int32_t>> encoded;
  size_t batch_bytes = 0;
  int64_t index = 0, bytes_done = 0;
  const auto flush = [&](bool last) {
    encoded.resize(batch.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < batch.size(); ++i) {
      encoded[i] = tokenizer.encode(batch[i]);
      if (eos) encoded[i].push_back(*eos);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      writer.add_document(encoded[i], is_valid_document(seed, index++, valid_fraction));
    }
    totals.eos_tokens += eos ? static_cast<int64_t>(batch.size()) : 0;
    batch.clear();
    batch_bytes = 0;
    progress.update(
        [&] { return bytes_progress("encoding", bytes_done, inputs.total_bytes, timer); }, last);
  };
  for_each_document(inputs, [&](std::string& text, int64_t bytes) {
    batch_bytes += text.size();
    totals.text_bytes += static_cast<int64_t>(text.size());
    batch.push_back(std::move(text));
    bytes_done = bytes;
    if (batch_bytes >= kBatchBytes) flush(false);
  });
  bytes_done = inputs.total_bytes;
  flush(true);
  totals.stats = writer.finish();
  return totals;
}

// What was written: the data set, its splits, the text's bytes per token,
// the tokenizer (tokenizer_output: where a trained one was saved, or "");
// a warning when the valid split came out empty.
void print_summary(const std::string& output, double seconds, const EncodeTotals& totals,
                   const Tokenizer& tokenizer, const std::string& tokenizer_output,
                   double valid_fraction) {
  const TokenDatasetStats& s = totals.stats;
  const int64_t tokens = s.train.tokens + s.valid.tokens;
  const int64_t text_tokens = tokens - totals.eos_tokens;
  std::printf("prepare-data: wrote %s (%s) in %.1f s\n", output.c_str(),
              megabytes(static_cast<int64_t>(fs::file_size(output))).c_str(), seconds);
  std::printf("  train: %lld tokens in %lld documents\n", (long long)s.train.tokens,
              (long long)s.train.docs);
  std::printf("  valid: %lld tokens in %lld documents\n", (long long)s.valid.tokens,
              (long long)s.valid.docs);
  std::printf("  text: %s, %.2f bytes per token (end-of-text tokens not counted)\n",
              megabytes(totals.text_bytes).c_str(),
              static_cast<double>(totals.text_bytes) / std::max<int64_t>(text_tokens, 1));
  std::printf("  tokenizer: vocab %d, %s%s%s\n", tokenizer.vocab_size(),
              tokenizer.identity().c_str(), tokenizer_output.empty() ? "" : ", saved to ",
              tokenizer_output.c_str());
  if (valid_fraction > 0 && s.valid.docs == 0) {
    std::fprintf(stderr,
                 "prepare-data: warning: the valid split is empty (%lld documents at "
                 "--valid-fraction %g); raise it, or cut smaller documents with --documents\n",
                 (long long)s.train.docs, valid_fraction);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Tokenize text into a Turbine token data set (HDF5; see lib/data/token_dataset.hpp).\n"
      "INPUTs are text files, folders (all files below them, in sorted order, hidden ones\n"
      "skipped) and JSON-lines files (*.jsonl, *.ndjson: one document per record, its text\n"
      "under --jsonl-key). The tokenizer's end-of-text token follows each document."};
  std::string output, tokenizer_file, jsonl_key = "text", documents = "paragraphs";
  int32_t train_vocab = 0;
  bool force = false;
  double valid_fraction = 0.01;
  uint64_t seed = 1;
  std::vector<std::string> input_args;
  app.add_option("--output,-o", output, "the data set to write (.h5)")->required();
  app.add_flag("--force", force, "replace the output (and tokenizer file) if they exist");
  auto* load = app.add_option("--tokenizer", tokenizer_file,
                              "a tokenizer.json, or a folder with tokenizer.json or GPT-2's "
                              "encoder.json + vocab.bpe");
  auto* train = app.add_option("--train-tokenizer", train_vocab,
                               "train a byte-level BPE tokenizer of this vocabulary size on the "
                               "training documents; saved as <output>.tokenizer.json")
                    ->check(CLI::Range(257, 1 << 24));
  load->excludes(train);
  app.add_option("--jsonl-key", jsonl_key, "the key of a JSON-lines record's text")
      ->capture_default_str();
  app.add_option("--valid-fraction", valid_fraction,
                 "the fraction of documents (whole ones) held out for validation")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", seed, "picks the validation documents")->capture_default_str();
  app.add_option("--documents", documents,
                 "what a document is in a text file: paragraphs (blank-line separated), lines, "
                 "or files")
      ->check(CLI::IsMember({"paragraphs", "lines", "files"}))
      ->capture_default_str();
  app.add_option("inputs", input_args, "text files, folders, JSON-lines files")->required();
  CLI11_PARSE(app, argc, argv);
  if (!*load && !*train) {
    std::fprintf(stderr, "prepare-data: give --tokenizer PATH or --train-tokenizer VOCAB_SIZE\n");
    return 2;
  }

  try {
    Timer total_timer;
    const std::string tokenizer_output = *train ? tokenizer_path_for(output) : "";
    refuse_to_overwrite(output, force);
    if (*train) refuse_to_overwrite(tokenizer_output, force);
    Inputs inputs;
    inputs.files = list_files(input_args, {output, output + ".tmp", tokenizer_output});
    for (const fs::path& file : inputs.files) {
      inputs.total_bytes += static_cast<int64_t>(fs::file_size(file));
    }
    inputs.mode = documents == "lines"   ? DocumentMode::lines
                  : documents == "files" ? DocumentMode::files
                                         : DocumentMode::paragraphs;
    inputs.jsonl_key = jsonl_key;
    std::fprintf(stderr, "prepare-data: %zu input file(s), %s\n", inputs.files.size(),
                 megabytes(inputs.total_bytes).c_str());

    const Tokenizer tokenizer = *train ? train_tokenizer(inputs, train_vocab, seed, valid_fraction)
                                       : Tokenizer::load(tokenizer_file);
    if (const fs::path parent = fs::path(output).parent_path(); !parent.empty()) {
      fs::create_directories(parent);
    }
    TokenDatasetWriter writer(output, tokenizer.vocab_size(), tokenizer.to_json(),
                              tokenizer.identity(), force);
    const EncodeTotals totals = encode_documents(inputs, tokenizer, writer, seed, valid_fraction);
    if (*train) tokenizer.save(tokenizer_output);

    print_summary(output, total_timer.seconds(), totals, tokenizer, tokenizer_output,
                  valid_fraction);
  } catch (const Error& e) {
    std::fprintf(stderr, "prepare-data: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prepare-data: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
