// The pre-tokenizers. GPT-2's, gpt2_pretokenize: the regular expression
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// matched by hand over UTF-8 code points, with Unicode categories from utf8proc.
// BLOOM's, bloom_pretokenize (tokenizer.hpp), is at the end, with \s as
// Oniguruma has it.
//
// \s follows JavaScript's /u semantics (the gpt-3-encoder npm package is our
// reference): Zs, TAB..CR, U+2028, U+2029 and U+FEFF. Python's `regex` module
// and Hugging Face (Oniguruma) differ on two code points: they count U+0085 as
// a space and U+FEFF as "other". Letters and numbers are those of utf8proc's
// Unicode version (15.0 in Debian 12); code points assigned later are "other"
// here, while a newer JavaScript engine may call them letters.
#include <utf8proc.h>

#include <array>
#include <cstdint>

#include "data/tokenizer.hpp"

namespace turbine::data {
namespace {

enum class CharClass : uint8_t { letter, number, space, other };

struct Char {
  size_t length;  // bytes
  CharClass cls;
};

CharClass class_of_code_point(int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::number;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return CharClass::space;
    default:
      return (cp >= 0x09 && cp <= 0x0D) || cp == 0xFEFF ? CharClass::space : CharClass::other;
  }
}

const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> table = [] {
    std::array<CharClass, 128> t{};
    for (int32_t c = 0; c < 128; ++c) t[c] = class_of_code_point(c);
    return t;
  }();
  return table;
}

bool is_continuation(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// Decodes the character at text[pos]. A byte that does not start a
// well-formed UTF-8 sequence (RFC 3629: no overlongs, surrogates or code
// points above U+10FFFF) is a one-byte character with code point -1.
struct Decoded {
  size_t length;  // bytes
  int32_t cp;     // -1: not well-formed
};
Decoded decode_at(std::string_view text, size_t pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) return {1, int32_t(b0)};
  const Decoded invalid{1, -1};
  const size_t left = text.size() - pos;
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left < 2 || !is_continuation(byte(1))) return invalid;
    return {2, ((b0 & 0x1F) << 6) | (byte(1) & 0x3F)};
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left < 3) return invalid;
    const unsigned char b1 = byte(1);
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
    if (b1 < lo || b1 > hi || !is_continuation(byte(2))) return invalid;
    return {3, ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (byte(2) & 0x3F)};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left < 4) return invalid;
    const unsigned char b1 = byte(1);
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (b1 < lo || b1 > hi || !is_continuation(byte(2)) || !is_continuation(byte(3))) {
      return invalid;
    }
    return {4,
            ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F)};
  }
  return invalid;
}

// The character at text[pos] with its class (an ill-formed byte: "other").
Char char_at(std::string_view text, size_t pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) return {1, ascii_classes()[b0]};
  const Decoded d = decode_at(text, pos);
  return {d.length, d.cp < 0 ? CharClass::other : class_of_code_point(d.cp)};
}

// Oniguruma's \s under Unicode (what Hugging Face's regexes use): the
// White_Space property, U+0085 included.
bool onig_space(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// What BLOOM's split pattern keeps out of its word runs.
bool bloom_separator(int32_t cp) {
  switch (cp) {
    case '(':
    case ')':
    case '|':
    case '.':
    case ',':
    case '!':
    case '?':
    case 0x2026:  // …
    case 0x3002:  // 。
    case 0xFF0C:  // ，
    case 0x3001:  // 、
    case 0x0964:  // ।
    case 0x06D4:  // ۔
    case 0x060C:  // ،
      return true;
    default:
      return onig_space(cp);
  }
}

// Length of 's 't 're 've 'm 'll 'd at the start of rest (which starts with '), or 0.
size_t contraction_length(std::string_view rest) {
  if (rest.size() >= 2) {
    const char c = rest[1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
  }
  if (rest.size() >= 3) {
    const std::string_view two = rest.substr(1, 2);
    if (two == "re" || two == "ve" || two == "ll") return 3;
  }
  return 0;
}

// End of the run of characters of class cls that starts at pos.
size_t run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const Char c = char_at(text, pos);
    if (c.cls != cls) break;
    pos += c.length;
  }
  return pos;
}

// End of the piece the pattern matches at pos (the alternatives in order).
size_t piece_end(std::string_view text, size_t pos) {
  if (text[pos] == '\'') {
    if (const size_t n = contraction_length(text.substr(pos))) return pos + n;
  }
  const Char first = char_at(text, pos);
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ without the optional space
  if (first.cls != CharClass::space) return run_end(text, pos, first.cls);
  // The same with the space: only U+0020 joins the piece after it.
  if (text[pos] == ' ' && pos + 1 < text.size()) {
    const Char next = char_at(text, pos + 1);
    if (next.cls != CharClass::space) return run_end(text, pos + 1, next.cls);
  }
  // \s+(?!\S) | \s+ : a run of spaces gives up its last character to the
  // piece that follows, unless the text ends or it has only one.
  size_t end = pos;
  size_t last = pos;
  while (end < text.size()) {
    const Char c = char_at(text, end);
    if (c.cls != CharClass::space) break;
    last = end;
    end += c.length;
  }
  if (end < text.size() && last > pos) return last;
  return end;
}

}  // namespace

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = piece_end(text, pos);
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

std::vector<std::string_view> bloom_pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t gap = 0;  // where the text not yet in a piece starts
  size_t pos = 0;
  auto word_end = [&](size_t from) {  // the run of non-separators at from
    while (from < text.size()) {
      const Decoded d = decode_at(text, from);
      if (bloom_separator(d.cp)) break;
      from += d.length;
    }
    return from;
  };
  while (pos < text.size()) {
    const Decoded d = decode_at(text, pos);
    size_t start = std::string_view::npos;
    if (!bloom_separator(d.cp)) {
      start = pos;
    } else if (text[pos] == ' ' && pos + 1 < text.size() &&
               !bloom_separator(decode_at(text, pos + 1).cp)) {
      start = pos;  // " ?" takes the space before a word
    }
    if (start == std::string_view::npos) {
      pos += d.length;  // part of the gap
      continue;
    }
    if (gap < start) pieces.push_back(text.substr(gap, start - gap));
    const size_t end = word_end(bloom_separator(d.cp) ? pos + 1 : pos);  // after the space
    pieces.push_back(text.substr(start, end - start));
    pos = gap = end;
  }
  if (gap < text.size()) pieces.push_back(text.substr(gap));
  return pieces;
}

}  // namespace turbine::data
