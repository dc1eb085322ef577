// The serving engine of `infer serve`: continuous batching over a paged KV
// cache (DeepSpeed-FastGen, vLLM). Requests arrive from any thread
// (submit); one loop (run, on the main thread) steps every running sequence
// together. Each step spends a token budget: first one token for every
// sequence that is decoding, so running streams keep flowing, then chunks of
// admitted prompts (Dynamic SplitFuse), then new admissions. A sequence
// takes the blocks for its whole length (prompt + max_tokens) when it is
// admitted, so a running sequence never waits for memory, and gives them back
// the moment it finishes or its client goes away. Requests that do not fit
// yet wait in a bounded queue, in arrival order.
//
// Each sequence samples with its own options and seed, numbering its draws
// from its first generated token, exactly as `infer generate` does for it
// alone, so a request's tokens do not depend on what else is running.
//
// Under tensor parallelism the engine runs on every rank: rank 0 schedules
// and broadcasts each step's plan (block tables, positions, token ids); the
// others run the same forward on their heads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "infer/infer.hpp"
#include "infer/metrics.hpp"
#include "infer/text_stream.hpp"
#include "nn/paged_kv_cache.hpp"

namespace turbine::infer {

// A request as the engine runs it: the prompt's tokens, the sampling
// options (max_new_tokens final, the seed chosen, stop_token the EOS id),
// stop strings, and how many likeliest alternatives to report per token
// (-1: no log-probabilities).
struct EngineRequest {
  std::vector<int32_t> prompt;
  SamplingOptions sampling;
  std::vector<std::string> stop;
  int top_logprobs = -1;
};

struct GeneratedToken {
  int32_t id = 0;
  double logprob = 0;                           // when asked
  std::vector<std::pair<int32_t, double>> top;  // the likeliest alternatives, when asked
};

// What happened to a sequence since its consumer last looked.
struct SequenceUpdate {
  std::string text;                    // newly visible text
  std::vector<GeneratedToken> tokens;  // newly generated tokens
  bool finished = false;
  // "stop" (EOS or a stop string), "length", "cancelled" (its client left,
  // or the server stopped before it finished).
  std::string finish_reason;
  bool empty() const { return text.empty() && tokens.empty() && !finished; }
};

// One request's sequence, shared by the engine (producer) and the thread
// that answers the request (consumer).
class Sequence {
 public:
  Sequence(int64_t id, EngineRequest request) : id_(id), request_(std::move(request)) {}
  int64_t id() const { return id_; }
  const EngineRequest& request() const { return request_; }
  // Waits up to `timeout` for news and takes it (empty when none came).
  SequenceUpdate next(std::chrono::milliseconds timeout);
  // The client is gone: the engine drops the sequence at its next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void publish(const std::string& text, const GeneratedToken* token, const char* finish_reason);

  const int64_t id_;
  const EngineRequest request_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable ready_;
  SequenceUpdate pending_;
};

// Why submit refused a request.
enum class Refusal { none, queue_full, draining };

class Engine {
 public:
  // The model stays the caller's. Metrics (optional) get the engine's
  // series: see the families declared in the constructor.
  Engine(const LoadedModel& loaded, const ServeOptions& options, int64_t context,
         Metrics* metrics = nullptr);
  ~Engine();

  // Rank 0, any thread: queues a request (its length checked by the caller
  // against max_sequence()); null with the reason when refused.
  std::shared_ptr<Sequence> submit(EngineRequest request, Refusal* why);
  // The most positions one sequence may hold: the context, or the whole
  // block pool when that is smaller.
  int64_t max_sequence() const;

  // Every rank: runs steps until stop() (rank 0 then tells the others).
  // Rank 0 also drains on a stop signal (stop_requested()): no new
  // requests, running ones get drain_seconds to finish, then are cancelled.
  void run();
  // Any thread on rank 0: ends run() after draining.
  void stop();
  bool draining() const { return draining_; }

  struct Stats {
    int64_t queued = 0, running = 0, blocks_used = 0, blocks_total = 0;
    int64_t steps = 0, prompt_tokens = 0, generated_tokens = 0, finished = 0;
  };
  Stats stats() const;

 private:
  struct Running;  // a sequence being stepped
  struct Plan;     // one step, as broadcast
  bool leader() const;
  void lead();                                   // rank 0's loop
  void follow();                                 // the other ranks' loop
  Plan schedule();                               // admits and picks this step's work (rank 0)
  std::vector<float> execute(const Plan& plan);  // the forward on every rank
  void sample(const Plan& plan, const std::vector<float>& logits);
  void finish(Running& r, const char* reason);
  // Stops admitting and ends every queued request ("cancelled"); returns
  // how many there were.
  int64_t cancel_queued();
  void drop_cancelled();
  void update_gauges();
  // Every 10 s of activity, a line on the log: throughput and occupancy.
  void log_progress();

  const LoadedModel& loaded_;
  const Decoder decoder_;
  const ServeOptions options_;
  const int64_t context_;
  Metrics* metrics_;
  nn::PagedKvCache cache_;
  const int32_t eos_;

  mutable std::mutex mutex_;  // guards queue_ and stats_
  std::condition_variable work_;
  std::deque<std::shared_ptr<Sequence>> queue_;
  std::vector<std::unique_ptr<Running>> running_;  // the loop's only
  std::atomic<bool> stopping_{false}, draining_{false};
  int64_t next_id_ = 1;
  int64_t waiting_id_ = 0;  // the queue's head when it last waited for blocks
  Stats stats_;
  std::chrono::steady_clock::time_point rate_since_ = std::chrono::steady_clock::now();
  double rate_generated_ = 0;  // turbine_generation_tokens_total at rate_since_
  std::chrono::steady_clock::time_point logged_at_ = std::chrono::steady_clock::now();
  Stats logged_;  // stats_ at logged_at_
};

// Blocks of the pool for a model: kv_cache_mb's worth, or kv_cache_fraction
// of the device's free memory (on the CPU, of the host's available memory
// shared among the node's ranks). With a tensor-parallel group every rank
// calls it together and all get the smallest rank's count.
int64_t pool_blocks(const nn::Bloom& model, const ServeOptions& options,
                    dist::ProcessGroup* tensor_parallel = nullptr);

// The log-probabilities of the n likeliest tokens under logits (vocab).
std::vector<std::pair<int32_t, double>> top_logprobs(const float* logits, int64_t vocab, int n);

}  // namespace turbine::infer
