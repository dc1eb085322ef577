// The load generator: client threads, one keep-alive httplib::Client each,
// pull request indices from a shared counter; every answer is read as it
// arrives (server-sent events are parsed event by event, so each content
// chunk is timestamped when it lands), checked against OpenAI's schema, and
// summarized into throughput and latency percentiles.
#include "infer/load_client.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>

#include "core/error.hpp"

namespace turbine::infer {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// The start of a body for an error message, on one line.
std::string excerpt(std::string_view body, size_t limit = 200) {
  std::string out;
  for (char c : body.substr(0, limit)) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  if (body.size() > limit) out += "...";
  return out;
}

// A check of the answer failed: the message becomes LoadResult::error as is
// (no source location: it describes the server's answer, not this code).
[[noreturn]] void mismatch(const std::string& message) {
  throw Error(message);
}

const json& member(const json& object, const char* key, const char* where) {
  if (!object.is_object() || !object.contains(key))
    mismatch(fmt::format("{} has no \"{}\"", where, key));
  return object[key];
}

std::string string_member(const json& object, const char* key, const char* where) {
  const json& value = member(object, key, where);
  if (!value.is_string()) mismatch(fmt::format("{}.{} is not a string", where, key));
  return value.get<std::string>();
}

// usage {prompt_tokens, completion_tokens, total_tokens}, consistent; returns
// completion_tokens.
int64_t checked_usage(const json& usage) {
  int64_t counts[3];
  const char* names[3] = {"prompt_tokens", "completion_tokens", "total_tokens"};
  for (int i = 0; i < 3; ++i) {
    const json& value = member(usage, names[i], "usage");
    if (!value.is_number_integer() || value.get<int64_t>() < 0)
      mismatch(fmt::format("usage.{} is not a non-negative integer: {}", names[i], value.dump()));
    counts[i] = value.get<int64_t>();
  }
  if (counts[0] + counts[1] != counts[2])
    mismatch(
        fmt::format("usage is inconsistent: prompt_tokens {} + completion_tokens {} != "
                    "total_tokens {}",
                    counts[0], counts[1], counts[2]));
  return counts[1];
}

// choices[0].token_ids when present (and not null), appended to `tokens`.
void append_token_ids(const json& choice, std::vector<int32_t>& tokens) {
  if (!choice.contains("token_ids") || choice["token_ids"].is_null()) return;
  const json& ids = choice["token_ids"];
  if (!ids.is_array()) mismatch("choices[0].token_ids is not an array");
  for (const json& id : ids) {
    if (!id.is_number_integer()) mismatch("choices[0].token_ids holds a non-integer: " + id.dump());
    tokens.push_back(id.get<int32_t>());
  }
}

void check_finish_reason(const std::string& reason) {
  if (reason != "stop" && reason != "length")
    mismatch(fmt::format("finish_reason is \"{}\", not \"stop\" or \"length\"", reason));
}

const json& first_choice(const json& object) {
  const json& choices = member(object, "choices", "the response");
  if (!choices.is_array() || choices.empty()) mismatch("choices is not a non-empty array");
  if (!choices[0].is_object()) mismatch("choices[0] is not an object");
  return choices[0];
}

// A whole (non-streamed) response: text_completion or chat.completion.
void check_response(std::string_view body, LoadResult& result) {
  const json response = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!response.is_object()) mismatch("the response is not a JSON object: " + excerpt(body));
  string_member(response, "id", "the response");
  const std::string object = string_member(response, "object", "the response");
  if (object != "text_completion" && object != "chat.completion")
    mismatch(
        fmt::format("object is \"{}\", not \"text_completion\" or \"chat.completion\"", object));
  const json& choice = first_choice(response);
  result.text = object == "text_completion" ? string_member(choice, "text", "choices[0]")
                                            : string_member(member(choice, "message", "choices[0]"),
                                                            "content", "choices[0].message");
  check_finish_reason(string_member(choice, "finish_reason", "choices[0]"));
  result.completion_tokens = checked_usage(member(response, "usage", "the response"));
  append_token_ids(choice, result.tokens);
  if (choice.contains("token_ids") && !choice["token_ids"].is_null() &&
      int64_t(result.tokens.size()) != result.completion_tokens)
    mismatch(fmt::format("choices[0].token_ids holds {} ids but usage.completion_tokens is {}",
                         result.tokens.size(), result.completion_tokens));
}

// A streamed response, fed as bytes arrive: events separated by "\n\n",
// each "data: {chunk}", the last "data: [DONE]". Exactly one chunk carries
// a finish_reason; only a usage chunk (choices []) may follow it.
class EventStream {
 public:
  explicit EventStream(LoadResult& result) : result_(result) {}

  void feed(std::string_view data, Clock::time_point now) {
    pending_.append(data);
    size_t start = 0;
    for (size_t end; (end = pending_.find("\n\n", start)) != std::string::npos; start = end + 2)
      event(std::string_view(pending_).substr(start, end - start), now);
    pending_.erase(0, start);
  }

  // The body ended: it must have ended with "data: [DONE]".
  void finish() {
    if (!pending_.empty())
      mismatch("the stream ended inside an event (no closing blank line): " + excerpt(pending_));
    if (!done_)
      mismatch(fmt::format("the stream ended after {} events without \"data: [DONE]\"", events_));
    if (!finished_) mismatch("no chunk carried a finish_reason");
    result_.completion_tokens = usage_tokens_             ? *usage_tokens_
                                : !result_.tokens.empty() ? int64_t(result_.tokens.size())
                                                          : content_chunks_;
    if (usage_tokens_ && has_token_ids_ && int64_t(result_.tokens.size()) != *usage_tokens_)
      mismatch(fmt::format("the stream carried {} token ids but usage.completion_tokens is {}",
                           result_.tokens.size(), *usage_tokens_));
  }

  // When the first chunk with text or token ids arrived; none: no content.
  std::optional<Clock::time_point> first_content() const { return first_content_; }

 private:
  void event(std::string_view text, Clock::time_point now) {
    ++events_;
    if (done_) mismatch("an event follows \"data: [DONE]\": " + excerpt(text));
    constexpr std::string_view kData = "data: ";
    if (text.substr(0, kData.size()) != kData)
      mismatch(fmt::format("event {} does not start with \"data: \": {}", events_, excerpt(text)));
    const std::string_view data = text.substr(kData.size());
    if (data == "[DONE]") {
      done_ = true;
      return;
    }
    const json chunk = json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (!chunk.is_object())
      mismatch(fmt::format("event {} is not a JSON object: {}", events_, excerpt(data)));
    const std::string id = string_member(chunk, "id", "a chunk");
    const std::string object = string_member(chunk, "object", "a chunk");
    if (object != "text_completion" && object != "chat.completion.chunk")
      mismatch(
          fmt::format("a chunk's object is \"{}\", not \"text_completion\" or "
                      "\"chat.completion.chunk\"",
                      object));
    if (id_.empty()) {
      id_ = id;
      object_ = object;
    } else if (id != id_ || object != object_) {
      mismatch(fmt::format("chunk {} is {} \"{}\", the first was {} \"{}\"", events_, object, id,
                           object_, id_));
    }
    if (chunk.contains("usage") && !chunk["usage"].is_null())
      usage_tokens_ = checked_usage(chunk["usage"]);

    const json& choices = member(chunk, "choices", "a chunk");
    if (!choices.is_array()) mismatch("a chunk's choices is not an array");
    if (choices.empty()) {
      if (!finished_ || !usage_tokens_)
        mismatch(fmt::format("chunk {} has no choices and is not a usage chunk after the finish",
                             events_));
      return;
    }
    if (finished_)
      mismatch(fmt::format("chunk {} follows the chunk that carried the finish_reason", events_));
    const json& choice = first_choice(chunk);
    std::string delta;
    if (object == "text_completion") {
      delta = string_member(choice, "text", "choices[0]");
    } else {
      const json& message = member(choice, "delta", "choices[0]");
      if (!message.is_object()) mismatch("choices[0].delta is not an object");
      if (message.contains("content") && !message["content"].is_null())
        delta = string_member(message, "content", "choices[0].delta");
    }
    const size_t tokens_before = result_.tokens.size();
    if (choice.contains("token_ids") && !choice["token_ids"].is_null()) has_token_ids_ = true;
    append_token_ids(choice, result_.tokens);
    if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
      if (!choice["finish_reason"].is_string())
        mismatch("choices[0].finish_reason is not a string");
      check_finish_reason(choice["finish_reason"].get<std::string>());
      finished_ = true;
    }

    if (delta.empty() && result_.tokens.size() == tokens_before) return;
    result_.text += delta;
    ++content_chunks_;
    if (!first_content_)
      first_content_ = now;
    else
      result_.inter_token.push_back(seconds_between(last_content_, now));
    last_content_ = now;
  }

  LoadResult& result_;
  std::string pending_;  // bytes of an event not yet complete
  int64_t events_ = 0, content_chunks_ = 0;
  bool done_ = false, finished_ = false, has_token_ids_ = false;
  std::string id_, object_;
  std::optional<int64_t> usage_tokens_;
  std::optional<Clock::time_point> first_content_;
  Clock::time_point last_content_;
};

void check_expected_tokens(const LoadRequest& request, const LoadResult& result) {
  const auto& want = request.expected_tokens;
  const auto& got = result.tokens;
  if (want.empty() || want == got) return;
  const size_t common = std::min(want.size(), got.size());
  for (size_t i = 0; i < common; ++i)
    if (want[i] != got[i])
      mismatch(fmt::format("token {} differs: expected {}, received {} ({} expected, {} received)",
                           i, want[i], got[i], want.size(), got.size()));
  mismatch(fmt::format("token {} differs: expected {} token ids, received {} (the first {} agree)",
                       common, want.size(), got.size(), common));
}

// Splits seconds into httplib's (sec, usec).
template <class Setter>
void set_timeout(double seconds, Setter set) {
  const auto usec = int64_t(std::llround(std::max(seconds, 0.001) * 1e6));
  set(time_t(usec / 1'000'000), time_t(usec % 1'000'000));
}

LoadResult send_one(httplib::Client& client, const LoadRequest& request,
                    const LoadOptions& options) {
  LoadResult result;
  const Clock::time_point start = Clock::now();
  int status = -1;
  std::string body;     // the whole body (not streamed) or, for an error, its start
  std::string failure;  // set by the receiver when it cancels the transfer
  EventStream events(result);
  try {
    httplib::Request req;
    req.method = "POST";
    req.path = request.path;
    req.body = request.body;
    req.set_header("Content-Type", "application/json");
    if (request.stream) req.set_header("Accept", "text/event-stream");
    req.response_handler = [&](const httplib::Response& response) {
      status = response.status;
      return true;  // read the body even of an error: it says why
    };
    req.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
      const Clock::time_point now = Clock::now();
      if (seconds_between(start, now) > options.timeout_seconds) {
        failure = fmt::format("timed out after {} s (HTTP {}, still receiving)",
                              options.timeout_seconds, status);
        return false;
      }
      if (status != 200 || !request.stream) {
        if (status == 200 || body.size() < 4096) body.append(data, length);
        return true;
      }
      try {
        events.feed(std::string_view(data, length), now);
      } catch (const std::exception& e) {
        failure = e.what();  // cancel: httplib then closes the connection
        return false;
      }
      return true;
    };
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client.send(req, response, error);
    result.seconds = seconds_between(start, Clock::now());
    if (!failure.empty()) mismatch(failure);
    if (!sent) {
      std::string why = fmt::format("request failed: {}", httplib::to_string(error));
      if (error == httplib::Error::Connection || error == httplib::Error::ConnectionTimeout)
        why += fmt::format(" (cannot connect to {}:{})", options.host, options.port);
      else if (error == httplib::Error::Read && result.seconds >= options.timeout_seconds * 0.9)
        why += fmt::format(" (no answer within the {} s timeout)", options.timeout_seconds);
      if (status >= 0) why += fmt::format(" after HTTP {}", status);
      if (!body.empty()) why += ": " + excerpt(body);
      mismatch(why);
    }
    if (status != 200) mismatch(fmt::format("HTTP {}: {}", status, excerpt(body)));
    if (request.stream) {
      events.finish();
      result.time_to_first_token =
          events.first_content() ? seconds_between(start, *events.first_content()) : result.seconds;
    } else {
      check_response(body, result);
      result.time_to_first_token = result.seconds;
    }
    check_expected_tokens(request, result);
    result.ok = true;
  } catch (const std::exception& e) {
    if (result.seconds == 0) result.seconds = seconds_between(start, Clock::now());
    result.ok = false;
    result.error = e.what();
  }
  return result;
}

}  // namespace

LoadReport run_load(const std::vector<LoadRequest>& requests, const LoadOptions& options) {
  LoadReport report;
  report.results.resize(requests.size());
  std::atomic<size_t> next{0};
  const auto worker = [&] {
    httplib::Client client(options.host, options.port);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);  // a latency benchmark: no Nagle delay on the request
    set_timeout(options.timeout_seconds, [&](time_t s, time_t us) {
      client.set_connection_timeout(s, us);
      client.set_read_timeout(s, us);
      client.set_write_timeout(s, us);
    });
    for (size_t i; (i = next.fetch_add(1)) < requests.size();)
      report.results[i] = send_one(client, requests[i], options);
  };

  const Clock::time_point start = Clock::now();
  const size_t threads = std::min(requests.size(), size_t(std::max(options.concurrency, 1)));
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked; the counter spreads the work anyway
    }
  }
  if (pool.empty() && !requests.empty()) worker();
  for (auto& thread : pool) thread.join();
  report.seconds = seconds_between(start, Clock::now());

  std::vector<double> ttft, itl;
  int64_t ok = 0;
  for (const LoadResult& r : report.results) {
    if (!r.ok) {
      ++report.failed;
      continue;
    }
    ++ok;
    report.completion_tokens += r.completion_tokens;
    ttft.push_back(r.time_to_first_token);
    itl.insert(itl.end(), r.inter_token.begin(), r.inter_token.end());
  }
  if (report.seconds > 0) {
    report.requests_per_second = double(ok) / report.seconds;
    report.tokens_per_second = double(report.completion_tokens) / report.seconds;
  }
  report.ttft_p50 = percentile(ttft, 50);
  report.ttft_p99 = percentile(ttft, 99);
  report.itl_p50 = percentile(itl, 50);
  report.itl_p99 = percentile(itl, 99);
  return report;
}

std::string load_report_json(const LoadReport& report, const LoadOptions& options) {
  nlohmann::ordered_json out;
  out["requests"] = report.results.size();
  out["concurrency"] = options.concurrency;
  out["failed"] = report.failed;
  out["seconds"] = report.seconds;
  out["requests_per_second"] = report.requests_per_second;
  out["tokens_per_second"] = report.tokens_per_second;
  out["completion_tokens"] = report.completion_tokens;
  out["ttft_p50_ms"] = report.ttft_p50 * 1e3;
  out["ttft_p99_ms"] = report.ttft_p99 * 1e3;
  out["itl_p50_ms"] = report.itl_p50 * 1e3;
  out["itl_p99_ms"] = report.itl_p99 * 1e3;
  out["errors"] = nlohmann::ordered_json::array();
  for (const LoadResult& r : report.results) {
    if (r.ok) continue;
    if (out["errors"].size() == 5) break;
    out["errors"].push_back(r.error);
  }
  // An error excerpt may hold bytes that are not UTF-8: replace, never throw.
  return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

double percentile(std::vector<double> values, double p) {
  TURBINE_CHECK(p >= 0 && p <= 100, "percentile {} is outside 0..100", p);
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // numpy's default ("linear"): rank p/100 * (n - 1), interpolated between
  // the closest ranks.
  const double rank = p / 100 * double(values.size() - 1);
  const auto below = size_t(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (rank - double(below)) * (values[above] - values[below]);
}

namespace {
// The JSON objects of a JSON-lines file (blank lines skipped).
std::vector<nlohmann::json> json_lines(const std::string& path) {
  std::ifstream in(path);
  TURBINE_CHECK(in.is_open(), "infer load: cannot read {}", path);
  std::vector<nlohmann::json> out;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(text));
    } catch (const std::exception& e) {
      TURBINE_FAIL("infer load: {} line {} is not JSON: {}", path, number, e.what());
    }
    TURBINE_CHECK(out.back().is_object(), "infer load: {} line {} is not a JSON object", path,
                  number);
  }
  TURBINE_CHECK(!out.empty(), "infer load: {} holds no requests", path);
  return out;
}
}  // namespace

std::vector<LoadRequest> read_load_requests(const std::string& path, int64_t count,
                                            const std::string& expect_path) {
  const std::vector<nlohmann::json> bodies = json_lines(path);
  std::vector<nlohmann::json> expected;
  if (!expect_path.empty()) {
    expected = json_lines(expect_path);
    TURBINE_CHECK(expected.size() == bodies.size(), "infer load: {} has {} lines but {} has {}",
                  expect_path, expected.size(), path, bodies.size());
  }
  std::vector<LoadRequest> out;
  const size_t total = count > 0 ? size_t(count) : bodies.size();
  for (size_t i = 0; i < total; ++i) {
    const size_t line = i % bodies.size();
    nlohmann::json body = bodies[line];
    body["return_token_ids"] = true;
    LoadRequest r;
    r.stream = body.value("stream", false);
    r.path = body.contains("messages") ? "/v1/chat/completions" : "/v1/completions";
    r.body = body.dump();
    if (!expected.empty()) {
      TURBINE_CHECK(expected[line].contains("tokens") && expected[line]["tokens"].is_array(),
                    "infer load: {} line {} has no \"tokens\" list", expect_path, line + 1);
      r.expected_tokens = expected[line]["tokens"].get<std::vector<int32_t>>();
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace turbine::infer
