// Tokenizer: byte-level BPE encoding and decoding; loading Hugging Face
// tokenizer.json and GPT-2's encoder.json + vocab.bpe; saving tokenizer.json;
// the identity fingerprint. Training is in bpe_train.cpp, GPT-2's
// pre-tokenization in pretokenize.cpp.
#include "data/tokenizer.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.hpp"

namespace turbine::data {
namespace {

using Json = nlohmann::json;

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves and
// the other 68 (controls, space, DEL, NBSP, soft hyphen) for U+0100..U+0143
// in byte order, so that every token is printable text without spaces.
struct ByteAlphabet {
  std::array<uint32_t, 256> code_point_of_byte{};
  std::array<int16_t, 256 + 68> byte_of_code_point{};  // -1: not in the alphabet
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet = [] {
    ByteAlphabet a;
    a.byte_of_code_point.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : next++;
      a.code_point_of_byte[b] = cp;
      a.byte_of_code_point[cp] = static_cast<int16_t>(b);
    }
    return a;
  }();
  return alphabet;
}

// A token's bytes as byte-level text, the form vocabularies spell it in.
std::string byte_level_text(std::string_view bytes) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string text;
  text.reserve(bytes.size() * 2);
  for (const char byte : bytes) {
    const uint32_t cp = alphabet.code_point_of_byte[static_cast<unsigned char>(byte)];
    if (cp < 0x80) {
      text.push_back(static_cast<char>(cp));
    } else {  // every code point of the alphabet is below U+0800
      text.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      text.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return text;
}

// The bytes that byte-level text stands for; nullopt when it is empty or holds
// a character outside the alphabet.
std::optional<std::string> bytes_of_byte_level_text(std::string_view text) {
  const ByteAlphabet& alphabet = byte_alphabet();
  if (text.empty()) return std::nullopt;
  std::string bytes;
  for (size_t i = 0; i < text.size();) {
    const auto c0 = static_cast<unsigned char>(text[i]);
    uint32_t cp = c0;
    if (c0 >= 0x80) {
      if (c0 < 0xC2 || c0 > 0xDF || i + 1 == text.size()) return std::nullopt;
      const auto c1 = static_cast<unsigned char>(text[i + 1]);
      if ((c1 & 0xC0) != 0x80) return std::nullopt;
      cp = ((c0 & 0x1Fu) << 6) | (c1 & 0x3Fu);
      ++i;
    }
    ++i;
    if (cp >= alphabet.byte_of_code_point.size() || alphabet.byte_of_code_point[cp] < 0) {
      return std::nullopt;
    }
    bytes.push_back(static_cast<char>(alphabet.byte_of_code_point[cp]));
  }
  return bytes;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return uint64_t{static_cast<uint32_t>(left)} << 32 | static_cast<uint32_t>(right);
}

struct PairHash {
  size_t operator()(uint64_t key) const { return (key ^ (key >> 29)) * 0xBF58476D1CE4E5B9ull; }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Merge {
  int32_t rank;
  int32_t result;  // id of the merged token
};

// Pieces already encoded, shared by all encode calls (text repeats a few
// thousand words). Copies start empty.
struct PieceCache {
  static constexpr size_t max_pieces = 1 << 20;  // then it starts over
  static constexpr size_t max_piece_bytes = 256;
  std::shared_mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> ids_of_piece;

  PieceCache() = default;
  PieceCache(const PieceCache&) {}
  PieceCache& operator=(const PieceCache&) {
    std::unique_lock lock(mutex);
    ids_of_piece.clear();
    return *this;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TURBINE_CHECK(in, "cannot open tokenizer file {}: {}; check the path", path,
                std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  TURBINE_CHECK(!in.bad(), "cannot read tokenizer file {}: {}", path, std::strerror(errno));
  return text.str();
}

Json parse_json(const std::string& text, const std::string& origin) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {  // parse errors, and numbers past double's range
    TURBINE_FAIL("{} is not valid JSON ({}); it may be truncated: download or save it again",
                 origin, e.what());
  }
}

// A vocabulary as files spell it: token names (byte-level text, or a special
// token's literal content) with their ids, and merges as pairs of names.
struct NamedVocabulary {
  std::vector<std::pair<std::string, int32_t>> entries;
  std::unordered_set<std::string> special_names;
  std::vector<std::pair<std::string, std::string>> merges;
};

// What Tokenizer::from_parts takes.
struct Parts {
  std::vector<std::string> tokens;
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> special_ids;
};

Parts resolve_names(const NamedVocabulary& vocabulary, const std::string& origin) {
  int64_t max_id = -1;
  for (const auto& [name, id] : vocabulary.entries) {
    TURBINE_CHECK(id >= 0, "{}: token '{}' has the negative id {}", origin, name, id);
    max_id = std::max<int64_t>(max_id, id);
  }
  TURBINE_CHECK(max_id >= 0, "{}: the vocabulary is empty", origin);
  std::vector<const std::string*> name_of_id(max_id + 1, nullptr);
  std::unordered_map<std::string_view, int32_t> id_of_name;
  for (const auto& [name, id] : vocabulary.entries) {
    TURBINE_CHECK(name_of_id[id] == nullptr, "{}: id {} is given to both '{}' and '{}'", origin, id,
                  *name_of_id[id], name);
    name_of_id[id] = &name;
    id_of_name.emplace(name, id);
  }
  Parts parts;
  parts.tokens.resize(name_of_id.size());
  for (size_t id = 0; id < name_of_id.size(); ++id) {
    TURBINE_CHECK(name_of_id[id] != nullptr,
                  "{}: no token has id {}; ids must run from 0 to {} without gaps", origin, id,
                  max_id);
    const std::string& name = *name_of_id[id];
    if (vocabulary.special_names.contains(name)) {
      parts.tokens[id] = name;
      parts.special_ids.push_back(static_cast<int32_t>(id));
      continue;
    }
    std::optional<std::string> bytes = bytes_of_byte_level_text(name);
    TURBINE_CHECK(
        bytes.has_value(),
        "{}: token '{}' (id {}) is not byte-level text (GPT-2's bytes_to_unicode "
        "alphabet) and not an added token; Turbine reads only byte-level BPE vocabularies",
        origin, name, id);
    parts.tokens[id] = std::move(*bytes);
  }
  for (size_t rank = 0; rank < vocabulary.merges.size(); ++rank) {
    const auto& [left, right] = vocabulary.merges[rank];
    const auto l = id_of_name.find(left);
    const auto r = id_of_name.find(right);
    TURBINE_CHECK(l != id_of_name.end() && r != id_of_name.end(),
                  "{}: merge {} ('{} {}') uses '{}', which is not in the vocabulary", origin,
                  rank + 1, left, right, l == id_of_name.end() ? left : right);
    parts.merges.emplace_back(l->second, r->second);
  }
  return parts;
}

constexpr const char* kBloomSplit = " ?[^(\\s|[.,!?…。，、।۔،])]+";

// BLOOM's pre_tokenizer: Split on kBloomSplit (Isolated), then ByteLevel
// without its regex and without a prefix space.
bool is_bloom_pipeline(const Json& pre) {
  if (!pre.is_object() || pre.value("type", "") != "Sequence") return false;
  const Json steps = pre.value("pretokenizers", Json());
  if (!steps.is_array() || steps.size() != 2) return false;
  const Json& split = steps[0];
  const Json& bytes = steps[1];
  return split.value("type", "") == "Split" && split.contains("pattern") &&
         split["pattern"].is_object() && split["pattern"].value("Regex", "") == kBloomSplit &&
         split.value("behavior", "") == "Isolated" && !split.value("invert", false) &&
         bytes.value("type", "") == "ByteLevel" && !bytes.value("add_prefix_space", true) &&
         !bytes.value("use_regex", true);
}

// The pieces of HF's format that Turbine implements; anything else would
// encode differently from Hugging Face, so it is refused. Returns whether the
// pre-tokenizer is BLOOM's (else GPT-2's ByteLevel).
bool check_hf_pipeline(const Json& doc, const std::string& origin) {
  const Json normalizer = doc.value("normalizer", Json());
  TURBINE_CHECK(normalizer.is_null(),
                "{}: normalizer {} is not supported; Turbine reads byte-level BPE tokenizers "
                "without a normalizer (set \"normalizer\": null)",
                origin, normalizer.value("type", normalizer.dump()));
  const Json pre = doc.value("pre_tokenizer", Json());
  if (is_bloom_pipeline(pre)) return true;
  TURBINE_CHECK(pre.is_object() && pre.value("type", "") == "ByteLevel",
                "{}: pre_tokenizer {} is not supported; Turbine implements ByteLevel (GPT-2's "
                "pattern) and BLOOM's Split + ByteLevel sequence",
                origin, pre.is_object() ? pre.value("type", pre.dump()) : pre.dump());
  TURBINE_CHECK(
      !pre.value("add_prefix_space", true),
      "{}: the ByteLevel pre_tokenizer adds a prefix space (or does not say; HF's default "
      "is to add one), which breaks exact decoding; set \"add_prefix_space\": false",
      origin);
  TURBINE_CHECK(pre.value("use_regex", true),
                "{}: the ByteLevel pre_tokenizer has use_regex false; Turbine always splits with "
                "GPT-2's pattern",
                origin);
  return false;
}

void check_hf_model(const Json& model, const std::string& origin) {
  const std::string type = model.contains("type")     ? model["type"].get<std::string>()
                           : model.contains("merges") ? "BPE"
                                                      : "(none)";
  TURBINE_CHECK(type == "BPE",
                "{}: model.type is {}, but Turbine reads only byte-level BPE tokenizers (GPT-2 "
                "style); convert the model or train one with Tokenizer::train",
                origin, type);
  const Json dropout = model.value("dropout", Json());
  TURBINE_CHECK(dropout.is_null() || dropout.get<double>() == 0.0,
                "{}: BPE dropout {} is not supported; set \"dropout\": null", origin,
                dropout.dump());
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json affix = model.value(key, Json());
    TURBINE_CHECK(affix.is_null() || affix.get<std::string>().empty(),
                  "{}: model.{} {} is not supported by byte-level BPE; it must be null or \"\"",
                  origin, key, affix.dump());
  }
  for (const char* key : {"byte_fallback", "ignore_merges"}) {
    TURBINE_CHECK(!model.value(key, false), "{}: model.{} true is not supported; set it to false",
                  origin, key);
  }
}

std::pair<std::string, std::string> hf_merge(const Json& merge, size_t rank,
                                             const std::string& origin) {
  if (merge.is_array()) {
    TURBINE_CHECK(merge.size() == 2, "{}: merge {} is {}; expected two tokens", origin, rank + 1,
                  merge.dump());
    return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  }
  const std::string text = merge.get<std::string>();
  const size_t space = text.find(' ');
  TURBINE_CHECK(space != std::string::npos && space > 0 && space + 1 < text.size() &&
                    text.find(' ', space + 1) == std::string::npos,
                "{}: merge {} is '{}'; expected two tokens separated by one space", origin,
                rank + 1, text);
  return {text.substr(0, space), text.substr(space + 1)};
}

// FNV-1a, 64 bits.
struct Fnv1a {
  uint64_t hash = 0xCBF29CE484222325ull;
  void add(const void* data, size_t size) {
    for (size_t i = 0; i < size; ++i) {
      hash ^= static_cast<const unsigned char*>(data)[i];
      hash *= 0x100000001B3ull;
    }
  }
  void add(int32_t value) {
    const std::array<unsigned char, 4> little_endian = {
        static_cast<unsigned char>(value), static_cast<unsigned char>(value >> 8),
        static_cast<unsigned char>(value >> 16), static_cast<unsigned char>(value >> 24)};
    add(little_endian.data(), little_endian.size());
  }
};

std::string quoted(const std::string& text) {
  return Json(text).dump();
}

}  // namespace

struct Tokenizer::Impl {
  std::string origin = "an empty tokenizer";
  std::vector<std::string> tokens;                  // id -> the token's bytes
  std::vector<uint8_t> is_special;                  // id -> 1 for special tokens
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank -> (left id, right id)
  std::unordered_map<uint64_t, Merge, PairHash> merge_of_pair;
  std::array<int32_t, 256> id_of_byte{};                // -1: the vocabulary lacks this byte
  std::unordered_map<std::string, int32_t> id_of_name;  // as vocabularies spell tokens
  std::vector<std::string> special_texts;
  std::vector<int32_t> special_ids;  // parallel to special_texts
  bool bloom_split = false;          // BLOOM's pre-tokenizer instead of GPT-2's
  std::string identity;
  mutable PieceCache cache;

  Impl() { id_of_byte.fill(-1); }
  std::string name_of(int32_t id) const {
    return is_special[id] ? tokens[id] : byte_level_text(tokens[id]);
  }
  int32_t byte_id(unsigned char byte) const;
  void apply_merges(std::string_view piece, std::vector<int32_t>& ids) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  std::string fingerprint() const;
};

int32_t Tokenizer::Impl::byte_id(unsigned char byte) const {
  const int32_t id = id_of_byte[byte];
  TURBINE_CHECK(id >= 0,
                "{} has no token for byte 0x{:02X}, so text holding it cannot be encoded; use a "
                "byte-level BPE vocabulary with all 256 byte tokens",
                origin, byte);
  return id;
}

// BPE on one piece: repeatedly merges the adjacent pair of lowest rank
// (leftmost first among equals), as Hugging Face does, with a heap so long
// pieces cost O(n log n).
void Tokenizer::Impl::apply_merges(std::string_view piece, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;  // -1 at the ends
  };
  struct Candidate {
    int32_t rank, pos, left, right, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_id(static_cast<unsigned char>(piece[i])), i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t pos) {  // the pair that starts at symbol pos
    if (pos < 0 || symbols[pos].next < 0) return;
    const int32_t left = symbols[pos].id;
    const int32_t right = symbols[symbols[pos].next].id;
    const auto merge = merge_of_pair.find(pair_key(left, right));
    if (merge != merge_of_pair.end()) {
      queue.push({merge->second.rank, pos, left, right, merge->second.result});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& symbol = symbols[c.pos];
    if (symbol.id != c.left || symbol.next < 0 || symbols[symbol.next].id != c.right) continue;
    Symbol& right = symbols[symbol.next];
    symbol.id = c.result;
    symbol.next = right.next;
    if (symbol.next >= 0) symbols[symbol.next].prev = c.pos;
    right.id = -1;
    consider(symbol.prev);
    consider(c.pos);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.size() == 1) {
    ids.push_back(byte_id(static_cast<unsigned char>(piece[0])));
    return;
  }
  PieceCache& shared = cache;
  if (piece.size() > PieceCache::max_piece_bytes) return apply_merges(piece, ids);
  {
    std::shared_lock lock(shared.mutex);
    const auto hit = shared.ids_of_piece.find(piece);
    if (hit != shared.ids_of_piece.end()) {
      ids.insert(ids.end(), hit->second.begin(), hit->second.end());
      return;
    }
  }
  const size_t start = ids.size();
  apply_merges(piece, ids);
  std::unique_lock lock(shared.mutex);
  if (shared.ids_of_piece.size() >= PieceCache::max_pieces) shared.ids_of_piece.clear();
  shared.ids_of_piece.try_emplace(std::string(piece), ids.begin() + start, ids.end());
}

// Over every token (its bytes and whether it is special) and every merge.
std::string Tokenizer::Impl::fingerprint() const {
  Fnv1a fnv;
  fnv.add(static_cast<int32_t>(tokens.size()));
  for (size_t id = 0; id < tokens.size(); ++id) {
    fnv.add(static_cast<int32_t>(tokens[id].size()));
    fnv.add(tokens[id].data(), tokens[id].size());
    fnv.add(&is_special[id], 1);
  }
  fnv.add(static_cast<int32_t>(merges.size()));
  for (const auto& [left, right] : merges) {
    fnv.add(left);
    fnv.add(right);
  }
  if (bloom_split) fnv.add("bloom-split", 11);  // other pieces, other ids
  return fmt::format("bpe-{}-{:016x}", tokens.size(), fnv.hash);
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {
  impl_->identity = impl_->fingerprint();
}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::Tokenizer(const Tokenizer& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}

Tokenizer Tokenizer::from_parts(std::vector<std::string> tokens,
                                std::vector<std::pair<int32_t, int32_t>> merges,
                                const std::vector<int32_t>& special_ids, std::string origin) {
  TURBINE_CHECK(tokens.size() < size_t{1} << 31, "{}: {} tokens are too many for int32 ids", origin,
                tokens.size());
  Tokenizer tokenizer;
  Impl& m = *tokenizer.impl_;
  m.origin = std::move(origin);
  m.tokens = std::move(tokens);
  const auto n = static_cast<int32_t>(m.tokens.size());
  m.is_special.assign(n, 0);
  for (const int32_t id : special_ids) {
    TURBINE_CHECK(id >= 0 && id < n, "{}: special token id {} is out of range", m.origin, id);
    TURBINE_CHECK(!m.tokens[id].empty(), "{}: special token {} is empty", m.origin, id);
    if (m.is_special[id]) continue;
    m.is_special[id] = 1;
    m.special_texts.push_back(m.tokens[id]);
    m.special_ids.push_back(id);
  }
  std::unordered_map<std::string_view, int32_t> id_of_bytes;  // of the tokens merges can make
  for (int32_t id = 0; id < n; ++id) {
    const std::string& bytes = m.tokens[id];
    if (!m.is_special[id]) {
      TURBINE_CHECK(!bytes.empty(), "{}: token {} is empty", m.origin, id);
      const auto [other, fresh] = id_of_bytes.emplace(bytes, id);
      TURBINE_CHECK(fresh, "{}: tokens {} and {} are the same bytes '{}'", m.origin, other->second,
                    id, byte_level_text(bytes));
      if (bytes.size() == 1) m.id_of_byte[static_cast<unsigned char>(bytes[0])] = id;
    }
    const auto [other, fresh] = m.id_of_name.emplace(m.name_of(id), id);
    TURBINE_CHECK(fresh, "{}: tokens {} and {} are both spelled '{}'", m.origin, other->second, id,
                  other->first);
  }
  m.merges = std::move(merges);
  m.merge_of_pair.reserve(m.merges.size());
  for (size_t rank = 0; rank < m.merges.size(); ++rank) {
    const auto [left, right] = m.merges[rank];
    TURBINE_CHECK(left >= 0 && left < n && right >= 0 && right < n && !m.is_special[left] &&
                      !m.is_special[right],
                  "{}: merge {} ({} {}) does not name two ordinary tokens", m.origin, rank + 1,
                  left, right);
    const auto result = id_of_bytes.find(m.tokens[left] + m.tokens[right]);
    TURBINE_CHECK(result != id_of_bytes.end(),
                  "{}: merge {} ('{} {}') makes '{}', which is not in the vocabulary", m.origin,
                  rank + 1, m.name_of(left), m.name_of(right),
                  byte_level_text(m.tokens[left] + m.tokens[right]));
    // A pair listed twice keeps its first (best) rank.
    m.merge_of_pair.try_emplace(pair_key(left, right),
                                Merge{static_cast<int32_t>(rank), result->second});
  }
  m.identity = m.fingerprint();
  return tokenizer;
}

void Tokenizer::split_at_specials(std::string_view text, const std::vector<std::string>& specials,
                                  const std::function<void(std::string_view)>& on_text,
                                  const std::function<void(size_t)>& on_special) {
  constexpr size_t none = std::string_view::npos;
  std::vector<size_t> next(specials.size());  // each one's next occurrence at or after pos
  for (size_t k = 0; k < specials.size(); ++k) {
    next[k] = specials[k].empty() ? none : text.find(specials[k]);
  }
  size_t pos = 0;
  while (true) {
    size_t best = none;
    size_t best_k = 0;
    for (size_t k = 0; k < specials.size(); ++k) {
      if (next[k] != none && next[k] < pos) next[k] = text.find(specials[k], pos);
      if (next[k] < best ||
          (next[k] == best && best != none && specials[k].size() > specials[best_k].size())) {
        best = next[k];
        best_k = k;
      }
    }
    if (best == none) break;
    if (best > pos) on_text(text.substr(pos, best - pos));
    on_special(best_k);
    pos = best + specials[best_k].size();
  }
  if (pos < text.size()) on_text(text.substr(pos));
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_directory(path, error)) {
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json", error)) return load((dir / "tokenizer.json").string());
    if (fs::exists(dir / "encoder.json", error) && fs::exists(dir / "vocab.bpe", error)) {
      return load_gpt2((dir / "encoder.json").string(), (dir / "vocab.bpe").string());
    }
    TURBINE_FAIL(
        "directory {} holds neither tokenizer.json nor encoder.json + vocab.bpe; give the path "
        "of a tokenizer.json, or of a directory with GPT-2's files (tools/fetch-gpt2 fetches them)",
        path);
  }
  return from_json(read_file(path), path);
}

Tokenizer Tokenizer::load_gpt2(const std::string& encoder_json, const std::string& vocab_bpe) {
  const Json encoder = parse_json(read_file(encoder_json), encoder_json);
  TURBINE_CHECK(encoder.is_object(),
                "{}: expected a JSON object of token: id (GPT-2's encoder.json)", encoder_json);
  NamedVocabulary vocabulary;
  std::istringstream lines(read_file(vocab_bpe));
  std::string line;
  for (int line_number = 1; std::getline(lines, line); ++line_number) {
    if (line.empty() || (line_number == 1 && line[0] == '#')) continue;  // "#version: 0.2"
    const size_t space = line.find(' ');
    TURBINE_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                      line.find(' ', space + 1) == std::string::npos,
                  "{}:{}: '{}' is not a merge; expected two tokens separated by one space",
                  vocab_bpe, line_number, line);
    vocabulary.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  // GPT-2's files do not mark special tokens: they are the entries that are
  // neither a byte nor made by a merge (<|endoftext|>).
  std::unordered_set<std::string> merged;
  for (const auto& [left, right] : vocabulary.merges) merged.insert(left + right);
  try {
    for (const auto& [name, id] : encoder.items()) {
      const std::optional<std::string> bytes = bytes_of_byte_level_text(name);
      if (!(bytes && bytes->size() == 1) && !merged.contains(name)) {
        vocabulary.special_names.insert(name);
      }
      vocabulary.entries.emplace_back(name, id.get<int32_t>());
    }
  } catch (const Json::exception& e) {
    TURBINE_FAIL("{}: expected token: integer id entries ({})", encoder_json, e.what());
  }
  Parts parts = resolve_names(vocabulary, fmt::format("{} + {}", encoder_json, vocab_bpe));
  return from_parts(std::move(parts.tokens), std::move(parts.merges), parts.special_ids,
                    fmt::format("{} + {}", encoder_json, vocab_bpe));
}

Tokenizer Tokenizer::from_json(const std::string& tokenizer_json, const std::string& origin) {
  const Json doc = parse_json(tokenizer_json, origin);
  TURBINE_CHECK(doc.is_object() && doc.contains("model"),
                "{}: expected a Hugging Face tokenizer.json (an object with a \"model\")", origin);
  NamedVocabulary vocabulary;
  bool bloom_split = false;
  try {
    const Json& model = doc["model"];
    check_hf_model(model, origin);
    bloom_split = check_hf_pipeline(doc, origin);
    for (const auto& [name, id] : model.at("vocab").items()) {
      vocabulary.entries.emplace_back(name, id.get<int32_t>());
    }
    const Json& merges = model.at("merges");
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      vocabulary.merges.push_back(hf_merge(merges[rank], rank, origin));
    }
    const Json& vocab = model["vocab"];
    for (const Json& added : doc.value("added_tokens", Json::array())) {
      const auto id = added.at("id").get<int32_t>();
      const auto content = added.at("content").get<std::string>();
      for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
        TURBINE_CHECK(!added.value(flag, false),
                      "{}: added token '{}' sets {}, which Turbine does not support (it would "
                      "break exact decoding); set it to false",
                      origin, content, flag);
      }
      const auto in_vocab = vocab.find(content);
      if (in_vocab == vocab.end()) {
        vocabulary.entries.emplace_back(content, id);
      } else {
        TURBINE_CHECK(in_vocab->get<int32_t>() == id,
                      "{}: added token '{}' has id {}, but the vocabulary gives it {}", origin,
                      content, id, in_vocab->get<int32_t>());
      }
      vocabulary.special_names.insert(content);
    }
  } catch (const Json::exception& e) {
    TURBINE_FAIL("{}: unexpected content for a Hugging Face tokenizer.json ({})", origin, e.what());
  }
  Parts parts = resolve_names(vocabulary, origin);
  Tokenizer tokenizer =
      from_parts(std::move(parts.tokens), std::move(parts.merges), parts.special_ids, origin);
  tokenizer.impl_->bloom_split = bloom_split;
  tokenizer.impl_->identity = tokenizer.impl_->fingerprint();
  return tokenizer;
}

std::string Tokenizer::to_json() const {
  const Impl& m = *impl_;
  const char* byte_level =
      R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  try {
    fmt::format_to(it,
                   "{{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    fmt::format_to(it, "  \"added_tokens\": [");
    for (size_t k = 0; k < m.special_ids.size(); ++k) {
      fmt::format_to(it,
                     "{}\n    {{\"id\": {}, \"content\": {}, \"single_word\": false, \"lstrip\": "
                     "false, \"rstrip\": false, \"normalized\": false, \"special\": true}}",
                     k ? "," : "", m.special_ids[k], quoted(m.special_texts[k]));
    }
    fmt::format_to(it, "{}],\n", m.special_ids.empty() ? "" : "\n  ");
    const std::string pre =
        m.bloom_split
            ? fmt::format(
                  R"({{"type": "Sequence", "pretokenizers": [{{"type": "Split", "pattern": )"
                  R"({{"Regex": {}}}, "behavior": "Isolated", "invert": false}}, )"
                  R"({{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": )"
                  R"(true, "use_regex": false}}]}})",
                  quoted(kBloomSplit))
            : std::string(byte_level);
    fmt::format_to(it, "  \"normalizer\": null,\n  \"pre_tokenizer\": {},\n", pre);
    fmt::format_to(it, "  \"post_processor\": {},\n  \"decoder\": {},\n", byte_level, byte_level);
    fmt::format_to(it,
                   "  \"model\": {{\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
                   "    \"unk_token\": null,\n    \"continuing_subword_prefix\": \"\",\n"
                   "    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
                   "    \"byte_fallback\": false,\n    \"vocab\": {{");
    for (size_t id = 0; id < m.tokens.size(); ++id) {
      fmt::format_to(it, "{}\n      {}: {}", id ? "," : "", quoted(m.name_of(id)), id);
    }
    fmt::format_to(it, "\n    }},\n    \"merges\": [");
    for (size_t rank = 0; rank < m.merges.size(); ++rank) {
      const auto [left, right] = m.merges[rank];
      fmt::format_to(it, "{}\n      {}", rank ? "," : "",
                     quoted(m.name_of(left) + " " + m.name_of(right)));
    }
    fmt::format_to(it, "\n    ]\n  }}\n}}\n");
  } catch (const Json::exception& e) {
    TURBINE_FAIL("{}: cannot write as JSON ({}); special tokens must be valid UTF-8", m.origin,
                 e.what());
  }
  return fmt::to_string(out);
}

void Tokenizer::save(const std::string& path) const {
  const std::string text = to_json();
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    TURBINE_CHECK(out, "cannot write {}: {}; check that its directory exists and is writable",
                  temporary, std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    TURBINE_CHECK(out, "writing {} failed: {}; is the disk full?", temporary, std::strerror(errno));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  TURBINE_CHECK(!error, "cannot rename {} to {}: {}", temporary, path, error.message());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  auto encode_text = [&](std::string_view part) {
    for (const std::string_view piece :
         m.bloom_split ? bloom_pretokenize(part) : gpt2_pretokenize(part))
      m.encode_piece(piece, ids);
  };
  if (m.special_texts.empty()) {
    encode_text(text);
  } else {
    split_at_specials(text, m.special_texts, encode_text,
                      [&](size_t k) { ids.push_back(m.special_ids[k]); });
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  const Impl& m = *impl_;
  const auto n = static_cast<int32_t>(m.tokens.size());
  size_t size = 0;
  for (const int32_t id : ids) {
    TURBINE_CHECK(id >= 0 && id < n,
                  "decode: token id {} is out of range: {} has {} tokens (ids 0..{}); were these "
                  "ids made with another tokenizer?",
                  id, m.origin, n, n - 1);
    size += m.tokens[id].size();
  }
  std::string text;
  text.reserve(size);
  for (const int32_t id : ids) text += m.tokens[id];
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->tokens.size());
}

std::optional<int32_t> Tokenizer::token_id(const std::string& token) const {
  const auto found = impl_->id_of_name.find(token);
  if (found == impl_->id_of_name.end()) return std::nullopt;
  return found->second;
}

std::optional<int32_t> Tokenizer::eos_id() const {
  if (auto id = token_id("<|endoftext|>")) return id;
  return token_id("</s>");
}

std::string Tokenizer::identity() const {
  return impl_->identity;
}

}  // namespace turbine::data
