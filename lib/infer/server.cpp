// infer serve's HTTP endpoints (infer/server.hpp).
#include "infer/server.hpp"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "infer/openai.hpp"
#include "multimodal/model.hpp"

namespace turbine::infer {

namespace {

constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, const openai::ApiError& e) {
  res.status = e.status;
  if (e.retry_after > 0) res.set_header("Retry-After", std::to_string(e.retry_after));
  res.set_content(openai::error_body(e), kJson);
}

openai::ApiError api_error(int status, std::string message, std::string param = "",
                           std::string code = "") {
  openai::ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  if (status >= 500) e.type = "server_error";
  return e;
}

std::string random_hex(int digits) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out += kHex[rng() % 16];
  return out;
}

uint64_t random_seed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng() >> 1;  // fits the config's non-negative integers
}

// One token's bytes (possibly part of a UTF-8 character).
std::string token_text(const LoadedModel& model, int32_t id) {
  if (id < 0 || id >= model.tokenizer.vocab_size()) return {};  // padding rows of the vocabulary
  const int32_t ids[] = {id};
  return model.tokenizer.decode(ids);
}

// A request the server's stop (or a failed engine step) ended unfinished.
openai::ApiError stopped_early() {
  return api_error(503, "the server stopped before the request finished");
}

}  // namespace

struct Server::Handlers {
  Handlers(const InferOptions& o, Metrics& m, std::string name)
      : options(o), metrics(m), model_name(std::move(name)) {}
  const InferOptions& options;
  Metrics& metrics;
  std::string model_name;
  std::atomic<const LoadedModel*> loaded{nullptr};
  // Streamed responses still being written: httplib's stop() ends a chunked
  // response where it is, so stop() waits for these first.
  std::atomic<int> open_streams{0};
  std::atomic<Engine*> engine{nullptr};
  multimodal::LoadedVisualChat* visualchat = nullptr;  // set before requests are served
  std::mutex visualchat_mutex;                         // one answer at a time
  int64_t created = std::time(nullptr);

  openai::Defaults defaults() const {
    openai::Defaults d;
    d.model = model_name;
    d.sampling = options.sampling;
    d.images = visualchat != nullptr;
    return d;
  }

  // A chat request to a VisualChat model: its messages become the rounds of
  // a conversation (user: question, assistant: answer) with their images;
  // the last user message is answered greedily (a stream carries the whole
  // answer in one event). Bad images, marker and image counts that differ,
  // too many images: 400.
  void visual_completion(const httplib::Request& req, httplib::Response& res, bool chat) {
    openai::CompletionRequest q;
    std::vector<multimodal::Round> history;
    std::vector<data::Image> images;
    std::string question;
    try {
      if (!chat)
        throw api_error(400,
                        "this server serves a VisualChat model: ask it through "
                        "/v1/chat/completions",
                        "prompt");
      q = openai::parse_chat(req.body, defaults());
      if (q.top_logprobs >= 0)
        throw api_error(400, "logprobs are not supported for a VisualChat model yet", "logprobs");
      const int64_t channels = visualchat->model->encoder_spec().model.channels;
      for (size_t i = 0; i < q.messages.size(); ++i) {
        const openai::Message& m = q.messages[i];
        for (size_t k = 0; k < m.images.size(); ++k) {
          const std::string name = fmt::format("messages[{}]'s image {}", i, k + 1);
          try {
            const auto* bytes = reinterpret_cast<const uint8_t*>(m.images[k].data());
            images.push_back(data::decode_image({bytes, m.images[k].size()}, channels, name));
          } catch (const Error& e) {
            throw api_error(400, e.message(), fmt::format("messages[{}].content", i));
          }
        }
        if (m.role == "user") {
          question += (question.empty() ? "" : "\n") + m.content;
        } else if (m.role == "assistant") {
          history.push_back({question, m.content});
          question.clear();
        }  // a system message has no place in VisualChat's template
      }
      try {
        multimodal::question_conversation(*visualchat, int64_t(images.size()), history, question);
      } catch (const Error& e) {
        throw api_error(400, e.message(), "messages");
      }
    } catch (const openai::ApiError& e) {
      count("bad_request");
      send_error(res, e);
      return;
    }
    const int64_t max_tokens = q.max_tokens.value_or(options.sampling.max_new_tokens);
    std::string answer;
    try {
      const std::lock_guard<std::mutex> one_at_a_time(visualchat_mutex);
      answer = multimodal::answer_question(*visualchat, images, history, question, max_tokens);
    } catch (const std::exception& e) {
      count("error");
      send_error(res, api_error(500, e.what()));
      return;
    }
    openai::Choice choice;
    choice.text = answer;
    choice.token_ids = visualchat->tokenizer.encode(answer);
    choice.finish_reason = int64_t(choice.token_ids.size()) >= max_tokens ? "length" : "stop";
    const openai::ResponseId id{"chatcmpl-" + random_hex(24), model_name,
                                int64_t(std::time(nullptr))};
    const openai::Usage usage{0, int64_t(choice.token_ids.size())};
    if (q.stream) {  // the whole answer as one event (it is generated before the reply)
      std::string events = openai::stream_chunk(q, id, choice, true);
      if (q.include_usage) events += openai::stream_usage_chunk(q, id, usage);
      events += openai::kStreamDone;
      res.set_header("Cache-Control", "no-cache");
      res.set_content(events, "text/event-stream");
    } else {
      res.set_content(openai::response_body(q, id, choice, usage, {}), kJson);
    }
    count("ok");
  }

  void count(const char* outcome) {
    metrics.add("turbine_requests_total", 1, fmt::format("outcome=\"{}\"", outcome));
  }

  // The checked request's sequence in the engine; throws ApiError.
  std::shared_ptr<Sequence> submit(const openai::CompletionRequest& q,
                                   std::vector<int32_t>& prompt_tokens) {
    const LoadedModel* model = loaded.load();
    Engine* e = engine.load();
    if (model == nullptr || e == nullptr) {
      openai::ApiError loading = api_error(503, "the model is still loading; retry shortly");
      loading.retry_after = 5;
      throw loading;
    }
    const char* prompt_field = q.chat ? "messages" : "prompt";
    prompt_tokens = model->tokenizer.encode(q.prompt);
    if (prompt_tokens.empty())
      throw api_error(400, fmt::format("the {} encodes to no tokens", prompt_field), prompt_field);
    const int64_t prompt = int64_t(prompt_tokens.size()), limit = e->max_sequence();
    const bool pool_bound = limit < options.max_out_tokens;
    const std::string which =
        pool_bound ? fmt::format("the KV cache pool holds {} positions (serve.kv_cache_mb)", limit)
                   : fmt::format(
                         "this model's maximum context length is {} tokens "
                         "(inference.max_out_tokens)",
                         limit);
    if (prompt >= limit)
      throw api_error(400,
                      fmt::format("{}, but the {} has {} tokens and at least one must be generated",
                                  which, prompt_field, prompt),
                      prompt_field, "context_length_exceeded");
    int64_t max_new = std::min(options.sampling.max_new_tokens, limit - prompt);
    if (q.max_tokens) {
      max_new = *q.max_tokens;
      if (prompt + max_new > limit)
        throw api_error(
            400,
            fmt::format("{}, however you requested {} tokens ({} in the {}, {} for the "
                        "completion); reduce the {} or max_tokens",
                        which, prompt + max_new, prompt, prompt_field, max_new, prompt_field),
            q.chat ? "max_completion_tokens" : "max_tokens", "context_length_exceeded");
    }
    EngineRequest r;
    r.prompt = prompt_tokens;
    r.sampling = q.sampling;
    r.sampling.max_new_tokens = max_new;
    r.sampling.context = options.max_out_tokens;
    r.sampling.stop_token = model->tokenizer.eos_id().value_or(-1);
    if (!q.has_seed) r.sampling.seed = random_seed();
    r.stop = q.stop;
    r.top_logprobs = q.top_logprobs;
    Refusal why = Refusal::none;
    std::shared_ptr<Sequence> seq = e->submit(std::move(r), &why);
    if (!seq) {
      openai::ApiError err =
          why == Refusal::draining
              ? api_error(503, "the server is shutting down")
              : api_error(503, fmt::format("the server is busy: {} requests are waiting (serve."
                                           "max_queued); retry later",
                                           options.serve.max_queued));
      err.retry_after = why == Refusal::draining ? 0 : 1;
      throw err;
    }
    return seq;
  }

  // The update's tokens as the response's parts.
  void append(openai::Choice& choice, const SequenceUpdate& u, const openai::CompletionRequest& q,
              const LoadedModel& model) {
    choice.text += u.text;
    for (const GeneratedToken& t : u.tokens) {
      choice.token_ids.push_back(t.id);
      if (q.top_logprobs < 0) continue;
      openai::TokenLogprob lp;
      lp.token = token_text(model, t.id);
      lp.logprob = t.logprob;
      for (const auto& [id, logprob] : t.top) lp.top.emplace_back(token_text(model, id), logprob);
      choice.logprobs.push_back(std::move(lp));
    }
  }

  void completion(const httplib::Request& req, httplib::Response& res, bool chat) {
    if (visualchat) {
      visual_completion(req, res, chat);
      return;
    }
    openai::CompletionRequest q;
    std::shared_ptr<Sequence> seq;
    std::vector<int32_t> prompt_tokens;
    try {
      q = chat ? openai::parse_chat(req.body, defaults())
               : openai::parse_completion(req.body, defaults());
      seq = submit(q, prompt_tokens);
    } catch (const openai::ApiError& e) {
      count(e.status == 503 ? "rejected" : "bad_request");
      send_error(res, e);
      return;
    }
    const LoadedModel& model = *loaded.load();
    const openai::ResponseId id{(chat ? "chatcmpl-" : "cmpl-") + random_hex(24), model_name,
                                int64_t(std::time(nullptr))};
    const openai::Usage usage{int64_t(prompt_tokens.size()), 0};
    if (q.stream)
      stream(res, q, id, seq, usage, model);
    else
      whole(res, q, id, seq, usage, model, prompt_tokens);
  }

  void whole(httplib::Response& res, const openai::CompletionRequest& q,
             const openai::ResponseId& id, const std::shared_ptr<Sequence>& seq,
             openai::Usage usage, const LoadedModel& model,
             const std::vector<int32_t>& prompt_tokens) {
    openai::Choice choice;
    for (;;) {
      const SequenceUpdate u = seq->next(std::chrono::milliseconds(1000));
      append(choice, u, q, model);
      if (!u.finished) continue;
      if (u.finish_reason == "cancelled") {
        count("cancelled");
        send_error(res, stopped_early());
        return;
      }
      choice.finish_reason = u.finish_reason;
      break;
    }
    usage.completion_tokens = int64_t(choice.token_ids.size());
    res.set_content(openai::response_body(q, id, choice, usage, prompt_tokens), kJson);
    count("ok");
  }

  void stream(httplib::Response& res, const openai::CompletionRequest& q,
              const openai::ResponseId& id, const std::shared_ptr<Sequence>& seq,
              openai::Usage usage, const LoadedModel& model) {
    struct State {
      bool first = true, done = false;
      int64_t tokens = 0;
    };
    auto state = std::make_shared<State>();
    res.set_header("Cache-Control", "no-cache");
    ++open_streams;  // until the response is gone (the releaser below)
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, q, id, seq, usage, state, &model](size_t, httplib::DataSink& sink) mutable {
          const SequenceUpdate u = seq->next(std::chrono::milliseconds(100));
          if (u.empty()) {
            if (!sink.is_writable()) {  // the client went away
              seq->cancel();
              return false;
            }
            return true;  // called again
          }
          if (u.finished && u.finish_reason == "cancelled") {
            openai::ApiError e = stopped_early();
            const std::string event = "data: " + openai::error_body(e) + "\n\n";
            sink.write(event.data(), event.size());
            sink.write(openai::kStreamDone.data(), openai::kStreamDone.size());
            sink.done();
            state->done = true;
            count("cancelled");
            return true;
          }
          openai::Choice delta;
          append(delta, u, q, model);
          state->tokens += int64_t(delta.token_ids.size());
          if (u.finished) delta.finish_reason = u.finish_reason;
          std::string out = openai::stream_chunk(q, id, delta, state->first);
          state->first = false;
          if (u.finished) {
            if (q.include_usage) {
              usage.completion_tokens = state->tokens;
              out += openai::stream_usage_chunk(q, id, usage);
            }
            out += openai::kStreamDone;
          }
          if (!sink.write(out.data(), out.size())) {
            seq->cancel();
            return false;
          }
          if (u.finished) {
            sink.done();
            state->done = true;
            count("ok");
          }
          return true;
        },
        [seq, state, this](bool) {
          if (!state->done) {  // the connection ended first
            seq->cancel();
            count("cancelled");
          }
          --open_streams;
        });
  }
};

Server::Server(const HttpOptions& http, const InferOptions& options, Metrics& metrics)
    : http_(http), options_(options), metrics_(metrics) {
  std::signal(SIGPIPE, SIG_IGN);  // a client that left is a failed write, not a dead server
  metrics_.counter("turbine_requests_total", "completion requests answered, by outcome");
  for (const char* outcome : {"ok", "bad_request", "rejected", "cancelled", "error"})
    metrics_.add("turbine_requests_total", 0, fmt::format("outcome=\"{}\"", outcome));
  handlers_ = std::make_unique<Handlers>(options, metrics, http.model_name);
  server_ = std::make_unique<httplib::Server>();
  httplib::Server& s = *server_;
  const int threads =
      http.threads > 0
          ? http.threads
          : int(std::min<int64_t>(options.serve.max_running + options.serve.max_queued, 1024) + 8);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.set_payload_max_length(16 << 20);
  Handlers& h = *handlers_;
  s.Post("/v1/completions", [&h](const httplib::Request& req, httplib::Response& res) {
    h.completion(req, res, false);
  });
  s.Post("/v1/chat/completions", [&h](const httplib::Request& req, httplib::Response& res) {
    h.completion(req, res, true);
  });
  s.Get("/v1/models", [&h](const httplib::Request&, httplib::Response& res) {
    res.set_content(openai::models_body(h.model_name, h.created), kJson);
  });
  s.Get("/health", [&h](const httplib::Request&, httplib::Response& res) {
    Engine* e = h.engine.load();
    const char* status = e == nullptr ? "loading" : e->draining() ? "draining" : "ok";
    res.status = e != nullptr && !e->draining() ? 200 : 503;
    res.set_content(fmt::format("{{\"status\": \"{}\"}}", status), kJson);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.set_exception_handler(
      [&h](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log::warn("a request failed: {}", what);
        h.count("error");
        send_error(res, api_error(500, "internal error: " + what));
      });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // an answer of ours
    if (res.status == 404)
      send_error(res, api_error(404, fmt::format("no route {} {}", req.method, req.path)));
    else if (res.status == 405)
      send_error(res, api_error(405, fmt::format("{} is not allowed on {}", req.method, req.path)));
  });
  // httplib listens with a backlog of 5: a burst of clients connecting at
  // once would overflow it, and the dropped ones retry their SYN a second
  // later. The socket is listened on again with the system's maximum.
  // TCP_NODELAY (inherited by accepted sockets): a response's header and
  // body, or a stream's chunks, are not held back by Nagle's algorithm
  // waiting for the client's delayed ACK (40 ms each).
  int socket_fd = -1;
  s.set_socket_options([&socket_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    const int on = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    socket_fd = sock;
  });
  if (http.port == 0) {
    port_ = s.bind_to_any_port(http.host);
    TURBINE_CHECK(port_ > 0, "infer serve: cannot bind any port on {}", http.host);
  } else {
    TURBINE_CHECK(s.bind_to_port(http.host, http.port),
                  "infer serve: cannot listen on {}:{} (in use, or not an address of this "
                  "machine); choose another --port or --host",
                  http.host, http.port);
    port_ = http.port;
  }
  if (socket_fd >= 0) ::listen(socket_fd, SOMAXCONN);
  listener_ = std::thread([&s] { s.listen_after_bind(); });
  // httplib's stop() does nothing before the accept loop runs: a failed load
  // right after this would otherwise leave stop() waiting on the listener.
  while (!s.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  log::info("serving on http://{}:{} ({} HTTP threads); /health says ready once loaded", http.host,
            port_, threads);
}

void Server::attach(const LoadedModel& loaded, Engine& engine) {
  handlers_->loaded = &loaded;
  handlers_->engine = &engine;
  log::info("ready: model {} on http://{}:{}/v1", http_.model_name, http_.host, port_);
}

void Server::attach_visualchat(multimodal::LoadedVisualChat& chat) {
  handlers_->visualchat = &chat;
  log::info("VisualChat: chat requests may carry images (image_url parts, base64 PNG data URLs)");
}

void Server::stop() {
  if (!server_) return;
  // The engine has stopped: what a stream has left is already generated and
  // only needs writing (a drained request's tail, its [DONE]). A client that
  // stopped reading gets 10 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (handlers_->open_streams > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (handlers_->open_streams > 0)
    log::warn("stopping with {} streamed responses unfinished (their clients read too slowly)",
              handlers_->open_streams.load());
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

Server::~Server() {
  stop();
}

}  // namespace turbine::infer
