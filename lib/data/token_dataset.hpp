// Token data sets: a tokenized corpus in one HDF5 file, written streaming by
// TokenDatasetWriter and read in arbitrary ranges by TokenDataset.
//
// Format "turbine-tokens", version 1:
//
//   /                    attributes:
//     format               string  "turbine-tokens"
//     version              int64   1
//     vocab_size           int64   every token id is in [0, vocab_size)
//     tokenizer_identity   string  Tokenizer::identity(), e.g. "bpe-8192-0123456789abcdef"
//   /tokenizer           scalar string: the tokenizer's JSON (Hugging Face
//                        tokenizer.json), so a data set is self-describing
//   /train, /valid       one group per split, each with
//     tokens             1-D, uint16 when vocab_size <= 65536, else int32;
//                        the split's documents concatenated (with the EOS
//                        token after each, when the tokenizer has one);
//                        chunked (kTokenChunk elements), unlimited length,
//                        uncompressed so that a range read touches 1-2 chunks
//     doc_offsets        1-D int64, n_docs + 1 entries: document d is
//                        tokens[doc_offsets[d], doc_offsets[d + 1]);
//                        doc_offsets[0] = 0, doc_offsets[n_docs] = len(tokens)
//     doc_ids            1-D int64, n_docs entries (optional: files written
//                        before it lack it): each document's index among all
//                        the input's documents in input order, both splits
//                        counted, so a document's group (the KJV's book of a
//                        chapter) can be looked up in a list over the input
//
// The writer writes to `path + ".tmp"` and renames it to `path` in finish(),
// so a file at `path` is always whole. h5py reads the format directly:
// h5py.File(p)["train/tokens"][i:j].
//
// A TokenDataset is not safe to read from several threads at once (HDF5's
// serial library is not); give each thread its own, or serialize reads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace turbine {
class H5File;
}

namespace turbine::data {

enum class Split { train, valid };
const char* split_name(Split split);  // "train", "valid"

inline constexpr const char* kTokenFormat = "turbine-tokens";
inline constexpr int64_t kTokenFormatVersion = 1;
inline constexpr int64_t kTokenChunk = 1 << 15;  // elements per HDF5 chunk of `tokens`

// Throws if `path` exists and !force, with a message that says to pass --force.
void refuse_to_overwrite(const std::string& path, bool force);

// Opens a data set file that tools/prepare-data writes, of format `format`
// (its root attribute "format") and version `version`, for reading. Errors
// name the file, say what it is not (`what`, e.g. "token data set") and say
// to create or re-create it with tools/prepare-data.
std::unique_ptr<H5File> open_data_file(const std::string& path, const char* what,
                                       const char* format, int64_t version);

// Whether document `document_index` belongs to the valid split: a pure
// function of (seed, index), so a split never depends on the order of work
// or on the other documents. About `valid_fraction` of documents land there.
bool is_valid_document(uint64_t seed, int64_t document_index, double valid_fraction);

struct SplitStats {
  int64_t tokens = 0;
  int64_t docs = 0;
};
struct TokenDatasetStats {
  SplitStats train, valid;
};

class TokenDatasetWriter {
 public:
  // Refuses when `path` exists and !force. Writes to `path + ".tmp"`.
  TokenDatasetWriter(const std::string& path, int64_t vocab_size, const std::string& tokenizer_json,
                     const std::string& tokenizer_identity, bool force);
  // Without finish(), removes the temporary file: nothing at `path` changes.
  ~TokenDatasetWriter();
  TokenDatasetWriter(const TokenDatasetWriter&) = delete;
  TokenDatasetWriter& operator=(const TokenDatasetWriter&) = delete;

  // Appends one document (its EOS included, if wanted) to a split. Throws on
  // an id outside [0, vocab_size).
  void add_document(std::span<const int32_t> tokens, bool valid);
  // Writes what is buffered and the document offsets, closes the file and
  // renames it to `path`.
  TokenDatasetStats finish();

  const std::string& path() const { return path_; }
  std::string temporary_path() const { return path_ + ".tmp"; }

 private:
  struct SplitBuffer {
    std::vector<int32_t> pending;  // tokens not yet written
    std::vector<int64_t> doc_offsets = {0};
    std::vector<int64_t> doc_ids;
  };
  void flush(Split split);
  SplitBuffer& buffer(Split split) { return split == Split::train ? train_ : valid_; }

  std::string path_;
  int64_t vocab_size_;
  std::unique_ptr<H5File> file_;
  SplitBuffer train_, valid_;
  bool finished_ = false;
};

class TokenDataset {
 public:
  // Opens and validates a data set. Errors name the file and say what to do
  // (a missing, truncated, foreign or wrong-version file).
  static TokenDataset open(const std::string& path);
  ~TokenDataset();
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;

  const std::string& path() const { return path_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& tokenizer_json() const { return tokenizer_json_; }
  const std::string& tokenizer_identity() const { return tokenizer_identity_; }
  int64_t num_tokens(Split split) const { return doc_offsets(split).back(); }
  int64_t num_docs(Split split) const {
    return static_cast<int64_t>(doc_offsets(split).size()) - 1;
  }
  // n_docs + 1 entries; document d is tokens [offsets[d], offsets[d + 1]).
  std::span<const int64_t> doc_offsets(Split split) const {
    return split == Split::train ? train_offsets_ : valid_offsets_;
  }
  // Each document's index in the input (doc_ids); empty for files written
  // before the format had it.
  std::span<const int64_t> doc_ids(Split split) const {
    return split == Split::train ? train_ids_ : valid_ids_;
  }

  // Reads tokens [offset, offset + count) of a split into out[0, count):
  // only that range is read from disk. Throws when the range is outside the split.
  void read(Split split, int64_t offset, int64_t count, int32_t* out) const;

 private:
  TokenDataset() = default;

  std::string path_;
  std::unique_ptr<H5File> file_;
  int64_t vocab_size_ = 0;
  std::string tokenizer_json_, tokenizer_identity_;
  std::vector<int64_t> train_offsets_, valid_offsets_, train_ids_, valid_ids_;
};

}  // namespace turbine::data
