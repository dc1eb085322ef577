// OpenAI's HTTP API as `infer serve` speaks it: parsing and checking the
// bodies of POST /v1/completions and /v1/chat/completions, BLOOM's chat
// template, and the JSON of responses, stream chunks and errors. Pure
// functions of their arguments (no model, no sockets), so the protocol is
// tested on its own (tests/test_serve_protocol.cpp).
//
// Fields are OpenAI's (platform.openai.com/docs/api-reference). Extensions,
// named as vLLM names them: top_k, repetition_penalty, return_token_ids.
// A field OpenAI has but Turbine does not implement (n > 1, best_of > 1,
// echo, suffix, logit_bias, presence/frequency penalties other than 0,
// tools, response_format, ...) is a 400 naming it; an unknown field is a
// 400 "Unrecognized request argument supplied: X", as OpenAI answers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "infer/generate.hpp"

namespace turbine::infer::openai {

// A request OpenAI would refuse: the HTTP status (400 for a bad request,
// 404, 503 when the server is full or draining, 500) and OpenAI's error
// object {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";  // or "server_error", "not_found_error"
  std::string param;                           // the offending field; "" for none (JSON null)
  std::string code;                            // "" for none (JSON null)
  // Seconds for a Retry-After header (503s); 0: none.
  int retry_after = 0;
};
// The response body of an error.
std::string error_body(const ApiError& error);

// One chat message: role "system", "user" or "assistant", and its text
// (content given as a string, or as an array of {"type": "text", "text"}
// parts, joined by newlines).
struct Message {
  std::string role, content;
  // Images of the content's image_url parts (the bytes of base64 data URLs),
  // in order; each stands where an "<image>" marker is in content. Only
  // when Defaults::images allows them.
  std::vector<std::string> images;
};

// BLOOM's chat template: an optional system text, then each turn, then the
// assistant's cue:
//   {system}\n\n
//   ### User:\n{content}\n\n
//   ### Assistant:\n{content}\n\n
//   ...
//   ### Assistant:\n
// kChatStop ends the assistant's answer before it starts a turn of its own.
std::string render_chat(const std::vector<Message>& messages);
inline constexpr std::string_view kChatStop = "\n### ";

// What the server's defaults are (the job's sampling config) and its limits.
struct Defaults {
  std::string model;             // the served model's name; a request may name no other
  SamplingOptions sampling;      // temperature, top_k, top_p, repetition_penalty, max_new_tokens
  int64_t max_stop_strings = 4;  // OpenAI allows up to 4
  int64_t max_top_logprobs = 5;  // completions' logprobs / chat's top_logprobs at most this
  // Content parts of type image_url (a VisualChat model): allowed, or a 400.
  bool images = false;
};

// The bytes of standard base64 text (padding optional, no whitespace);
// nullopt when it is not base64.
std::optional<std::string> decode_base64(std::string_view text);

// A parsed and checked request.
struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::string prompt;             // completions: the prompt; chat: render_chat(messages)
  std::vector<Message> messages;  // chat only
  // max_tokens (chat: max_completion_tokens or max_tokens); unset: the
  // server picks (its default, capped by the room left in the context).
  std::optional<int64_t> max_tokens;
  // temperature, top_p, top_k, repetition_penalty from the request or the
  // defaults; seed from the request (has_seed) or unset.
  SamplingOptions sampling;
  bool has_seed = false;
  std::vector<std::string> stop;  // chat: the request's, then kChatStop
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Log-probabilities: completions' "logprobs": N (0..max) or chat's
  // "logprobs": true with "top_logprobs": N. -1: none asked.
  int top_logprobs = -1;
  bool return_token_ids = false;  // choices[0].token_ids, prompt_token_ids
};

// Parses a body. Throws ApiError (status 400, param set) for invalid JSON,
// a body that is not an object, a missing or empty prompt/messages, a field
// of the wrong type, a value out of range (temperature < 0 or > 2,
// top_p outside (0, 1], max_tokens < 1 or absurd (> 1'000'000), top_k < 0,
// more than max_stop_strings stops, logprobs beyond max_top_logprobs, n != 1,
// a model other than defaults.model), an unknown or unsupported field.
// A field given as null reads as absent (OpenAI's reading). In chat,
// max_completion_tokens wins over the deprecated max_tokens; a system
// message may only come first and the last message must be the user's.
// Checks that need the tokenizer (prompt length) are the server's.
CompletionRequest parse_completion(std::string_view body, const Defaults& defaults);
CompletionRequest parse_chat(std::string_view body, const Defaults& defaults);

// The log-probabilities of one generated token: its text, its own
// log-probability and the likeliest alternatives (top_logprobs of them).
struct TokenLogprob {
  std::string token;  // the token's bytes (possibly part of a UTF-8 character)
  double logprob = 0;
  std::vector<std::pair<std::string, double>> top;
};

// What a finished (or, for a chunk, a partial) completion holds.
struct Choice {
  std::string text;                    // generated text (the delta, in a chunk)
  std::vector<int32_t> token_ids;      // generated token ids (those of the delta)
  std::vector<TokenLogprob> logprobs;  // when asked (those of the delta)
  std::string finish_reason;           // "stop" or "length"; "" (JSON null) while running
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// Identity of one response: its id ("cmpl-..." or "chatcmpl-..."), creation
// time (Unix seconds) and model, shared by all chunks of a stream.
struct ResponseId {
  std::string id, model;
  int64_t created = 0;
};

// The whole response of a request that did not stream: object
// "text_completion" (choices[0].text, logprobs {tokens, token_logprobs,
// top_logprobs, text_offset} or null) or "chat.completion"
// (choices[0].message {role: assistant, content}, logprobs {content: [{token,
// logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]} or null), and
// usage {prompt_tokens, completion_tokens, total_tokens}. With
// return_token_ids, choices[0].token_ids and prompt_token_ids.
// Completions' text_offset are byte offsets of the tokens in the generated
// text; its top_logprobs has one object per token, empty for "logprobs": 0.
// At most request.top_logprobs alternatives are written; a log-probability
// below -9999 (or -inf, NaN) is written as -9999, as OpenAI does. Text that
// is not valid UTF-8 (a token ending mid-character) is written with U+FFFD
// (chat's "bytes" keep the exact bytes).
std::string response_body(const CompletionRequest& request, const ResponseId& id,
                          const Choice& choice, const Usage& usage,
                          const std::vector<int32_t>& prompt_token_ids);

// One server-sent event of a stream, framed: "data: {...}\n\n". Completions:
// object "text_completion" with choices[0].text = the delta; chat: object
// "chat.completion.chunk" with choices[0].delta ({"role": "assistant",
// "content": delta} for the first chunk, usually with delta "", then
// {"content": delta}, and {} in a chunk that carries finish_reason and no
// text). usage: JSON null, except in the final usage chunk (choices [],
// when include_usage). A completions chunk's text_offset counts from the
// start of the delta (the chunk knows nothing of the text before it).
std::string stream_chunk(const CompletionRequest& request, const ResponseId& id,
                         const Choice& delta, bool first);
std::string stream_usage_chunk(const CompletionRequest& request, const ResponseId& id,
                               const Usage& usage);
inline constexpr std::string_view kStreamDone = "data: [DONE]\n\n";

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model",
// "created", "owned_by": "turbine"}]}.
std::string models_body(const std::string& model, int64_t created);

}  // namespace turbine::infer::openai
