// The load generator (infer::run_load) against a canned OpenAI-style server
// on 127.0.0.1: correct answers (completions and chat, whole and streamed)
// pass with the right token counts and plausible latencies; a token
// mismatch, an HTTP error, broken SSE framing, a bad usage and a server
// that never answers each fail with a message saying why; percentile
// matches numpy's default.
#define BOOST_TEST_MODULE load_client
#include <fmt/format.h>
#include <httplib.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "infer/load_client.hpp"

using namespace turbine;
using json = nlohmann::json;

namespace {

constexpr auto kChunkGap = std::chrono::milliseconds(10);

// The text the server generates for token `id`.
std::string token_text(int32_t id) {
  return fmt::format("t{} ", id);
}

// A server answering POST /v1/completions and /v1/chat/completions. The
// request body says what to answer: "tokens" (the generated ids, echoed as
// token_ids and as text "t<id> "), "stream", stream_options.include_usage,
// and "mode": "ok", "status" (answer with HTTP "code"), "hang" (answer
// nothing until the server stops), "no_done", "bad_framing",
// "two_finishes", "no_finish", "bad_usage".
class CannedServer {
 public:
  CannedServer() {
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      answer(req, res, req.path == "/v1/chat/completions");
    };
    server_.Post("/v1/completions", handler);
    server_.Post("/v1/chat/completions", handler);
    server_.set_keep_alive_timeout(1);
    server_.set_tcp_nodelay(true);  // each write leaves at once: chunks keep their gaps
    port_ = server_.bind_to_any_port("127.0.0.1");
    BOOST_REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib 0.11's stop() does nothing before the accept loop runs.
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~CannedServer() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    released_.notify_all();
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void answer(const httplib::Request& req, httplib::Response& res, bool chat) {
    const json body = json::parse(req.body);
    const std::string mode = body.value("mode", "ok");
    const std::vector<int32_t> tokens = body.value("tokens", std::vector<int32_t>{});
    if (mode == "status") {
      const json error = {{"error",
                           {{"message", "the server says no"},
                            {"type", "invalid_request_error"},
                            {"param", nullptr},
                            {"code", nullptr}}}};
      res.status = body["code"].get<int>();
      res.set_content(error.dump(), "application/json");
      return;
    }
    if (mode == "hang") {
      std::unique_lock lock(mutex_);
      released_.wait_for(lock, std::chrono::seconds(10), [this] { return stopping_; });
      return;
    }
    std::string text;
    for (int32_t id : tokens) text += token_text(id);
    const int64_t prompt_tokens = 3, completion = int64_t(tokens.size());
    json usage = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion},
                  {"total_tokens", prompt_tokens + completion + (mode == "bad_usage" ? 1 : 0)}};
    const std::string id = chat ? "chatcmpl-1" : "cmpl-1";
    if (!body.value("stream", false)) {
      json choice = {{"index", 0}, {"finish_reason", "length"}, {"token_ids", tokens}};
      if (chat)
        choice["message"] = {{"role", "assistant"}, {"content", text}};
      else
        choice["text"] = text;
      const json response = {{"id", id},
                             {"object", chat ? "chat.completion" : "text_completion"},
                             {"created", 0},
                             {"model", "canned"},
                             {"choices", {choice}},
                             {"usage", usage}};
      res.set_content(response.dump(), "application/json");
      return;
    }
    const bool include_usage =
        body.contains("stream_options") && body["stream_options"].value("include_usage", false);
    // One chunk per token, then the finish chunk (no content), then usage.
    const auto chunk = [id, chat](const std::string& delta, const json& token_ids,
                                  const json& finish_reason, bool first) {
      json choice = {{"index", 0}, {"finish_reason", finish_reason}};
      if (!token_ids.is_null()) choice["token_ids"] = token_ids;
      if (!chat)
        choice["text"] = delta;
      else if (first)
        choice["delta"] = {{"role", "assistant"}, {"content", ""}};
      else if (finish_reason.is_null())
        choice["delta"] = {{"content", delta}};
      else
        choice["delta"] = json::object();
      return json{{"id", id},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", 0},
                  {"model", "canned"},
                  {"choices", {choice}},
                  {"usage", nullptr}};
    };
    std::vector<std::string> events;
    if (chat) events.push_back("data: " + chunk("", nullptr, nullptr, true).dump() + "\n\n");
    for (int32_t token : tokens)
      events.push_back("data: " + chunk(token_text(token), {token}, nullptr, false).dump() +
                       "\n\n");
    if (mode != "no_finish")
      events.push_back("data: " + chunk("", nullptr, "stop", false).dump() + "\n\n");
    if (mode == "two_finishes")
      events.push_back("data: " + chunk("", nullptr, "length", false).dump() + "\n\n");
    if (include_usage) {
      json last = chunk("", nullptr, nullptr, false);
      last["choices"] = json::array();
      last["usage"] = usage;
      events.push_back("data: " + last.dump() + "\n\n");
    }
    if (mode == "bad_framing") events.back() = events.back().substr(6);  // no "data: "
    if (mode != "no_done") events.push_back("data: [DONE]\n\n");
    res.set_chunked_content_provider("text/event-stream",
                                     [events](size_t, httplib::DataSink& sink) {
                                       for (const std::string& event : events) {
                                         std::this_thread::sleep_for(kChunkGap);
                                         // Split each event in two writes: the client must
                                         // reassemble.
                                         const size_t half = event.size() / 2;
                                         if (!sink.write(event.data(), half) ||
                                             !sink.write(event.data() + half, event.size() - half))
                                           return false;
                                       }
                                       sink.done();
                                       return true;
                                     });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable released_;
  bool stopping_ = false;
};

infer::LoadRequest request(std::vector<int32_t> tokens, bool stream, bool chat = false,
                           const std::string& mode = "ok", json extra = json::object()) {
  json body = {{"prompt", "hello"},
               {"return_token_ids", true},
               {"tokens", tokens},
               {"stream", stream},
               {"mode", mode}};
  if (chat)
    body = {{"messages", {{{"role", "user"}, {"content", "hello"}}}},
            {"tokens", tokens},
            {"stream", stream},
            {"mode", mode}};
  body.update(extra);
  infer::LoadRequest r;
  r.body = body.dump();
  r.path = chat ? "/v1/chat/completions" : "/v1/completions";
  r.stream = stream;
  r.expected_tokens = tokens;
  return r;
}

infer::LoadOptions options_for(const CannedServer& server, int concurrency = 4,
                               double timeout = 5) {
  infer::LoadOptions o;
  o.port = server.port();
  o.concurrency = concurrency;
  o.timeout_seconds = timeout;
  return o;
}

// Runs one request that must fail; returns its error.
std::string failure_of(const infer::LoadRequest& r, double timeout = 5) {
  CannedServer server;
  const auto report = infer::run_load({r}, options_for(server, 1, timeout));
  BOOST_REQUIRE(report.results.size() == 1u);
  BOOST_TEST(!report.results[0].ok);
  BOOST_TEST(report.failed == 1);
  BOOST_TEST(report.requests_per_second == 0);
  BOOST_TEST_MESSAGE("error: " << report.results[0].error);
  return report.results[0].error;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(correct_answers_pass_with_counts_and_latencies) {
  CannedServer server;
  // 20 requests: completions and chat, whole and streamed, 2..6 tokens;
  // some streams end with a usage chunk.
  std::vector<infer::LoadRequest> requests;
  int64_t total_tokens = 0;
  for (int i = 0; i < 20; ++i) {
    std::vector<int32_t> tokens;
    for (int k = 0; k < 2 + i % 5; ++k) tokens.push_back(100 * i + k);
    total_tokens += int64_t(tokens.size());
    const json extra =
        i % 3 == 0 ? json{{"stream_options", {{"include_usage", true}}}} : json::object();
    requests.push_back(request(tokens, /*stream=*/i % 2 == 0, /*chat=*/i % 4 >= 2, "ok", extra));
  }
  const auto options = options_for(server, 4);
  const auto report = infer::run_load(requests, options);

  BOOST_TEST(report.failed == 0);
  BOOST_REQUIRE(report.results.size() == requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = report.results[i];
    BOOST_TEST(r.ok, "request " << i << ": " << r.error);
    const auto& want = requests[i].expected_tokens;
    BOOST_TEST(r.tokens == want, "request " << i);
    BOOST_TEST(r.completion_tokens == int64_t(want.size()), "request " << i);
    std::string text;
    for (int32_t id : want) text += token_text(id);
    BOOST_TEST(r.text == text, "request " << i);
    BOOST_TEST(r.time_to_first_token > 0);
    BOOST_TEST(r.time_to_first_token <= r.seconds);
    if (requests[i].stream) {
      // The client timestamps chunks as they land, so a stalled client may
      // see two at once: bound what the server's sleeps guarantee. One gap
      // between each pair of content chunks; the first content comes after
      // one sleep (chat: two), the whole stream after one per event.
      const bool chat = i % 4 >= 2, usage = i % 3 == 0;
      const double events = double(want.size() + 2 + (chat ? 1 : 0) + (usage ? 1 : 0));
      const double gap = std::chrono::duration<double>(kChunkGap).count();
      BOOST_TEST(r.inter_token.size() == want.size() - 1, "request " << i);
      double gaps = 0;
      for (double g : r.inter_token) {
        BOOST_TEST(g >= 0);
        gaps += g;
      }
      BOOST_TEST(r.time_to_first_token >= gap * (chat ? 2 : 1), "request " << i);
      BOOST_TEST(r.seconds >= gap * events, "request " << i);
      BOOST_TEST(r.time_to_first_token + gaps <= r.seconds, "request " << i);
    } else {
      BOOST_TEST(r.inter_token.empty());
      BOOST_TEST(r.time_to_first_token == r.seconds);
    }
  }
  BOOST_TEST(report.completion_tokens == total_tokens);
  BOOST_TEST(report.seconds > 0);
  BOOST_TEST(report.requests_per_second == 20 / report.seconds, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(report.tokens_per_second == total_tokens / report.seconds,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(report.ttft_p50 > 0);
  BOOST_TEST(report.ttft_p99 >= report.ttft_p50);
  BOOST_TEST(report.itl_p50 > 0);
  BOOST_TEST(report.itl_p99 >= report.itl_p50);
  // Of 30 gaps, the longest keeps most of the server's sleep unless every
  // chunk of every stream bunched up.
  BOOST_TEST(report.itl_p99 > 0.005);
  BOOST_TEST(report.itl_p99 < 1.0);

  const json summary = json::parse(infer::load_report_json(report, options));
  BOOST_TEST(summary["requests"] == 20);
  BOOST_TEST(summary["concurrency"] == 4);
  BOOST_TEST(summary["failed"] == 0);
  BOOST_TEST(summary["completion_tokens"] == total_tokens);
  BOOST_TEST(summary["itl_p50_ms"].get<double>() == report.itl_p50 * 1e3,
             boost::test_tools::tolerance(1e-9));
  for (const char* key : {"seconds", "requests_per_second", "tokens_per_second", "ttft_p50_ms",
                          "ttft_p99_ms", "itl_p99_ms"})
    BOOST_TEST(summary.contains(key), key);
  BOOST_TEST(summary["errors"].empty());
}

BOOST_AUTO_TEST_CASE(a_token_mismatch_names_the_first_differing_index) {
  for (const bool stream : {false, true}) {
    auto different = request({7, 8, 9}, stream);
    different.expected_tokens = {7, 5, 9};
    const std::string error = failure_of(different);
    BOOST_TEST(contains(error, "token 1 differs"), error);
    BOOST_TEST(contains(error, "expected 5, received 8"), error);

    auto shorter = request({7, 8}, stream);
    shorter.expected_tokens = {7, 8, 9};
    const std::string short_error = failure_of(shorter);
    BOOST_TEST(contains(short_error, "token 2 differs"), short_error);
  }
}

BOOST_AUTO_TEST_CASE(an_http_error_fails_with_its_status_and_body) {
  for (const int code : {400, 503})
    for (const bool stream : {false, true}) {
      const std::string error =
          failure_of(request({1, 2}, stream, false, "status", {{"code", code}}));
      BOOST_TEST(contains(error, "HTTP " + std::to_string(code)), error);
      BOOST_TEST(contains(error, "the server says no"), error);
    }
}

BOOST_AUTO_TEST_CASE(broken_streams_and_bad_usage_fail) {
  const std::pair<const char*, const char*> cases[] = {
      {"no_done", "without \"data: [DONE]\""},
      {"bad_framing", "does not start with \"data: \""},
      {"two_finishes", "follows the chunk that carried the finish_reason"},
      {"no_finish", "no chunk carried a finish_reason"},
  };
  for (const auto& [mode, message] : cases)
    for (const bool chat : {false, true}) {
      const std::string error = failure_of(request({1, 2, 3}, true, chat, mode));
      BOOST_TEST(contains(error, message), mode << ": " << error);
    }
  // An inconsistent usage, whole or in the stream's usage chunk.
  BOOST_TEST(contains(failure_of(request({1, 2}, false, false, "bad_usage")), "inconsistent"));
  BOOST_TEST(contains(failure_of(request({1, 2}, true, true, "bad_usage",
                                         {{"stream_options", {{"include_usage", true}}}})),
                      "inconsistent"));
}

BOOST_AUTO_TEST_CASE(a_silent_server_fails_after_the_timeout) {
  const auto start = std::chrono::steady_clock::now();
  for (const bool stream : {false, true}) {
    const std::string error = failure_of(request({1}, stream, false, "hang"), 0.5);
    BOOST_TEST(contains(error, "timeout"), error);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST(seconds < 4.0);

  // Nobody listening: the port of a server just stopped.
  int port;
  {
    CannedServer gone;
    port = gone.port();
  }
  infer::LoadOptions options;
  options.port = port;
  options.timeout_seconds = 1;
  const auto report = infer::run_load({request({1}, false)}, options);
  BOOST_TEST(report.failed == 1);
  BOOST_TEST(contains(report.results[0].error, "cannot connect"), report.results[0].error);
  const json summary = json::parse(infer::load_report_json(report, options));
  BOOST_TEST(summary["errors"].size() == 1u);
  BOOST_TEST(summary["ttft_p50_ms"] == 0);
}

BOOST_AUTO_TEST_CASE(percentile_matches_numpy) {
  BOOST_TEST(infer::percentile({1, 2, 3, 4}, 50) == 2.5);
  BOOST_TEST(infer::percentile({4, 1, 3, 2}, 25) == 1.75);  // unsorted input
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  BOOST_TEST(infer::percentile(hundred, 99) == 99.01, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(infer::percentile(hundred, 50) == 50.5);
  BOOST_TEST(infer::percentile(hundred, 0) == 1);
  BOOST_TEST(infer::percentile(hundred, 100) == 100);
  BOOST_TEST(infer::percentile({7}, 99) == 7);
  BOOST_TEST(infer::percentile({}, 50) == 0);
  BOOST_CHECK_THROW(infer::percentile({1, 2}, 101), std::exception);
}
