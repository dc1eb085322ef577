// Byte-level BPE tokenizer (GPT-2 / BLOOM style): GPT-2's pre-tokenization
// pattern with real Unicode classes (or BLOOM's split, when a tokenizer.json
// asks for it), byte-level alphabet (bytes_to_unicode), ranked merges. One
// model, three file formats: Hugging Face tokenizer.json (BPE with a
// ByteLevel pre-tokenizer; also how Turbine saves), and GPT-2's
// encoder.json + vocab.bpe pair. encode then decode returns the input bytes
// exactly for any input, including invalid UTF-8.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace turbine::data {

class Tokenizer {
 public:
  struct TrainOptions {
    int32_t vocab_size = 8192;  // including the 256 byte tokens and special tokens
    std::vector<std::string> special_tokens = {"<|endoftext|>"};
    int min_frequency = 2;  // merges of pairs seen fewer times are not learned
    // Called now and then with (merges learned, merges wanted).
    std::function<void(int64_t, int64_t)> progress;
  };
  // Learns merges from documents (each pre-tokenized separately).
  static Tokenizer train(const std::vector<std::string>& documents, const TrainOptions& options);

  // Loads a tokenizer.json (Hugging Face BPE format), or, given a directory,
  // its tokenizer.json or encoder.json + vocab.bpe. Errors name the file.
  static Tokenizer load(const std::string& path);
  static Tokenizer load_gpt2(const std::string& encoder_json, const std::string& vocab_bpe);
  static Tokenizer from_json(const std::string& tokenizer_json, const std::string& origin);
  std::string to_json() const;  // Hugging Face tokenizer.json text
  void save(const std::string& path) const;

  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(std::span<const int32_t> ids) const;  // throws on an id out of range
  int32_t vocab_size() const;
  std::optional<int32_t> token_id(const std::string& token) const;  // e.g. "<|endoftext|>"
  std::optional<int32_t> eos_id() const;                            // <|endoftext|> or </s>
  // A stable fingerprint of vocabulary and merges ("bpe-<vocab>-<16 hex>"),
  // stored in data sets and checkpoints to detect mismatches.
  std::string identity() const;

  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;

  // train and the loaders build through here: tokens[id] holds the token's
  // bytes, merges are (left id, right id) in rank order, and special tokens
  // are matched literally in text and never made by merges. origin (a file
  // name, or what made the tokenizer) appears in error messages.
  static Tokenizer from_parts(std::vector<std::string> tokens,
                              std::vector<std::pair<int32_t, int32_t>> merges,
                              const std::vector<int32_t>& special_ids, std::string origin);
  // Cuts text at literal occurrences of specials (leftmost first, then the
  // longest): on_text gets the (non-empty) text between them, on_special the
  // index in specials of each occurrence.
  static void split_at_specials(std::string_view text, const std::vector<std::string>& specials,
                                const std::function<void(std::string_view)>& on_text,
                                const std::function<void(size_t)>& on_special);
};

// GPT-2's pre-tokenizer: splits text into the pieces BPE runs on, following
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with Unicode letter/number/space classes; invalid UTF-8 bytes count as
// "other" characters one byte each.
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

// BLOOM's pre-tokenizer: Hugging Face's Split with the Oniguruma pattern
// " ?[^(\s|[.,!?…。，、।۔،])]+" and behavior Isolated (each match is a piece,
// and so is each run of text between matches), before a ByteLevel step
// that does not split further. The class excludes whitespace (Unicode's
// White_Space) and ( ) | . , ! ? … 。 ， 、 । ۔ ،.
std::vector<std::string_view> bloom_pretokenize(std::string_view text);

}  // namespace turbine::data
