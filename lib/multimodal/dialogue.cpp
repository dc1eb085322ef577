// VisualChat's conversations: JSONL, the template, tokens (dialogue.hpp).
#include "multimodal/dialogue.hpp"

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::multimodal {

namespace fs = std::filesystem;

int64_t count_markers(const std::string& text) {
  int64_t n = 0;
  for (size_t at = text.find(kImageMarker); at != std::string::npos;
       at = text.find(kImageMarker, at + 1))
    ++n;
  return n;
}

void check_conversation(const Conversation& c, int64_t max_images, const std::string& where) {
  TURBINE_CHECK(!c.rounds.empty(), "{}: a conversation needs at least one round", where);
  int64_t markers = 0;
  for (const Round& r : c.rounds) markers += count_markers(r.question);
  TURBINE_CHECK(markers == int64_t(c.images.size()),
                "{}: {} <image> markers in the questions but {} images: each image needs one "
                "marker where it is shown",
                where, markers, c.images.size());
  TURBINE_CHECK(int64_t(c.images.size()) <= max_images,
                "{}: {} images, more than the model's max_images {}", where, c.images.size(),
                max_images);
}

std::vector<Conversation> load_conversations(const std::string& path, int64_t max_images) {
  std::ifstream in(path);
  TURBINE_CHECK(in.good(),
                "cannot read conversations '{}': make them with "
                "tools/make-visualchat-data or give data_path",
                path);
  const fs::path folder = fs::path(path).parent_path();
  std::vector<Conversation> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, number);
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      TURBINE_FAIL("{}: not JSON: {}", where, e.what());
    }
    Conversation c;
    try {
      c.id = row.value("id", fmt::format("line-{}", number));
      c.kind = row.value("kind", std::string());
      for (const auto& image : row.at("images")) {
        const fs::path p(image.get<std::string>());
        c.images.push_back((p.is_absolute() ? p : folder / p).string());
      }
      for (const auto& r : row.at("rounds"))
        c.rounds.push_back(
            {r.at("question").get<std::string>(), r.at("answer").get<std::string>()});
    } catch (const nlohmann::json::exception& e) {
      TURBINE_FAIL(
          "{}: expected {{\"images\": [paths], \"rounds\": [{{\"question\", "
          "\"answer\"}}]}}: {}",
          where, e.what());
    }
    check_conversation(c, max_images, where);
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

// The question without its markers, spaces trimmed.
std::string question_text(const std::string& question) {
  std::string text;
  size_t from = 0;
  for (size_t at = question.find(kImageMarker); at != std::string::npos;
       at = question.find(kImageMarker, from)) {
    text += question.substr(from, at - from);
    from = at + std::string(kImageMarker).size();
  }
  text += question.substr(from);
  const size_t first = text.find_first_not_of(" \t\n");
  const size_t last = text.find_last_not_of(" \t\n");
  return first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
}

}  // namespace

std::string render_round(const Round& round, int64_t first_image) {
  std::string text;
  for (int64_t i = 0; i < count_markers(round.question); ++i)
    text += fmt::format("### Image {}:\n{}\n", first_image + i, kImageMarker);
  return text + "### Question: " + question_text(round.question) + "\n### Answer:";
}

TokenizedConversation tokenize_conversation(const Conversation& c, const data::Tokenizer& tokenizer,
                                            const TemplateOptions& options, int64_t rounds,
                                            bool open_answer) {
  TokenizedConversation t;
  const auto text = [&](const std::string& s, bool target) {
    for (const int32_t id : tokenizer.encode(s)) {
      t.ids.push_back(id);
      t.kinds.push_back(ops::kTextToken);
      t.targets.push_back(target ? id : -100);
    }
  };
  const int64_t count =
      rounds < 0 ? int64_t(c.rounds.size()) : std::min<int64_t>(rounds, int64_t(c.rounds.size()));
  for (int64_t r = 0; r < count; ++r) {
    const Round& round = c.rounds[size_t(r)];
    for (int64_t i = 0; i < count_markers(round.question); ++i) {
      ++t.images;
      text(fmt::format("### Image {}:\n", t.images), false);
      for (int64_t k = 0; k < options.image_tokens; ++k) {
        t.ids.push_back(options.pad);
        t.kinds.push_back(int32_t(t.images));
        t.targets.push_back(-100);
      }
      text("\n", false);
    }
    text("### Question: " + question_text(round.question) + "\n### Answer:", false);
    t.answer_starts.push_back(int64_t(t.ids.size()));
    if (open_answer && r == count - 1) {
      t.answer_ends.push_back(int64_t(t.ids.size()));
      break;
    }
    text(" " + round.answer, true);
    t.ids.push_back(options.end_token);
    t.kinds.push_back(ops::kTextToken);
    t.targets.push_back(options.end_token);
    t.answer_ends.push_back(int64_t(t.ids.size()));
  }
  // Next-token targets: position p predicts token p + 1.
  std::vector<int32_t> next(t.targets.size(), -100);
  for (size_t p = 0; p + 1 < t.targets.size(); ++p) next[p] = t.targets[p + 1];
  t.targets = std::move(next);
  return t;
}

std::string normalize_answer(const std::string& text) {
  std::string out;
  bool space = false;
  for (const char ch : text) {
    const unsigned char u = static_cast<unsigned char>(ch);
    if (std::isalnum(u)) {
      if (space && !out.empty()) out += ' ';
      out += char(std::tolower(u));
      space = false;
    } else if (std::isspace(u) || ch == '-' || ch == '/') {
      space = true;
    }
  }
  return out;
}

}  // namespace turbine::multimodal
