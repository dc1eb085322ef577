// Streaming detokenization (infer/text_stream.hpp).
#include "infer/text_stream.hpp"

#include <algorithm>

namespace turbine::infer {

size_t complete_utf8_prefix(std::string_view text) {
  const size_t end = text.size();
  // Step back over at most 3 continuation bytes to the last lead byte.
  size_t i = end;
  for (int back = 0; back < 4 && i > 0; ++back) {
    const auto c = static_cast<unsigned char>(text[i - 1]);
    if ((c & 0xC0) != 0x80) {  // ASCII or a lead byte
      const size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
      return end - (i - 1) >= need ? end : i - 1;
    }
    --i;
  }
  return end;
}

size_t stop_position(const std::string& text, const std::vector<std::string>& stop) {
  size_t first = std::string::npos;
  for (const std::string& s : stop)
    if (!s.empty()) first = std::min(first, text.find(s));
  return first;
}

TextStream::TextStream(const data::Tokenizer& tokenizer, std::vector<std::string> stop, int32_t eos)
    : tokenizer_(tokenizer), stop_(std::move(stop)), eos_(eos) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
  for (const std::string& s : stop_) hold_ = std::max(hold_, s.size() - 1);
}

std::string TextStream::push(int32_t token) {
  if (stopped_) return {};
  if (token == eos_) {
    stopped_ = true;
    return {};
  }
  // A model's vocabulary may be padded past its tokenizer's (BLOOM: 250880
  // rows for 250680 tokens): ids without text add none.
  if (token < 0 || token >= tokenizer_.vocab_size()) return {};
  tokens_.push_back(token);
  decoded_ = tokenizer_.decode(tokens_);
  const size_t cut = stop_position(decoded_, stop_);
  if (cut != std::string::npos) {
    decoded_.resize(cut);
    stopped_ = true;
  }
  size_t ready = stopped_ ? decoded_.size() : decoded_.size() - std::min(hold_, decoded_.size());
  ready = complete_utf8_prefix(std::string_view(decoded_).substr(0, ready));
  if (ready <= text_.size()) return {};
  std::string fresh = decoded_.substr(text_.size(), ready - text_.size());
  text_ += fresh;
  return fresh;
}

std::string TextStream::finish() {
  if (decoded_.size() <= text_.size()) return {};
  std::string rest = decoded_.substr(text_.size());
  text_ = decoded_;
  return rest;
}

}  // namespace turbine::infer
