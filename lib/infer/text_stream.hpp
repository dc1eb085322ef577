// Generated tokens to text as they come, for streaming: each new token's
// text is released once it is whole UTF-8 (a character split over tokens
// waits for its last byte) and cannot be the start of a stop string; the
// text ends before the first stop string, and at the end-of-text token.
// One per sequence: `infer generate`'s streamed prompt, a prompts file's
// batch rows and `infer serve`'s requests all cut their text here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace turbine::infer {

class TextStream {
 public:
  // eos: the end-of-text id (-1: none); empty stop strings are ignored.
  TextStream(const data::Tokenizer& tokenizer, std::vector<std::string> stop, int32_t eos);
  // Adds a generated token; returns the text that became visible with it.
  std::string push(int32_t token);
  // Whether the end-of-text token or a stop string ended the text.
  bool stopped() const { return stopped_; }
  // Ends the stream: the rest of the text, held back until now.
  std::string finish();
  // The whole visible text so far (final after finish()).
  const std::string& text() const { return text_; }

 private:
  const data::Tokenizer& tokenizer_;
  std::vector<std::string> stop_;
  int32_t eos_;
  size_t hold_ = 0;  // bytes that could begin a stop string
  std::vector<int32_t> tokens_;
  std::string text_;     // released so far, then the final text
  std::string decoded_;  // the tokens' text, cut at a stop string
  bool stopped_ = false;
};

// Bytes of `text` that end on a whole UTF-8 character.
size_t complete_utf8_prefix(std::string_view text);
// Where the first of the stop strings starts in `text`, or npos.
size_t stop_position(const std::string& text, const std::vector<std::string>& stop);

}  // namespace turbine::infer
