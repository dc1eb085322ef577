// The pretrain job: the language-model task the loop runs, and the job's
// set-up around it.
#include "train/pretrain.hpp"

#include <omp.h>

#include <optional>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "data/loader.hpp"
#include "data/token_stats.hpp"
#include "data/tokenizer.hpp"
#include "efficiency/curriculum_sampler.hpp"
#include "infer/generate.hpp"
#include "seqpar/ulysses.hpp"

namespace turbine::train {

namespace {

// Next-token prediction on windows of a token data set, data-parallel:
// data-parallel rank d reads micro-batches [samples + d * micro *
// accumulation, ...) of the global order; curriculum learning picks each
// step's sequence length or difficulty, random-LTD each step's kept tokens.
// With sequence parallelism the P ranks of a group read the same
// micro-batches and each runs its slice of every sequence (seqpar/ulysses).
class LanguageModelTask final : public TrainTask {
 public:
  LanguageModelTask(const PretrainOptions& o, dist::Communicator& comm,
                    const seqpar::Layout& layout, dist::ProcessGroup* sequence_group,
                    nn::Bloom& model, const data::TokenDataset& dataset)
      : o_(o),
        comm_(comm),
        layout_(layout),
        sequence_group_(sequence_group),
        model_(model),
        dataset_(dataset),
        tokenizer_(data::Tokenizer::from_json(dataset.tokenizer_json(), dataset.path())),
        train_loader_(dataset, data::Split::train, o.seq_len, o.run.seed, o.shuffle),
        eval_loader_(dataset,
                     dataset.num_tokens(data::Split::valid) > o.seq_len ? data::Split::valid
                                                                        : data::Split::train,
                     o.seq_len, o.run.seed, false) {
    if (o.curriculum.enabled) curriculum_.emplace(o.curriculum, dataset, train_loader_);
  }

  const data::WindowLoader& train_loader() const { return train_loader_; }
  // Of the training tokens, in nats (rank 0, which writes the metrics): the
  // loss of the best model that ignores context.
  double unigram_entropy = NAN;

  double learning_rate(const LoopCounters& at) override {
    const double full_layer_tokens =
        double(o_.batch.global) * double(o_.seq_len) * double(o_.model.n_layer);
    return o_.schedule.by_layer_tokens
               ? o_.schedule.schedule.at_fractional_step(at.layer_tokens / full_layer_tokens)
               : o_.schedule.schedule.at(at.step);
  }

  void begin_step(const LoopCounters& at) override {
    // Curriculum: this step's difficulty and sequence length (DeepSpeed counts from 1).
    now_ = curriculum_ ? curriculum_->at(at.step + 1) : efficiency::CurriculumStep{};
    seq_now_ = curriculum_ ? now_.seq_len : o_.seq_len;
    nn::TokenDropping dropping = o_.random_ltd.dropping_at(at.step, o_.run.seed);
    dropping.kept = std::min(dropping.kept, seq_now_);
    model_.set_token_dropping(dropping);
    kept_ = o_.random_ltd.enabled ? dropping.kept : seq_now_;
  }

  Tensor micro_batch_loss(const LoopCounters& at, int64_t m) override {
    const int64_t micro = o_.batch.micro, accumulation = o_.batch.accumulation;
    const int64_t first = at.samples + (layout_.dp_rank * accumulation + m) * micro;
    const data::Batch batch =
        curriculum_ ? curriculum_->read(first, micro, now_) : train_loader_.read(first, micro);
    rows_per_micro_ = batch.ids.dim(0);  // seqlen_reshape cuts samples into more rows
    // Dropout streams follow the global micro-batch, not the rank.
    model_.set_dropout_step(uint64_t(at.step) * layout_.data_parallel * accumulation +
                            layout_.dp_rank * accumulation + m);
    if (layout_.sequence_parallel == 1) return model_.loss(batch.ids, batch.targets);
    // The engine averages gradients over all P x D ranks: P times the
    // group's share makes it the average over the data-parallel groups of
    // each whole batch's mean loss.
    return ag::scale(sequence_loss(batch), float(layout_.sequence_parallel));
  }

  // Sequence parallelism: this rank's share of the batch's mean loss (its
  // slice's summed loss over the whole batch's counted targets); the shares
  // of a group sum to the mean.
  Tensor sequence_loss(const data::Batch& batch) const {
    const seqpar::SequenceSlice slice =
        seqpar::slice_batch(batch, layout_.sp_rank, layout_.sequence_parallel);
    return model_.loss(slice.ids, slice.targets, std::max<int64_t>(slice.counted, 1));
  }

  dist::CommStats comm_stats() const override {
    return sequence_group_ ? sequence_group_->stats() : dist::CommStats{};
  }

  StepWork step_work(const LoopCounters& at) override {
    StepWork w;
    const int64_t rows = rows_per_micro_ * o_.batch.accumulation * layout_.data_parallel;
    w.samples = o_.batch.global;
    w.tokens = rows * seq_now_;
    w.flops =
        double(rows) * o_.model.train_flops_per_sequence(seq_now_, o_.random_ltd.layer_ids, kept_);
    w.layer_tokens = o_.random_ltd.layer_tokens(at.step, rows, seq_now_, o_.model.n_layer);
    const double full_flops = double(rows) * o_.model.train_flops_per_sequence(seq_now_, {}, 0);
    w.metrics = {{"flops_saved", 1.0 - w.flops / full_flops},
                 {"kept_tokens", kept_},
                 {"seq_len", seq_now_},
                 {"difficulty", now_.sample_difficulty},
                 {"unigram_entropy", unigram_entropy}};
    return w;
  }

  // Validation loss over the first `eval_batches x micro` windows of the
  // split, shared out among the data-parallel groups: the same windows and
  // the same figure for any world size.
  double evaluate() override {
    autograd::NoGradGuard no_grad;
    model_.set_training(false);
    const int64_t micro = o_.batch.micro;
    const int64_t total = std::min(o_.eval_batches * micro, eval_loader_.windows_per_epoch());
    const int64_t begin = total * layout_.dp_rank / layout_.data_parallel;
    const int64_t end = total * (layout_.dp_rank + 1) / layout_.data_parallel;
    double sum = 0;  // of per-window mean losses (a group's shares add up to them)
    for (int64_t first = begin; first < end; first += micro) {
      const int64_t count = std::min(micro, end - first);
      const data::Batch b = eval_loader_.read(first, count);
      const Tensor loss =
          layout_.sequence_parallel == 1 ? model_.loss(b.ids, b.targets) : sequence_loss(b);
      sum += loss.item() * double(count);
    }
    comm_.allreduce_sum(&sum, 1);
    model_.set_training(true);
    return sum / double(total);
  }

  std::string sample(int64_t step) override {
    infer::SamplingOptions s;
    s.max_new_tokens = o_.sample.max_new_tokens;
    s.temperature = o_.sample.temperature;
    s.top_k = o_.sample.top_k;
    s.context = o_.seq_len;
    s.seed = o_.run.seed + uint64_t(step);
    s.stop_token = tokenizer_.eos_id().value_or(-1);
    model_.set_training(false);
    const auto ids = infer::generate(model_, tokenizer_.encode(o_.sample.prompt), s);
    model_.set_training(true);
    return tokenizer_.decode(ids);
  }

  void save_state(StateMap& state) const override {
    state.set("data_identity", dataset_.tokenizer_identity());
    state.set_file("tokenizer.json", dataset_.tokenizer_json());  // for infer
  }
  void load_state(const StateMap& state) override {
    const std::string& trained_on = state.get_string("data_identity");
    if (trained_on != dataset_.tokenizer_identity())
      log::warn("the checkpoint was trained on data tokenized by {}, this data set uses {}",
                trained_on, dataset_.tokenizer_identity());
  }

 private:
  const PretrainOptions& o_;
  dist::Communicator& comm_;
  seqpar::Layout layout_;
  dist::ProcessGroup* sequence_group_;  // null without sequence parallelism
  nn::Bloom& model_;
  const data::TokenDataset& dataset_;
  data::Tokenizer tokenizer_;
  data::WindowLoader train_loader_, eval_loader_;
  std::optional<efficiency::CurriculumLoader> curriculum_;
  // This step's curriculum point, sequence length, kept tokens and rows per micro-batch.
  efficiency::CurriculumStep now_;
  int64_t seq_now_ = 0, kept_ = 0, rows_per_micro_ = 0;
};

void log_plan(const PretrainOptions& o, const nn::Bloom& model, const data::TokenDataset& dataset,
              const data::WindowLoader& loader, Engine& engine, Device device,
              const seqpar::Layout& layout) {
  const int world = layout.data_parallel * layout.sequence_parallel;
  const nn::BloomConfig& m = model.config();
  log::info("model: BLOOM {} layers, hidden {}, {} heads, vocab {}: {:.2f}M parameters", m.n_layer,
            m.hidden_size, m.n_head, m.vocab_size, m.parameter_count() / 1e6);
  log::info("data: {} ({} train tokens, {} windows of {}+1; {} valid tokens)", dataset.path(),
            dataset.num_tokens(data::Split::train), loader.windows_per_epoch(), o.seq_len,
            dataset.num_tokens(data::Split::valid));
  log::info(
      "batch: {} sequences = {} micro x {} accumulation x {} data-parallel ranks; {} "
      "threads per rank",
      o.batch.global, o.batch.micro, o.batch.accumulation, layout.data_parallel,
      omp_get_max_threads());
  if (layout.sequence_parallel > 1) {
    const int64_t p = layout.sequence_parallel;
    log::info(
        "sequence parallel (Ulysses): {} groups of {} ranks; each rank holds {} of every {}-token "
        "sequence and attends with {} of {} heads; all-to-all {:.2f} MB per layer and "
        "micro-batch each way",
        layout.data_parallel, p, (o.seq_len + p - 1) / p, o.seq_len, m.n_head / p, m.n_head,
        seqpar::ulysses_layer_bytes(o.batch.micro * ((o.seq_len + p - 1) / p * p), m.hidden_size,
                                    int(p), int(dtype_size(model.activation_dtype())))
                .forward /
            1e6);
  }
  if (o.memory.checkpointing.enabled)
    log::info("activation checkpointing: {} chunk(s) of blocks run again in backward{}",
              o.memory.checkpointing.chunks > 0 ? o.memory.checkpointing.chunks : m.n_layer,
              o.memory.checkpointing.offload_inputs && !device.is_cpu()
                  ? ", their inputs kept in host memory"
                  : "");
  if (o.memory.loss_tile_tokens > 0 && o.memory.loss_tile_tokens < o.batch.micro * o.seq_len)
    log::info(
        "tiled loss: the LM head and cross entropy run on {} tokens at a time ({:.2f} MB "
        "of logits)",
        o.memory.loss_tile_tokens,
        double(o.memory.loss_tile_tokens) * m.vocab_size *
            double(dtype_size(model.activation_dtype())) / 1e6);
  if (model.activation_dtype() != DType::f32)
    log::info(
        "activations: {} (what backward keeps, and the all-to-alls), f32 parameters and "
        "gradients",
        dtype_name(model.activation_dtype()));
  log_engine(engine, device, world);
}

}  // namespace

PretrainResult pretrain(const PretrainOptions& options, Job& job) {
  PretrainOptions o = options;
  dist::Communicator& comm = job.world();
  // Data and tokenizer; the model's vocabulary follows the data set's.
  const data::TokenDataset dataset = data::TokenDataset::open(o.data_path);
  if (o.model.vocab_size <= 0) o.model.vocab_size = dataset.vocab_size();
  TURBINE_CHECK(o.model.vocab_size == dataset.vocab_size(),
                "model.vocab_size {} does not match the data set {} (vocabulary {}): remove "
                "model.vocab_size to take the data set's, or prepare the data with the model's "
                "tokenizer",
                o.model.vocab_size, dataset.path(), dataset.vocab_size());
  const Device device = job.pick_device(o.run.device);  // before any output: it may refuse

  kernels::MathModeGuard math(backend_for(device), o.engine.precision.math);
  nn::Bloom model(o.model, o.run.seed, device);
  model.set_activation_checkpointing(o.memory.checkpointing);
  model.set_loss_tile_tokens(o.memory.loss_tile_tokens);
  model.set_activation_dtype(o.engine.precision.activation_dtype(device));
  // Sequence parallelism: the group of P consecutive ranks and its exchange.
  const seqpar::Layout layout = seqpar::Layout::of(comm.rank(), comm.size(), o.sequence_parallel);
  std::optional<dist::ProcessGroup> sequence_group;
  std::optional<seqpar::UlyssesExchange> exchange;
  if (layout.sequence_parallel > 1) {
    sequence_group.emplace(comm.split(layout.dp_rank, layout.sp_rank), device);
    exchange.emplace(*sequence_group);
    model.set_sequence_parallel(&*exchange);
  }
  // Every rank holds the whole model: the engine reduces gradients over all
  // of them (ZeRO shards over all of them too).
  Engine engine("model", comm, model.parameters(), o.engine);
  LanguageModelTask task(o, comm, layout, sequence_group ? &*sequence_group : nullptr, model,
                         dataset);
  Loop loop(comm, o.run, device, engine, o.resolved_config_yaml);
  loop.restore(task);
  log_plan(o, model, dataset, task.train_loader(), engine, device, layout);

  PretrainResult result;
  if (job.leader()) {
    result.unigram_entropy = data::unigram_entropy(dataset, data::Split::train);
    task.unigram_entropy = result.unigram_entropy;
    log::info(
        "unigram entropy of the training tokens: {:.4f} nats/token (the loss of the best "
        "model that ignores context)",
        result.unigram_entropy);
  }
  result.loop = loop.run(task);
  return result;
}

int report_pretrain(const PretrainOptions& options, const PretrainResult& result) {
  const LoopResult& r = result.loop;
  if (r.stopped_early) return kExitStoppedResumable;
  log::info(
      "done: {} steps, final train loss {:.4f}, validation loss {:.4f} (unigram entropy "
      "{:.4f}), {:.0f} tokens/s",
      r.steps, r.final_train_loss, r.final_val_loss, result.unigram_entropy, r.tokens_per_second);
  const std::string& out = options.run.output_dir;
  log::info(
      "metrics: {}/metrics.jsonl  checkpoints: {}/checkpoints  plot: tools/plot-metrics "
      "{}/metrics.jsonl",
      out, out, out);
  return 0;
}

}  // namespace turbine::train
