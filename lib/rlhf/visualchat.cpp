// VisualChat's training (DeepSpeed-VisualChat) as rlhf's sft step with
// model.type: visualchat: conversations about images (multimodal/dialogue)
// through the frozen encoder, the trainable projection and lang_embed, and
// the frozen BLOOM (multimodal/model), on the shared training loop. At the
// end, the evaluation conversations' answers are generated and scored by
// kind (answers.jsonl, answers.json).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "rlhf/steps.hpp"
#include "train/checkpoint.hpp"

namespace turbine::rlhf {

namespace {

namespace fs = std::filesystem;
using multimodal::Conversation;
using multimodal::TokenizedConversation;

// Conversations and their tokens; those longer than max_seq_len left out.
struct DialogueSet {
  std::vector<Conversation> conversations;
  std::vector<TokenizedConversation> tokens;
  int64_t dropped = 0;
};

DialogueSet load_dialogues(const std::string& path, const multimodal::VisualChatModel& model,
                           const data::Tokenizer& tokenizer, int32_t eos, int64_t max_seq_len) {
  DialogueSet set;
  const multimodal::TemplateOptions options{model.image_tokens(), eos, eos};
  for (Conversation& c : multimodal::load_conversations(path, model.options().max_images)) {
    TokenizedConversation t = multimodal::tokenize_conversation(c, tokenizer, options);
    if (int64_t(t.ids.size()) > max_seq_len) {
      ++set.dropped;
      continue;
    }
    set.conversations.push_back(std::move(c));
    set.tokens.push_back(std::move(t));
  }
  return set;
}

class VisualChatTask final : public train::TrainTask {
 public:
  VisualChatTask(const StepOptions& o, dist::Communicator& comm, multimodal::VisualChatModel& model,
                 const data::Tokenizer& tokenizer, int32_t eos, DialogueSet train, DialogueSet eval)
      : o_(o),
        comm_(comm),
        model_(model),
        tokenizer_(tokenizer),
        eos_(eos),
        train_(std::move(train)),
        eval_(std::move(eval)),
        order_(int64_t(train_.tokens.size()), o.run.seed, true, 0x5f7u) {}

  double learning_rate(const train::LoopCounters& at) override {
    return o_.schedule.schedule.at(at.step);
  }

  Tensor micro_batch_loss(const train::LoopCounters& at, int64_t m) override {
    const multimodal::Batch b = batch_of(train_, rank_rows(order_, at.samples, o_.batch.micro,
                                                           o_.batch.accumulation, comm_.rank(), m));
    // The micro-batch's global index (the same under any number of ranks).
    model_.lm().set_dropout_step(uint64_t(at.step) *
                                     uint64_t(comm_.size() * o_.batch.accumulation) +
                                 uint64_t(comm_.rank() * o_.batch.accumulation + m));
    return model_.loss(b);
  }

  train::StepWork step_work(const train::LoopCounters& at) override {
    train::StepWork w;
    w.samples = o_.batch.global;
    for (int r = 0; r < comm_.size(); ++r)
      for (int64_t m = 0; m < o_.batch.accumulation; ++m)
        for (const int64_t i :
             rank_rows(order_, at.samples, o_.batch.micro, o_.batch.accumulation, r, m)) {
          const int64_t n = int64_t(train_.tokens[size_t(i)].ids.size());
          w.tokens += n;
          w.flops += model_.lm().config().train_flops_per_sequence(n, {}, 0);
        }
    return w;
  }

  // The mean answer-token loss of the first eval.batches x micro evaluation
  // conversations.
  double evaluate() override {
    if (eval_.tokens.empty()) return NAN;
    const autograd::NoGradGuard no_grad;
    model_.lm().set_training(false);
    const int64_t total =
        std::min<int64_t>(o_.eval_batches * o_.batch.micro, int64_t(eval_.tokens.size()));
    const int64_t begin = total * comm_.rank() / comm_.size(),
                  end = total * (comm_.rank() + 1) / comm_.size();
    double sums[2] = {0, 0};
    for (int64_t first = begin; first < end; first += o_.batch.micro) {
      std::vector<int64_t> rows;
      for (int64_t i = first; i < std::min(end, first + o_.batch.micro); ++i) rows.push_back(i);
      const multimodal::Batch b = batch_of(eval_, rows);
      if (b.counted == 0) continue;
      sums[0] += model_.loss(b).item() * double(b.counted);
      sums[1] += double(b.counted);
    }
    comm_.allreduce_sum(sums, 2);
    model_.lm().set_training(true);
    return sums[1] > 0 ? sums[0] / sums[1] : NAN;
  }

  // The first evaluation conversation's first question, answered greedily.
  std::string sample(int64_t /*step*/) override {
    if (eval_.conversations.empty()) return {};
    const Conversation& c = eval_.conversations.front();
    const auto [question, answer] = answer_round(c, 0);
    return fmt::format("{} ({} image(s)) -> {} [expected: {}]", c.rounds[0].question,
                       c.images.size(), answer, c.rounds[0].answer);
  }

  void save_state(train::StateMap& state) const override {
    save_common_state(state, tokenizer_, o_.lora);
    state.set_file("encoder.json", train::encoder_spec_json(model_.encoder_spec()));
  }

  // Generates every round's answer of the first `count` evaluation
  // conversations (shared among the ranks) and scores them by kind: single
  // (single-image conversations and the first round of multi-round ones),
  // multi (several images, one round), multi-round (later rounds, which
  // refer to earlier images). Rank 0 writes answers.jsonl and answers.json.
  nlohmann::ordered_json score_answers(int64_t count, const std::string& dir) {
    count = std::min<int64_t>(count, int64_t(eval_.conversations.size()));
    const int64_t begin = count * comm_.rank() / comm_.size(),
                  end = count * (comm_.rank() + 1) / comm_.size();
    const std::vector<std::string> kinds = {"single", "multi", "multi-round", "blend", "other"};
    std::vector<double> sums(kinds.size() * 2, 0.0);  // correct, asked
    std::string lines;
    model_.lm().set_training(false);
    for (int64_t i = begin; i < end; ++i) {
      const Conversation& c = eval_.conversations[size_t(i)];
      for (int64_t r = 0; r < int64_t(c.rounds.size()); ++r) {
        const std::string got = answer_round(c, r).second;
        const bool correct = multimodal::normalize_answer(got) ==
                             multimodal::normalize_answer(c.rounds[size_t(r)].answer);
        std::string kind = c.kind == "multi-round" && r == 0 ? "single" : c.kind;
        size_t k = size_t(std::find(kinds.begin(), kinds.end(), kind) - kinds.begin());
        if (k == kinds.size()) k = kinds.size() - 1;
        sums[2 * k] += correct;
        sums[2 * k + 1] += 1;
        lines += nlohmann::ordered_json{{"id", c.id},
                                        {"kind", kinds[k]},
                                        {"round", r + 1},
                                        {"question", c.rounds[size_t(r)].question},
                                        {"expected", c.rounds[size_t(r)].answer},
                                        {"answer", got},
                                        {"correct", correct}}
                     .dump() +
                 "\n";
      }
    }
    model_.lm().set_training(true);
    comm_.allreduce_sum(sums.data(), int(sums.size()));
    std::string all;
    for (const std::string& part : comm_.allgather_strings(lines)) all += part;
    nlohmann::ordered_json summary;
    double correct = 0, asked = 0;
    for (size_t k = 0; k < kinds.size(); ++k) {
      if (sums[2 * k + 1] == 0) continue;
      summary[kinds[k]] = {{"accuracy", sums[2 * k] / sums[2 * k + 1]},
                           {"questions", int64_t(sums[2 * k + 1])}};
      correct += sums[2 * k];
      asked += sums[2 * k + 1];
    }
    summary["overall"] = {{"accuracy", asked > 0 ? correct / asked : NAN},
                          {"questions", int64_t(asked)}};
    summary["attention"] = model_.options().mmca ? "mmca" : "causal";
    if (comm_.rank() == 0) {
      const auto write = [](const fs::path& path, const std::string& text) {
        write_file_atomically(path.string(), [&](const std::string& temporary) {
          std::ofstream out(temporary);
          out << text;
          TURBINE_CHECK(out.good(), "cannot write '{}'", temporary);
        });
      };
      write(fs::path(dir) / "answers.jsonl", all);
      write(fs::path(dir) / "answers.json", summary.dump(2) + "\n");
    }
    return summary;
  }

 private:
  multimodal::Batch batch_of(const DialogueSet& set, const std::vector<int64_t>& rows) {
    std::vector<const TokenizedConversation*> tokens;
    std::vector<const Conversation*> conversations;
    for (const int64_t i : rows) {
      tokens.push_back(&set.tokens[size_t(i)]);
      conversations.push_back(&set.conversations[size_t(i)]);
    }
    return model_.make_batch(tokens, conversations, eos_);
  }

  // Round r's prompt (the rounds before it with their true answers) and the
  // model's greedy answer to it.
  std::pair<std::string, std::string> answer_round(const Conversation& c, int64_t r) {
    const multimodal::TemplateOptions options{model_.image_tokens(), eos_, eos_};
    const TokenizedConversation prompt =
        multimodal::tokenize_conversation(c, tokenizer_, options, r + 1, true);
    const Tensor images =
        model_.load_images(std::span<const std::string>(c.images).first(size_t(prompt.images)));
    const std::vector<int32_t> answer = model_.generate(prompt, images, o_.answer_tokens, eos_);
    return {multimodal::render_round(c.rounds[size_t(r)], 1), tokenizer_.decode(answer)};
  }

  const StepOptions& o_;
  dist::Communicator& comm_;
  multimodal::VisualChatModel& model_;
  const data::Tokenizer& tokenizer_;
  int32_t eos_;
  DialogueSet train_, eval_;
  data::EpochOrder order_;
};

}  // namespace

StepResult run_visualchat_sft(const StepOptions& options, train::Job& job) {
  StepOptions o = options;
  dist::Communicator& comm = job.world();
  const Device device = job.pick_device(o.run.device);
  kernels::MathModeGuard math(backend_for(device), o.engine.precision.math);
  StartingModel start = load_starting_model(o.model_path, device);
  const int32_t eos = end_token_id(start.tokenizer, o.tokens);
  set_memory(start.model, o);
  multimodal::VisualChatModel model(std::move(start.model), o.visual, o.run.seed, device);
  if (o.lora.dim > 0) {
    apply_lora(model.lm(), o.lora, o.run.seed, "the language model");
    // Only the adapters of the language model train (its weights stay frozen).
    model.lm().set_trainable(
        false, [](const std::string& name) { return name.find("lora") == std::string::npos; });
    model.list_parameters();
  }
  const std::string train_path = (fs::path(o.data_path) / "train.jsonl").string();
  const std::string eval_path = (fs::path(o.data_path) / "eval.jsonl").string();
  DialogueSet train = load_dialogues(train_path, model, start.tokenizer, eos, o.tokens.max_seq_len);
  DialogueSet eval = load_dialogues(eval_path, model, start.tokenizer, eos, o.tokens.max_seq_len);
  TURBINE_CHECK(!train.tokens.empty(),
                "{}: no conversation fits max_seq_len {} ({} left out): raise max_seq_len",
                train_path, o.tokens.max_seq_len, train.dropped);
  if (job.leader()) {
    for (const auto& [set, path] : {std::pair{&train, &train_path}, {&eval, &eval_path}})
      if (set->dropped > 0)
        log::warn("{}: {} conversations longer than max_seq_len {} left out", *path, set->dropped,
                  o.tokens.max_seq_len);
    int64_t trainable = 0, total = 0;
    for (const nn::Parameter& p : model.parameters()) {
      total += p.tensor.numel();
      if (p.trainable) trainable += p.tensor.numel();
    }
    log::info(
        "visualchat: {} conversations for training, {} for evaluation; {} image tokens per "
        "image, {} projection, {} attention; {:.3f}M of {:.3f}M parameters train (projection "
        "and input embeddings{})",
        train.tokens.size(), eval.tokens.size(), model.image_tokens(), o.visual.projection,
        o.visual.mmca ? "MMCA" : "causal", double(trainable) / 1e6, double(total) / 1e6,
        o.lora.dim > 0 ? ", LoRA adapters" : "");
  }
  if (o.num_train_epochs > 0)
    o.run.train_steps = std::max<int64_t>(
        1,
        (o.num_train_epochs * int64_t(train.tokens.size()) + o.batch.global - 1) / o.batch.global);
  train::Engine engine("model", comm, model.parameters(), o.engine);
  VisualChatTask task(o, comm, model, start.tokenizer, eos, std::move(train), std::move(eval));
  train::Loop loop(comm, o.run, device, engine, checkpoint_config(o, model.lm().config()));
  loop.restore(task);
  train::log_engine(engine, device, comm.size());
  StepResult result = finish_step(o, loop, task, comm);
  if (result.exit_status != 0 || o.answer_conversations == 0) return result;
  const nlohmann::ordered_json scores =
      task.score_answers(o.answer_conversations, o.run.output_dir);
  if (job.leader()) log::info("visualchat answers: {} (answers.jsonl)", scores.dump());
  return result;
}

}  // namespace turbine::rlhf
