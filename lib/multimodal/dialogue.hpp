// VisualChat's conversations (DeepSpeed-VisualChat, Yao et al. 2023): JSONL
// records of images and question/answer rounds, rendered with the paper's
// template and tokenized around the images' positions.
//
//   {"id": "...", "kind": "multi", "images": ["a.png", "b.png"],
//    "rounds": [{"question": "<image> <image> Which image shows a bag?",
//                "answer": "Image 2."}, ...]}
//
// Each `<image>` marker in a question stands for the conversation's next
// image; a round renders its images first, then the question and answer:
//
//   ### Image 1:\n<image>\n### Image 2:\n<image>\n### Question: Which ...?\n### Answer:
//   Image 2.<eos>
//
// and each <image> becomes image_tokens positions of that image's kind
// (ops::mmca_masks). Only the answers (and their end token) are targets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"

namespace turbine::multimodal {

inline constexpr const char* kImageMarker = "<image>";

struct Round {
  std::string question;  // with `<image>` markers for the images it shows
  std::string answer;
};

struct Conversation {
  std::string id, kind;             // kind: single, multi, multi-round, blend, or ""
  std::vector<std::string> images;  // paths, resolved against the JSONL file's folder
  std::vector<Round> rounds;
};

// Counts `<image>` markers in text.
int64_t count_markers(const std::string& text);

// Checks that the markers of all rounds match the images (naming the
// conversation), at most max_images.
void check_conversation(const Conversation& c, int64_t max_images, const std::string& where);

// Reads a JSONL file of conversations; errors name file and line.
std::vector<Conversation> load_conversations(const std::string& path, int64_t max_images);

// One conversation as model input: ids (image slots hold `pad`), each
// position's kind (ops::kTextToken or the image's number), next-token
// targets (-100 where nothing is learned), and per round the position where
// its answer starts (the tokens before it are that round's prompt).
struct TokenizedConversation {
  std::vector<int32_t> ids, kinds, targets;
  std::vector<int64_t> answer_starts, answer_ends;  // [start, end) of each answer + end token
  int64_t images = 0;
};

struct TemplateOptions {
  int64_t image_tokens = 16;  // positions per image
  int32_t end_token = 0;      // ends each answer (a target)
  int32_t pad = 0;            // the id at image positions (never looked up as text)
};

// `rounds` < 0: all; else only the first `rounds` rounds, and with
// open_answer the last one's answer is left out (a prompt to generate from).
TokenizedConversation tokenize_conversation(const Conversation& c, const data::Tokenizer& tokenizer,
                                            const TemplateOptions& options, int64_t rounds = -1,
                                            bool open_answer = false);

// The text of a round's prompt before its answer, for display: images as
// "<image>" with their headers.
std::string render_round(const Round& round, int64_t first_image);

// Answers compared as the evaluation does: lowercase, letters and digits
// only, single spaces.
std::string normalize_answer(const std::string& text);

}  // namespace turbine::multimodal
