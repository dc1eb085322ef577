// prepare-data: tokenizes text files, folders and JSON-lines files into a
// token data set (format in lib/data/token_dataset.hpp), with a given
// tokenizer or one it trains on the training documents; or, with --images,
// converts an image corpus's idx files into an image data set (format in
// lib/data/images.hpp).

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
#include "data/images.hpp"
#include "data/token_dataset.hpp"
#include "data/tokenizer.hpp"

namespace fs = std::filesystem;
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

// What was written: the splits' counts and shapes, each class's images,
// and the normalization statistics.
void print_image_summary(const std::string& output, double seconds, const std::string& source,
                         const ImageSet& train, const ImageSet& test, const ChannelStats& stats) {
  std::printf("prepare-data: wrote %s (%s) in %.1f s\n", output.c_str(),
              megabytes(static_cast<int64_t>(fs::file_size(output))).c_str(), seconds);
  std::printf("  source: %s\n", source.c_str());
  for (const auto* set : {&train, &test}) {
    std::printf("  %s: %lld images of %lldx%lldx%lld (channels x height x width)\n",
                set == &train ? "train" : "test", (long long)set->count, (long long)set->channels,
                (long long)set->height, (long long)set->width);
  }
  const std::vector<int64_t> train_counts = class_histogram(train),
                             test_counts = class_histogram(test);
  std::printf("  classes (images in train / test):\n");
  for (size_t k = 0; k < train_counts.size(); ++k) {
    std::printf("    %2zu %-14s %7lld / %lld\n", k, train.class_names[k].c_str(),
                (long long)train_counts[k], (long long)test_counts[k]);
  }
  for (size_t c = 0; c < stats.mean.size(); ++c) {
    std::printf("  channel %zu: pixel mean %.4f, std %.4f (train split, 0..1 scale)\n", c,
                stats.mean[c], stats.std[c]);
  }
}

// What a text run was asked for.
struct TokenRun {
  std::string output, tokenizer_file, jsonl_key = "text", documents = "paragraphs";
  int32_t train_vocab = 0;  // > 0: train a tokenizer of this vocabulary size
  bool force = false;
  double valid_fraction = 0.01;
  uint64_t seed = 1;
  std::vector<std::string> inputs;
};

// INPUTs to a token data set, with a loaded or a trained tokenizer.
void prepare_tokens(const TokenRun& run) {
  Timer total_timer;
  const bool train = run.train_vocab > 0;
  const std::string tokenizer_output = train ? tokenizer_path_for(run.output) : "";
  refuse_to_overwrite(run.output, run.force);
  if (train) refuse_to_overwrite(tokenizer_output, run.force);
  Inputs inputs;
  inputs.files = list_files(run.inputs, {run.output, run.output + ".tmp", tokenizer_output});
  for (const fs::path& file : inputs.files) {
    inputs.total_bytes += static_cast<int64_t>(fs::file_size(file));
  }
  inputs.mode = run.documents == "lines"   ? DocumentMode::lines
                : run.documents == "files" ? DocumentMode::files
                                           : DocumentMode::paragraphs;
  inputs.jsonl_key = run.jsonl_key;
  std::fprintf(stderr, "prepare-data: %zu input file(s), %s\n", inputs.files.size(),
               megabytes(inputs.total_bytes).c_str());

  const Tokenizer tokenizer =
      train ? train_tokenizer(inputs, run.train_vocab, run.seed, run.valid_fraction)
            : Tokenizer::load(run.tokenizer_file);
  if (const fs::path parent = fs::path(run.output).parent_path(); !parent.empty()) {
    fs::create_directories(parent);
  }
  TokenDatasetWriter writer(run.output, tokenizer.vocab_size(), tokenizer.to_json(),
                            tokenizer.identity(), run.force);
  const EncodeTotals totals =
      encode_documents(inputs, tokenizer, writer, run.seed, run.valid_fraction);
  if (train) tokenizer.save(tokenizer_output);
  print_summary(run.output, total_timer.seconds(), totals, tokenizer, tokenizer_output,
                run.valid_fraction);
}

// --images NAME: the corpus's idx files in `dir` to an image data set.
void prepare_images(const std::string& name, const std::string& dir, const std::string& output,
                    bool force) {
  Timer timer;
  refuse_to_overwrite(output, force);
  TURBINE_CHECK(name == "fashion-mnist", "--images {}: the image corpora are: fashion-mnist", name);
  const IdxSource source = fashion_mnist_source(dir);
  std::fprintf(stderr, "prepare-data: reading %s from %s\n", source.name.c_str(), dir.c_str());
  const ImageSet train =
      read_idx_split(source.train_images, source.train_labels, source.class_names);
  const ImageSet test = read_idx_split(source.test_images, source.test_labels, source.class_names);
  if (const fs::path parent = fs::path(output).parent_path(); !parent.empty()) {
    fs::create_directories(parent);
  }
  const std::string description = fmt::format("{} ({})", source.name, dir);
  const ChannelStats stats = write_image_dataset(output, description, train, test, force);
  print_image_summary(output, timer.seconds(), description, train, test, stats);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Prepare a Turbine data set (HDF5).\n"
      "Text: tokenize INPUTs into a token data set (lib/data/token_dataset.hpp). INPUTs are\n"
      "text files, folders (all files below them, in sorted order, hidden ones skipped) and\n"
      "JSON-lines files (*.jsonl, *.ndjson: one document per record, its text under\n"
      "--jsonl-key). The tokenizer's end-of-text token follows each document.\n"
      "Images: --images fashion-mnist converts Fashion-MNIST's idx files (Debian's\n"
      "dataset-fashion-mnist) into an image data set (lib/data/images.hpp), e.g.\n"
      "  tools/prepare-data --images fashion-mnist -o data/fashion-mnist.h5"};
  TokenRun run;
  std::string images, images_dir = kFashionMnistDir;
  app.add_option("--output,-o", run.output, "the data set to write (.h5)")->required();
  app.add_flag("--force", run.force, "replace the output (and tokenizer file) if they exist");
  auto* load = app.add_option("--tokenizer", run.tokenizer_file,
                              "a tokenizer.json, or a folder with tokenizer.json or GPT-2's "
                              "encoder.json + vocab.bpe");
  auto* train = app.add_option("--train-tokenizer", run.train_vocab,
                               "train a byte-level BPE tokenizer of this vocabulary size on the "
                               "training documents; saved as <output>.tokenizer.json")
                    ->check(CLI::Range(257, 1 << 24));
  load->excludes(train);
  app.add_option("--jsonl-key", run.jsonl_key, "the key of a JSON-lines record's text")
      ->capture_default_str();
  app.add_option("--valid-fraction", run.valid_fraction,
                 "the fraction of documents (whole ones) held out for validation")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", run.seed, "picks the validation documents")->capture_default_str();
  app.add_option("--documents", run.documents,
                 "what a document is in a text file: paragraphs (blank-line separated), lines, "
                 "or files")
      ->check(CLI::IsMember({"paragraphs", "lines", "files"}))
      ->capture_default_str();
  auto* inputs = app.add_option("inputs", run.inputs, "text files, folders, JSON-lines files");
  auto* image_corpus =
      app.add_option("--images", images, "write an image data set of this corpus instead of tokens")
          ->check(CLI::IsMember({"fashion-mnist"}))
          ->excludes(load, train, inputs)
          ->group("Images");
  app.add_option("--images-dir", images_dir, "the folder of the corpus's four idx files")
      ->needs(image_corpus)
      ->capture_default_str()
      ->group("Images");
  CLI11_PARSE(app, argc, argv);
  if (!*image_corpus && run.inputs.empty()) {
    std::fprintf(stderr, "prepare-data: give INPUTs to tokenize, or --images CORPUS\n");
    return 2;
  }
  if (!*image_corpus && !*load && !*train) {
    std::fprintf(stderr, "prepare-data: give --tokenizer PATH or --train-tokenizer VOCAB_SIZE\n");
    return 2;
  }

  try {
    if (*image_corpus) {
      prepare_images(images, images_dir, run.output, run.force);
    } else {
      prepare_tokens(run);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prepare-data: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
