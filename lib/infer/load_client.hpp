// A bounded load generator for an OpenAI-compatible server (`infer load`,
// used by the tests and tools/bench-serve): sends a list of completion
// requests at a fixed concurrency from a pool of client threads, checks
// every answer (HTTP 200, OpenAI's schema, SSE framing ending in
// "data: [DONE]", and, when expected tokens are given, exactly those token
// ids), and measures throughput, time to first token and inter-token
// latency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace turbine::infer {

struct LoadRequest {
  std::string body;  // the JSON body, sent as is to `path`
  std::string path = "/v1/completions";
  bool stream = false;  // the body asks for stream: true (the client reads SSE)
  // The token ids the answer must hold (choices[0].token_ids: the body asks
  // for return_token_ids); empty: not checked.
  std::vector<int32_t> expected_tokens;
};

struct LoadOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  int concurrency = 8;          // requests in flight at once
  double timeout_seconds = 60;  // per request (connect + read); past it the request fails
};

// One request's outcome.
struct LoadResult {
  bool ok = false;
  std::string error;       // why not ok: HTTP status and body, a schema or token mismatch
  int64_t completion_tokens = 0;
  double seconds = 0;                 // send to last byte
  double time_to_first_token = 0;     // stream: to the first chunk with text or tokens;
                                      // otherwise the whole request
  std::vector<double> inter_token;    // stream: gaps between chunks with content
  std::vector<int32_t> tokens;        // the token ids received (when returned)
  std::string text;                   // the text received (all deltas joined)
};

struct LoadReport {
  std::vector<LoadResult> results;  // in the order of the requests
  double seconds = 0;               // wall time of the whole run
  int64_t failed = 0;
  int64_t completion_tokens = 0;
  double requests_per_second = 0, tokens_per_second = 0;
  double ttft_p50 = 0, ttft_p99 = 0;   // seconds
  double itl_p50 = 0, itl_p99 = 0;     // seconds, over every gap of every stream
};

// Requests from a JSON-lines file, each line one request body (for
// /v1/completions, or /v1/chat/completions when it has "messages"), sent
// `count` times in all, cycling (0: each line once), each asking for its
// token ids. `expect_path` (optional): `infer generate --prompts-file`'s
// output for the same prompts, line for line: each answer must hold exactly
// that line's "tokens". Errors name the file and line.
std::vector<LoadRequest> read_load_requests(const std::string& path, int64_t count,
                                            const std::string& expect_path = "");

// Runs every request (each once) with `concurrency` in flight. Never throws
// for a failed request: it is counted and explained in its result.
LoadReport run_load(const std::vector<LoadRequest>& requests, const LoadOptions& options);

// The report as one JSON object (the figures above and the first few
// errors), for scripts.
std::string load_report_json(const LoadReport& report, const LoadOptions& options);

// The p-th percentile (0..100) of values by linear interpolation; 0 when empty.
double percentile(std::vector<double> values, double p);

}  // namespace turbine::infer
