// `infer serve`'s HTTP side: OpenAI's endpoints over cpp-httplib (Debian's
// libcpp-httplib-dev), on rank 0. POST /v1/completions and
// /v1/chat/completions (streamed as server-sent events or whole),
// GET /v1/models, /health and /metrics (Prometheus). Each request runs on
// one of the server's threads: it is parsed and checked (infer/openai.hpp),
// its prompt tokenized and measured against the context and the KV pool,
// then handed to the Engine, whose loop runs on the main thread; the thread
// waits for its sequence's tokens and writes them out. A client that leaves
// mid-stream cancels its sequence. A VisualChat checkpoint's chat requests
// carry images (OpenAI's image_url parts with base64 data URLs) and are
// answered by its model on the request's thread, one at a time.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "infer/engine.hpp"
#include "infer/metrics.hpp"

namespace httplib {
class Server;
}
namespace turbine::multimodal {
struct LoadedVisualChat;
}

namespace turbine::infer {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;         // 0: any free port (port() says which)
  std::string model_name;  // what /v1/models lists and requests may name
  int threads = 0;         // HTTP worker threads; 0: enough for every running and queued request
};

class Server {
 public:
  // Binds (throwing with the address when it cannot) and starts serving at
  // once: /health answers 503 "loading" until attach().
  Server(const HttpOptions& http, const InferOptions& options, Metrics& metrics);
  ~Server();  // stops
  int port() const { return port_; }
  // The model is loaded and its engine ready: requests are served.
  void attach(const LoadedModel& loaded, Engine& engine);
  // A VisualChat checkpoint's model (before attach): chat requests, with
  // image_url content parts, are answered by it, one at a time, greedily (a
  // stream gets the whole answer as one event); /v1/completions is refused.
  void attach_visualchat(multimodal::LoadedVisualChat& chat);
  // Lets streamed responses write what they have left (at most 10 s; the
  // engine has stopped), then stops accepting connections and joins the
  // listener.
  void stop();

 private:
  struct Handlers;
  HttpOptions http_;
  const InferOptions& options_;
  Metrics& metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<Handlers> handlers_;
  std::thread listener_;
  int port_ = 0;
};

}  // namespace turbine::infer
