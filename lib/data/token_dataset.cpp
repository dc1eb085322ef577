// Token data sets in HDF5: the streaming writer and the range reader.
#include "data/token_dataset.hpp"

#include <filesystem>
#include <limits>
#include <set>
#include <system_error>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "tensor/hdf5.hpp"

namespace turbine::data {

namespace {

constexpr const char* kRecreate = "re-create it with tools/prepare-data";
// Tokens buffered per split before a write: a whole number of chunks.
constexpr int64_t kFlushTokens = 32 * kTokenChunk;
// The Philox stream that decides the valid split ("valid" in ASCII).
constexpr uint64_t kValidSplitStream = 0x76616c6964ULL;

std::string dataset_name(Split split, const char* member) {
  return std::string(split_name(split)) + "/" + member;
}

}  // namespace

const char* split_name(Split split) {
  return split == Split::train ? "train" : "valid";
}

void refuse_to_overwrite(const std::string& path, bool force) {
  TURBINE_CHECK(force || !std::filesystem::exists(path),
                "'{}' exists already: pass --force to replace it, or choose another output", path);
}

bool is_valid_document(uint64_t seed, int64_t document_index, double valid_fraction) {
  TURBINE_CHECK(valid_fraction >= 0 && valid_fraction <= 1,
                "the valid fraction must be in [0, 1], got {}", valid_fraction);
  return philox_uniform(seed, kValidSplitStream, static_cast<uint64_t>(document_index), 0) <
         valid_fraction;
}

// ---------------------------------------------------------------- writer

TokenDatasetWriter::TokenDatasetWriter(const std::string& path, int64_t vocab_size,
                                       const std::string& tokenizer_json,
                                       const std::string& tokenizer_identity, bool force)
    : path_(path), vocab_size_(vocab_size) {
  refuse_to_overwrite(path, force);
  TURBINE_CHECK(vocab_size > 0 && vocab_size <= std::numeric_limits<int32_t>::max(),
                "{}: vocab_size must be in [1, 2^31), got {}", path, vocab_size);
  try {
    file_ = std::make_unique<H5File>(temporary_path(), H5File::Mode::create);
    file_->set_attribute("format", std::string(kTokenFormat));
    file_->set_attribute("version", kTokenFormatVersion);
    file_->set_attribute("vocab_size", vocab_size);
    file_->set_attribute("tokenizer_identity", tokenizer_identity);
    file_->write_string("tokenizer", tokenizer_json);
    const DType stored = vocab_size <= 65536 ? DType::u16 : DType::i32;
    for (Split split : {Split::train, Split::valid}) {
      file_->create_extendible(dataset_name(split, "tokens"), stored, kTokenChunk);
    }
  } catch (...) {
    file_.reset();
    std::error_code ignored;
    std::filesystem::remove(temporary_path(), ignored);
    throw;
  }
}

TokenDatasetWriter::~TokenDatasetWriter() {
  if (finished_) return;
  file_.reset();
  std::error_code ignored;
  std::filesystem::remove(temporary_path(), ignored);
}

void TokenDatasetWriter::add_document(std::span<const int32_t> tokens, bool valid) {
  TURBINE_CHECK(!finished_, "{}: add_document after finish", path_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    TURBINE_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size_,
                  "{}: token {} of document {} is {}, outside the vocabulary [0, {})", path_, i,
                  train_.doc_offsets.size() + valid_.doc_offsets.size() - 2, tokens[i],
                  vocab_size_);
  }
  const Split split = valid ? Split::valid : Split::train;
  SplitBuffer& b = buffer(split);
  b.pending.insert(b.pending.end(), tokens.begin(), tokens.end());
  b.doc_ids.push_back(int64_t(train_.doc_ids.size() + valid_.doc_ids.size()));
  b.doc_offsets.push_back(b.doc_offsets.back() + static_cast<int64_t>(tokens.size()));
  if (static_cast<int64_t>(b.pending.size()) >= kFlushTokens) flush(split);
}

void TokenDatasetWriter::flush(Split split) {
  SplitBuffer& b = buffer(split);
  file_->append(dataset_name(split, "tokens"), DType::i32, b.pending.data(),
                static_cast<int64_t>(b.pending.size()));
  b.pending.clear();
}

TokenDatasetStats TokenDatasetWriter::finish() {
  TURBINE_CHECK(!finished_, "{}: finish called twice", path_);
  TokenDatasetStats stats;
  for (Split split : {Split::train, Split::valid}) {
    flush(split);
    const SplitBuffer& b = buffer(split);
    const auto n = static_cast<int64_t>(b.doc_offsets.size());
    file_->write(dataset_name(split, "doc_offsets"),
                 Tensor::from_vector<int64_t>({n}, b.doc_offsets));
    if (n > 1)
      file_->write(dataset_name(split, "doc_ids"),
                   Tensor::from_vector<int64_t>({n - 1}, b.doc_ids));
    (split == Split::train ? stats.train : stats.valid) = {b.doc_offsets.back(), n - 1};
  }
  file_->close();
  std::error_code error;
  std::filesystem::rename(temporary_path(), path_, error);
  TURBINE_CHECK(!error, "cannot rename '{}' to '{}': {}", temporary_path(), path_, error.message());
  finished_ = true;
  return stats;
}

// ---------------------------------------------------------------- reader

TokenDataset::~TokenDataset() = default;
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;

std::unique_ptr<H5File> open_data_file(const std::string& path, const char* what,
                                       const char* format, int64_t version) {
  TURBINE_CHECK(std::filesystem::exists(path),
                "{} '{}' not found: create it with tools/prepare-data "
                "(tools/prepare-data --help shows how)",
                what, path);
  TURBINE_CHECK(!std::filesystem::is_directory(path), "{} '{}' is a directory: give the .h5 file",
                what, path);
  TURBINE_CHECK(H5File::is_hdf5(path), "'{}' is not an HDF5 file, so not a {}: {}", path, what,
                kRecreate);
  std::unique_ptr<H5File> file;
  try {
    file = std::make_unique<H5File>(path, H5File::Mode::read);
  } catch (const Error&) {
    TURBINE_FAIL(
        "{} '{}' cannot be opened: it is truncated or damaged (an interrupted copy or write?): {}",
        what, path, kRecreate);
  }
  TURBINE_CHECK(file->has_attribute("format"),
                "'{}' is an HDF5 file but not a Turbine {} (it has no 'format' attribute): {}",
                path, what, kRecreate);
  const std::string found_format = file->attribute_string("format");
  TURBINE_CHECK(found_format == format, "'{}' holds format '{}', not a Turbine {} ('{}'): {}", path,
                found_format, what, format, kRecreate);
  const int64_t found_version = file->attribute_int("version");
  TURBINE_CHECK(found_version == version,
                "'{}' is a {} of version {}, and this Turbine reads version {}: {}", path, what,
                found_version, version, kRecreate);
  return file;
}

TokenDataset TokenDataset::open(const std::string& path) {
  TokenDataset d;
  d.path_ = path;
  d.file_ = open_data_file(path, "token data set", kTokenFormat, kTokenFormatVersion);
  const H5File& file = *d.file_;
  try {
    d.vocab_size_ = file.attribute_int("vocab_size");
    TURBINE_CHECK(d.vocab_size_ > 0, "vocab_size is {}", d.vocab_size_);
    d.tokenizer_identity_ = file.attribute_string("tokenizer_identity");
    d.tokenizer_json_ = file.read_string("tokenizer");
    for (Split split : {Split::train, Split::valid}) {
      const std::string tokens = dataset_name(split, "tokens");
      const std::string offsets = dataset_name(split, "doc_offsets");
      const Shape token_shape = file.shape(tokens);
      const Shape offset_shape = file.shape(offsets);
      const DType token_type = file.dtype(tokens);
      TURBINE_CHECK(
          token_shape.size() == 1 && (token_type == DType::u16 || token_type == DType::i32),
          "{} is not 1-D uint16 or int32", tokens);
      TURBINE_CHECK(offset_shape.size() == 1 && offset_shape[0] >= 1, "{} is not 1-D and non-empty",
                    offsets);
      std::vector<int64_t>& o = split == Split::train ? d.train_offsets_ : d.valid_offsets_;
      o.resize(offset_shape[0]);
      file.read_range(offsets, 0, offset_shape[0], DType::i64, o.data());
      TURBINE_CHECK(o.front() == 0 && o.back() == token_shape[0],
                    "{} runs from {} to {}, but {} has {} tokens", offsets, o.front(), o.back(),
                    tokens, token_shape[0]);
      for (size_t i = 1; i < o.size(); ++i) {
        TURBINE_CHECK(o[i - 1] <= o[i], "{} decreases at document {}", offsets, i - 1);
      }
      const std::string ids = dataset_name(split, "doc_ids");
      if (file.exists(ids)) {
        TURBINE_CHECK(file.shape(ids) == Shape{offset_shape[0] - 1},
                      "{} does not hold one entry a document", ids);
        std::vector<int64_t>& d_ids = split == Split::train ? d.train_ids_ : d.valid_ids_;
        d_ids.resize(size_t(offset_shape[0] - 1));
        file.read_range(ids, 0, offset_shape[0] - 1, DType::i64, d_ids.data());
      }
    }
  } catch (const Error& e) {
    TURBINE_FAIL("token data set '{}' is damaged or incomplete ({}): {}", path, e.what(),
                 kRecreate);
  }
  static std::set<std::string> noted;  // once per data set and process
  if (!file.checksummed(dataset_name(Split::train, "tokens")) && noted.insert(path).second)
    log::info(
        "note: {} has no checksums (made by an earlier prepare-data), so damage to it "
        "would go unnoticed: remake it with tools/prepare-data",
        path);
  return d;
}

void TokenDataset::read(Split split, int64_t offset, int64_t count, int32_t* out) const {
  const int64_t n = num_tokens(split);
  TURBINE_CHECK(offset >= 0 && count >= 0 && offset <= n && count <= n - offset,
                "{}: cannot read tokens [{}, {}) of the {} split, which has {} tokens", path_,
                offset, offset + count, split_name(split), n);
  file_->read_range(dataset_name(split, "tokens"), offset, count, DType::i32, out);
}

}  // namespace turbine::data
