// The serving engine: continuous batching over the paged KV cache
// (infer/engine.hpp).
#include "infer/engine.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"

namespace turbine::infer {

using Clock = std::chrono::steady_clock;

namespace {
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

int64_t pool_blocks(const nn::Bloom& model, const ServeOptions& options,
                    dist::ProcessGroup* tensor_parallel) {
  const int64_t block =
      nn::PagedKvCache::block_bytes(model.config(), options.block_size, model.heads());
  double bytes = options.kv_cache_mb * 1048576.0;
  if (bytes == 0) {
    bytes = options.kv_cache_fraction * double(backend_for(model.device()).available_bytes());
    // Host memory is shared by the node's ranks; a GPU is each rank's own.
    if (tensor_parallel && model.device().is_cpu())
      bytes /= double(tensor_parallel->host().node_local().size());
  }
  if (tensor_parallel) {       // one pool size on every rank: the leader's block ids index them all
    double negative = -bytes;  // measured on every rank before any pool is allocated
    tensor_parallel->host().allreduce_max(&negative, 1);
    bytes = -negative;
  }
  const int64_t blocks = int64_t(bytes / double(block));
  TURBINE_CHECK(blocks >= 1,
                "the KV block pool ({:.1f} MiB) holds no block of {} positions ({:.2f} MiB): "
                "raise serve.kv_cache_mb",
                bytes / 1048576.0, options.block_size, double(block) / 1048576.0);
  return blocks;
}

std::vector<std::pair<int32_t, double>> top_logprobs(const float* logits, int64_t vocab, int n) {
  const double top = *std::max_element(logits, logits + vocab);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - top);
  const double log_z = top + std::log(z);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = std::min<int64_t>(n, vocab);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<std::pair<int32_t, double>> out;
  for (int64_t i = 0; i < k; ++i)
    out.emplace_back(order[size_t(i)], double(logits[order[size_t(i)]]) - log_z);
  return out;
}

// ---- Sequence

SequenceUpdate Sequence::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, timeout, [&] { return !pending_.empty(); });
  SequenceUpdate out = std::move(pending_);
  pending_ = SequenceUpdate();
  return out;
}

void Sequence::publish(const std::string& text, const GeneratedToken* token,
                       const char* finish_reason) {
  {
    std::lock_guard lock(mutex_);
    pending_.text += text;
    if (token) pending_.tokens.push_back(*token);
    if (finish_reason) {
      pending_.finished = true;
      pending_.finish_reason = finish_reason;
    }
  }
  ready_.notify_all();
}

// ---- Engine

struct Engine::Running {
  Running(std::shared_ptr<Sequence> s, const data::Tokenizer& tokenizer, int32_t eos)
      : seq(std::move(s)),
        history(seq->request().prompt),
        text(tokenizer, seq->request().stop, eos),
        submitted(Clock::now()) {}
  const EngineRequest& request() const { return seq->request(); }
  int64_t prompt_size() const { return int64_t(request().prompt.size()); }
  bool decoding() const { return cached >= prompt_size(); }

  std::shared_ptr<Sequence> seq;
  std::vector<int32_t> table;    // its KV blocks
  std::vector<int32_t> history;  // prompt + generated
  int64_t cached = 0;            // positions in the cache
  int64_t generated = 0;
  TextStream text;
  Clock::time_point submitted, last_token;
};

// One step as every rank runs it. The leader also keeps which running
// sequence each entry is.
struct Engine::Plan {
  enum Command : int32_t { step = 0, exit = 1 };
  int32_t command = step;
  std::vector<std::vector<int32_t>> tables;
  std::vector<nn::PagedKvCache::StepSequence> sequences;  // tables point into `tables`
  std::vector<int32_t> ids;
  std::vector<Running*> who;  // leader only: the sequences, in step order

  void add(const std::vector<int32_t>& table, int64_t cached, int64_t tokens, bool logits) {
    tables.push_back(table);
    sequences.push_back({nullptr, cached, tokens, logits});
  }
  void link() {
    for (size_t i = 0; i < sequences.size(); ++i) sequences[i].table = &tables[i];
  }
  std::vector<int32_t> pack() const {
    std::vector<int32_t> out = {command, int32_t(sequences.size()), int32_t(ids.size())};
    for (size_t i = 0; i < sequences.size(); ++i) {
      const auto& s = sequences[i];
      out.insert(out.end(), {int32_t(s.cached), int32_t(s.tokens), int32_t(s.wants_logits),
                             int32_t(tables[i].size())});
      out.insert(out.end(), tables[i].begin(), tables[i].end());
    }
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  static Plan unpack(const std::vector<int32_t>& in) {
    Plan p;
    p.command = in.at(0);
    const int32_t count = in.at(1), tokens = in.at(2);
    size_t at = 3;
    for (int32_t i = 0; i < count; ++i) {
      const int32_t cached = in.at(at), n = in.at(at + 1), logits = in.at(at + 2),
                    blocks = in.at(at + 3);
      at += 4;
      p.add(std::vector<int32_t>(in.begin() + long(at), in.begin() + long(at) + blocks), cached, n,
            logits != 0);
      at += size_t(blocks);
    }
    p.ids.assign(in.begin() + long(at), in.begin() + long(at) + tokens);
    p.link();
    return p;
  }
};

Engine::Engine(const LoadedModel& loaded, const ServeOptions& options, int64_t context,
               Metrics* metrics)
    : loaded_(loaded),
      decoder_(loaded.decoder()),
      options_(options),
      context_(context),
      metrics_(metrics),
      cache_(decoder_.new_paged_cache(
          pool_blocks(loaded.model, options, loaded.tensor_parallel.get()), options.block_size)),
      eos_(loaded.tokenizer.eos_id().value_or(-1)) {
  stats_.blocks_total = cache_.num_blocks();
  if (metrics_) {
    Metrics& m = *metrics_;
    m.gauge("turbine_queue_length", "requests waiting for room in the running batch");
    m.gauge("turbine_running_sequences", "sequences in the running batch");
    m.gauge("turbine_kv_blocks_used", "KV cache blocks held by sequences");
    m.gauge("turbine_kv_blocks_free", "KV cache blocks free");
    m.counter("turbine_prompt_tokens_total", "prompt tokens prefilled");
    m.counter("turbine_generation_tokens_total", "tokens generated");
    m.gauge("turbine_generation_tokens_per_second", "tokens generated per second, last interval");
    m.counter("turbine_engine_steps_total", "engine steps run");
    m.histogram("turbine_time_to_first_token_seconds",
                "from a request's arrival to its first generated token", latency_buckets());
    m.histogram("turbine_time_per_output_token_seconds",
                "between consecutive generated tokens of a sequence", latency_buckets());
    m.counter("turbine_sequences_finished_total", "sequences that left the batch, by reason");
    m.counter("turbine_requests_waited_for_blocks_total",
              "requests that waited in the queue for free KV blocks");
    for (const char* counter :
         {"turbine_prompt_tokens_total", "turbine_generation_tokens_total",
          "turbine_engine_steps_total", "turbine_requests_waited_for_blocks_total"})
      m.add(counter, 0);  // listed from the start
    m.set("turbine_generation_tokens_per_second", 0);
    update_gauges();
  }
  log::info(
      "KV cache: {} blocks of {} positions, {:.1f} MiB ({} positions; one sequence at "
      "most {})",
      cache_.num_blocks(), cache_.block_size(), cache_.nbytes() / 1048576.0,
      cache_.num_blocks() * cache_.block_size(), max_sequence());
}

Engine::~Engine() = default;

bool Engine::leader() const {
  return loaded_.tensor_parallel == nullptr || loaded_.tensor_parallel->rank() == 0;
}

int64_t Engine::max_sequence() const {
  return std::min(context_, cache_.num_blocks() * cache_.block_size());
}

std::shared_ptr<Sequence> Engine::submit(EngineRequest request, Refusal* why) {
  TURBINE_CHECK(
      !request.prompt.empty() &&
          int64_t(request.prompt.size()) + request.sampling.max_new_tokens <= max_sequence(),
      "Engine::submit: a request of {} + {} tokens (the server checks lengths first)",
      request.prompt.size(), request.sampling.max_new_tokens);
  std::lock_guard lock(mutex_);
  if (draining_ || stopping_) {
    *why = Refusal::draining;
    return nullptr;
  }
  if (int64_t(queue_.size()) >= options_.max_queued) {
    *why = Refusal::queue_full;
    return nullptr;
  }
  auto seq = std::make_shared<Sequence>(next_id_++, std::move(request));
  queue_.push_back(seq);
  *why = Refusal::none;
  work_.notify_one();
  return seq;
}

void Engine::stop() {
  stopping_ = true;
  work_.notify_one();
}

Engine::Stats Engine::stats() const {
  std::lock_guard lock(mutex_);
  Stats s = stats_;
  s.queued = int64_t(queue_.size());
  return s;
}

int64_t Engine::cancel_queued() {
  std::deque<std::shared_ptr<Sequence>> waiting;
  {
    std::lock_guard lock(mutex_);
    draining_ = true;
    waiting.swap(queue_);
  }
  for (const auto& seq : waiting) seq->publish("", nullptr, "cancelled");
  return int64_t(waiting.size());
}

void Engine::run() {
  if (!leader()) return follow();
  try {
    lead();
  } catch (...) {
    // A failed step (out of memory, say) ends the server: its requests end
    // too, so the threads that answer them return instead of waiting.
    cancel_queued();
    for (const auto& r : running_) r->seq->publish("", nullptr, "cancelled");
    throw;
  }
}

void Engine::lead() {
  const autograd::NoGradGuard inference;
  Clock::time_point deadline{};
  for (;;) {
    if ((stop_requested() || stopping_) && !draining_) {
      deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(options_.drain_seconds));
      const int64_t cancelled = cancel_queued();
      log::info("draining: {} running requests get {:.0f} s to finish, {} queued ones cancelled",
                running_.size(), options_.drain_seconds, cancelled);
    }
    drop_cancelled();
    if (draining_ && (running_.empty() || Clock::now() >= deadline)) {
      if (!running_.empty()) log::warn("drain: cancelling {} unfinished requests", running_.size());
      while (!running_.empty()) finish(*running_.front(), "cancelled");
      break;
    }
    Plan plan = schedule();
    if (plan.sequences.empty()) {
      update_gauges();
      const Stats s = stats();
      if (s.prompt_tokens == logged_.prompt_tokens && s.finished == logged_.finished)
        logged_at_ = Clock::now();  // rates count from the end of an idle spell
      std::unique_lock lock(mutex_);
      work_.wait_for(lock, std::chrono::milliseconds(20),
                     [&] { return !queue_.empty() || stopping_; });
      continue;
    }
    const std::vector<float> logits = execute(plan);
    sample(plan, logits);
    update_gauges();
    log_progress();
  }
  if (loaded_.tensor_parallel) {  // the followers leave their loop
    Plan exit;
    exit.command = Plan::exit;
    execute(exit);
  }
  update_gauges();
}

void Engine::follow() {
  const autograd::NoGradGuard inference;
  for (;;) {
    const Plan none;
    const std::vector<float> logits = execute(none);          // receives the leader's plan
    if (logits.size() == 1 && std::isnan(logits[0])) return;  // the exit plan
  }
}

Engine::Plan Engine::schedule() {
  Plan plan;
  int64_t budget = options_.step_tokens;
  // 1. One token for every decoding sequence.
  for (const auto& r : running_) {
    if (!r->decoding() || budget == 0) continue;
    plan.add(r->table, r->cached, 1, true);
    plan.ids.push_back(r->history.back());
    plan.who.push_back(r.get());
    --budget;
  }
  // 2. Prompt chunks, oldest first; 3. admissions while there is room.
  const auto prefill = [&](Running& r) {
    const int64_t n = std::min(budget, r.prompt_size() - r.cached);
    if (n <= 0) return;
    plan.add(r.table, r.cached, n, r.cached + n == r.prompt_size());
    plan.ids.insert(plan.ids.end(), r.request().prompt.begin() + r.cached,
                    r.request().prompt.begin() + r.cached + n);
    plan.who.push_back(&r);
    budget -= n;
  };
  for (const auto& r : running_)
    if (!r->decoding()) prefill(*r);
  while (!draining_ && budget > 0 && int64_t(running_.size()) < options_.max_running) {
    std::shared_ptr<Sequence> seq;
    {
      std::lock_guard lock(mutex_);
      while (!queue_.empty() && queue_.front()->cancelled()) {
        queue_.front()->publish("", nullptr, "cancelled");
        queue_.pop_front();
      }
      if (queue_.empty()) break;
      seq = queue_.front();
      const int64_t positions =
          int64_t(seq->request().prompt.size()) + seq->request().sampling.max_new_tokens;
      std::vector<int32_t> table;
      if (!cache_.allocate(cache_.blocks_for(positions), table)) {  // wait for blocks
        if (metrics_ && seq->id() != waiting_id_)
          metrics_->add("turbine_requests_waited_for_blocks_total", 1);
        waiting_id_ = seq->id();
        break;
      }
      queue_.pop_front();
      running_.push_back(std::make_unique<Running>(seq, loaded_.tokenizer, eos_));
      running_.back()->table = std::move(table);
    }
    prefill(*running_.back());
  }
  plan.link();
  return plan;
}

std::vector<float> Engine::execute(const Plan& leader_plan) {
  const Plan* plan = &leader_plan;
  Plan received;
  if (loaded_.tensor_parallel) {  // the leader's plan to every rank
    dist::Communicator& comm = loaded_.tensor_parallel->host();
    std::vector<int32_t> packed = leader() ? leader_plan.pack() : std::vector<int32_t>();
    int64_t size = int64_t(packed.size());
    comm.broadcast_idle(&size, sizeof(size), 0);  // the others sleep while the server idles
    packed.resize(size_t(size));
    comm.broadcast(packed.data(), size * int64_t(sizeof(int32_t)), 0);
    if (!leader()) {
      received = Plan::unpack(packed);
      plan = &received;
    }
  }
  if (plan->command == Plan::exit) return {std::nanf("")};
  cache_.begin(plan->sequences);
  const Tensor logits = decoder_.decode_paged(
      Tensor::from_vector<int32_t>({1, int64_t(plan->ids.size())}, plan->ids), cache_);
  return logits.to_vector<float>();
}

void Engine::sample(const Plan& plan, const std::vector<float>& logits) {
  const int64_t vocab = loaded_.model.config().vocab_size;
  const Clock::time_point now = Clock::now();
  int64_t prompt_tokens = 0, generated = 0;
  size_t row = 0;
  std::vector<std::pair<Running*, const char*>> finished;
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    Running& r = *plan.who[i];
    const auto& step = plan.sequences[i];
    if (!r.decoding()) prompt_tokens += step.tokens;
    r.cached += step.tokens;
    if (!step.wants_logits) continue;
    const float* row_logits = logits.data() + int64_t(row++) * vocab;
    const EngineRequest& q = r.request();
    GeneratedToken token;
    token.id = sample_token(row_logits, vocab, q.sampling, r.history, uint64_t(r.generated),
                            q.top_logprobs >= 0 ? &token.logprob : nullptr);
    if (q.top_logprobs > 0) token.top = top_logprobs(row_logits, vocab, q.top_logprobs);
    r.history.push_back(token.id);
    ++r.generated;
    ++generated;
    if (metrics_) {
      if (r.generated == 1)
        metrics_->observe("turbine_time_to_first_token_seconds", seconds_between(r.submitted, now));
      else
        metrics_->observe("turbine_time_per_output_token_seconds",
                          seconds_between(r.last_token, now));
    }
    r.last_token = now;
    r.seq->publish(r.text.push(token.id), &token, nullptr);
    if (r.text.stopped())
      finished.emplace_back(&r, "stop");
    else if (r.generated >= q.sampling.max_new_tokens)
      finished.emplace_back(&r, "length");
  }
  if (metrics_) {
    metrics_->add("turbine_prompt_tokens_total", double(prompt_tokens));
    metrics_->add("turbine_generation_tokens_total", double(generated));
    metrics_->add("turbine_engine_steps_total", 1);
  }
  for (const auto& [r, reason] : finished) finish(*r, reason);
  std::lock_guard lock(mutex_);
  ++stats_.steps;
  stats_.prompt_tokens += prompt_tokens;
  stats_.generated_tokens += generated;
}

void Engine::finish(Running& r, const char* reason) {
  r.seq->publish(r.text.finish(), nullptr, reason);
  cache_.release(r.table);
  {
    std::lock_guard lock(mutex_);
    ++stats_.finished;
  }
  if (metrics_)
    metrics_->add("turbine_sequences_finished_total", 1, fmt::format("reason=\"{}\"", reason));
  std::erase_if(running_, [&](const std::unique_ptr<Running>& p) { return p.get() == &r; });
}

void Engine::drop_cancelled() {
  std::vector<Running*> gone;
  for (const auto& r : running_)
    if (r->seq->cancelled()) gone.push_back(r.get());
  for (Running* r : gone) finish(*r, "cancelled");
}

void Engine::log_progress() {
  const Clock::time_point now = Clock::now();
  const double elapsed = seconds_between(logged_at_, now);
  if (elapsed < 10) return;
  const Stats s = stats();
  log::info(
      "serve: {:.1f} prompt tokens/s, {:.1f} generated tokens/s, {} requests finished; {} "
      "running, {} queued; KV blocks {}/{} used ({:.0f}%)",
      double(s.prompt_tokens - logged_.prompt_tokens) / elapsed,
      double(s.generated_tokens - logged_.generated_tokens) / elapsed,
      s.finished - logged_.finished, s.running, s.queued, s.blocks_used, s.blocks_total,
      100.0 * double(s.blocks_used) / double(std::max<int64_t>(1, s.blocks_total)));
  logged_at_ = now;
  logged_ = s;
}

void Engine::update_gauges() {
  std::lock_guard lock(mutex_);
  stats_.running = int64_t(running_.size());
  stats_.blocks_used = cache_.used_blocks();
  if (!metrics_) return;
  metrics_->set("turbine_queue_length", double(queue_.size()));
  metrics_->set("turbine_running_sequences", double(running_.size()));
  metrics_->set("turbine_kv_blocks_used", double(cache_.used_blocks()));
  metrics_->set("turbine_kv_blocks_free", double(cache_.free_blocks()));
  // Tokens per second over the last second or more.
  const Clock::time_point now = Clock::now();
  const double elapsed = seconds_between(rate_since_, now);
  if (elapsed >= 1.0) {
    const double generated = metrics_->value("turbine_generation_tokens_total");
    metrics_->set("turbine_generation_tokens_per_second", (generated - rate_generated_) / elapsed);
    rate_since_ = now;
    rate_generated_ = generated;
  }
}

}  // namespace turbine::infer
