// The protocol of `infer serve` without a model or sockets: OpenAI request
// bodies parsed into requests (fields where they belong, the server's
// defaults, a 400 naming the field for each kind of bad request, a 404 for
// another model), BLOOM's chat template, the JSON of responses, stream
// chunks and errors read back, the Prometheus registry's exact text, and
// the streaming detokenizer.
#define BOOST_TEST_MODULE serve_protocol
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer.hpp"
#include "infer/metrics.hpp"
#include "infer/openai.hpp"
#include "infer/text_stream.hpp"

using namespace turbine;
using namespace turbine::infer;
using nlohmann::json;

namespace {

openai::Defaults defaults() {
  openai::Defaults d;
  d.model = "bloom-560m";
  d.sampling.temperature = 0.7;
  d.sampling.top_k = 40;
  d.sampling.top_p = 0.95;
  d.sampling.repetition_penalty = 1.1;
  d.sampling.max_new_tokens = 64;
  d.sampling.seed = 7;
  d.max_stop_strings = 4;
  d.max_top_logprobs = 5;
  return d;
}

openai::CompletionRequest parse(bool chat, const std::string& body) {
  return chat ? openai::parse_chat(body, defaults()) : openai::parse_completion(body, defaults());
}

// The error a body draws; fails the test when it parses.
openai::ApiError error_of(bool chat, const std::string& body) {
  try {
    parse(chat, body);
  } catch (const openai::ApiError& e) {
    return e;
  }
  BOOST_FAIL("accepted: " << body);
  return {};
}

// A complete SSE event parsed back.
json event_json(const std::string& event) {
  BOOST_TEST(event.starts_with("data: "));
  BOOST_TEST(event.ends_with("\n\n"));
  BOOST_TEST(event.find('\n') == event.size() - 2);  // one line
  return json::parse(event.substr(6, event.size() - 8));
}

openai::ResponseId response_id(const char* id) {
  return {id, "bloom-560m", 1700000000};
}

// Two generated tokens, the second the start of a multi-byte character.
openai::Choice choice_with_logprobs() {
  openai::Choice c;
  c.text = "Hello wor";
  c.token_ids = {15, 2897};
  c.logprobs = {{"Hello", -0.5, {{"Hello", -0.5}, {"Hi", -1.5}, {"Hey", -2.5}}},
                {" wor", -1.25, {{" wor", -1.25}, {" world", -2.0}, {" x", -3.0}}}};
  c.finish_reason = "length";
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(completion_fields_land_where_they_belong) {
  const auto r = parse(false, R"({
      "model": "bloom-560m", "prompt": "Once upon", "max_tokens": 20, "temperature": 0.2,
      "top_p": 0.5, "n": 1, "stream": true, "stream_options": {"include_usage": true},
      "logprobs": 3, "echo": false, "stop": ["\n", "", "END"], "seed": 42, "user": "u1",
      "presence_penalty": 0, "frequency_penalty": 0.0, "best_of": 1, "logit_bias": {},
      "suffix": null, "top_k": 5, "repetition_penalty": 1.3, "return_token_ids": true})");
  BOOST_TEST(!r.chat);
  BOOST_TEST(r.model == "bloom-560m");
  BOOST_TEST(r.prompt == "Once upon");
  BOOST_TEST(r.messages.empty());
  BOOST_TEST(r.max_tokens.value() == 20);
  BOOST_TEST(r.sampling.max_new_tokens == 64);  // max_tokens stays out of sampling
  BOOST_TEST(r.sampling.temperature == 0.2);
  BOOST_TEST(r.sampling.top_p == 0.5);
  BOOST_TEST(r.sampling.top_k == 5);
  BOOST_TEST(r.sampling.repetition_penalty == 1.3);
  BOOST_TEST(r.sampling.seed == 42u);
  BOOST_TEST(r.has_seed);
  BOOST_TEST(r.stream);
  BOOST_TEST(r.include_usage);
  BOOST_TEST(r.top_logprobs == 3);
  BOOST_TEST(r.return_token_ids);
  BOOST_TEST((r.stop == std::vector<std::string>{"\n", "END"}));  // "" dropped
}

BOOST_AUTO_TEST_CASE(completion_defaults_apply) {
  const auto r = parse(false, R"({"prompt": ["Only one"], "max_tokens": null, "stop": "."})");
  BOOST_TEST(r.prompt == "Only one");
  BOOST_TEST(r.model == "bloom-560m");
  BOOST_TEST(!r.max_tokens.has_value());
  BOOST_TEST(r.sampling.temperature == 0.7);
  BOOST_TEST(r.sampling.top_p == 0.95);
  BOOST_TEST(r.sampling.top_k == 40);
  BOOST_TEST(r.sampling.repetition_penalty == 1.1);
  BOOST_TEST(!r.has_seed);
  BOOST_TEST(!r.stream);
  BOOST_TEST(!r.include_usage);
  BOOST_TEST(r.top_logprobs == -1);
  BOOST_TEST(!r.return_token_ids);
  BOOST_TEST((r.stop == std::vector<std::string>{"."}));
  BOOST_TEST(parse(false, R"({"prompt": "x", "logprobs": 0})").top_logprobs == 0);
  BOOST_TEST(parse(false, R"({"prompt": "x", "temperature": 0})").sampling.temperature == 0);
}

BOOST_AUTO_TEST_CASE(chat_fields_land_where_they_belong) {
  const auto r = parse(true, R"({
      "model": "bloom-560m",
      "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi"},
                                                    {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour."}],
      "max_completion_tokens": 9, "temperature": 1.5, "stop": "STOP", "seed": 0,
      "logprobs": true, "top_logprobs": 2, "stream": false, "top_k": 0,
      "response_format": {"type": "text"}, "tools": null})");
  BOOST_TEST(r.chat);
  BOOST_REQUIRE(r.messages.size() == 4u);
  BOOST_TEST(r.messages[1].role == "user");
  BOOST_TEST(r.messages[1].content == "Hi\nthere");
  BOOST_TEST(r.messages[2].role == "assistant");
  BOOST_TEST(r.prompt == openai::render_chat(r.messages));
  BOOST_TEST(r.max_tokens.value() == 9);
  BOOST_TEST(r.sampling.temperature == 1.5);
  BOOST_TEST(r.sampling.top_k == 0);
  BOOST_TEST(r.sampling.seed == 0u);
  BOOST_TEST(r.has_seed);
  BOOST_TEST(r.top_logprobs == 2);
  BOOST_TEST((r.stop == std::vector<std::string>{"STOP", std::string(openai::kChatStop)}));
}

BOOST_AUTO_TEST_CASE(chat_defaults_apply) {
  const auto r = parse(true, R"({"messages": [{"role": "user", "content": "Hi"}]})");
  BOOST_TEST(r.prompt == "### User:\nHi\n\n### Assistant:\n");
  BOOST_TEST(!r.max_tokens.has_value());
  BOOST_TEST(r.sampling.temperature == 0.7);
  BOOST_TEST(r.top_logprobs == -1);
  BOOST_TEST((r.stop == std::vector<std::string>{std::string(openai::kChatStop)}));
  BOOST_TEST(parse(true, R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})")
                 .max_tokens.value() == 3);
  BOOST_TEST(parse(true, R"({"messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 3, "max_completion_tokens": 5})")
                 .max_tokens.value() == 5);
  BOOST_TEST(parse(true, R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true})")
                 .top_logprobs == 0);
  // kChatStop does not count against max_stop_strings.
  BOOST_TEST(parse(true, R"({"messages": [{"role": "user", "content": "Hi"}],
                             "stop": ["a", "b", "c", "d"]})")
                 .stop.size() == 5u);
}

BOOST_AUTO_TEST_CASE(bad_requests_are_400s_naming_the_field) {
  struct Case {
    bool chat;
    std::string body, param;
  };
  const std::string user = R"("messages": [{"role": "user", "content": "Hi"}])";
  const std::vector<Case> cases = {
      // Not JSON, not an object.
      {false, R"({"prompt": "x",)", ""},
      {false, "", ""},
      {true, "[1, 2]", ""},
      {false, R"("prompt")", ""},
      // Wrong types.
      {false, R"({"prompt": 5})", "prompt"},
      {false, R"({"prompt": "x", "max_tokens": "10"})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
      {false, R"({"prompt": "x", "temperature": "hot"})", "temperature"},
      {false, R"({"prompt": "x", "temperature": true})", "temperature"},
      {false, R"({"prompt": "x", "stream": 1})", "stream"},
      {false, R"({"prompt": "x", "stop": 3})", "stop"},
      {false, R"({"prompt": "x", "stop": ["a", 3]})", "stop"},
      {false, R"({"prompt": "x", "seed": "7"})", "seed"},
      {false, R"({"prompt": "x", "model": 3})", "model"},
      {false, R"({"prompt": "x", "logit_bias": []})", "logit_bias"},
      {false, R"({"prompt": "x", "user": 1})", "user"},
      {false, R"({"prompt": "x", "return_token_ids": "yes"})", "return_token_ids"},
      {true, R"({"messages": {"role": "user"}})", "messages"},
      {true, R"({"messages": ["Hi"]})", "messages[0]"},
      {true, R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {true, "{" + user + R"(, "logprobs": 2})", "logprobs"},
      // Unknown fields, even null.
      {false, R"({"prompt": "x", "temprature": 0.5})", "temprature"},
      {false, R"({"prompt": "x", "messages": null})", "messages"},
      {true, "{" + user + R"(, "prompt": "x"})", "prompt"},
      {true, R"({"messages": [{"role": "user", "content": "Hi", "mood": "ok"}]})",
       "messages[0].mood"},
      {false, R"({"prompt": "x", "stream": true, "stream_options": {"x": 1}})", "stream_options.x"},
      // Out of range.
      {false, R"({"prompt": "x", "max_tokens": -1})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 1000001})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 18446744073709551615})", "max_tokens"},
      {true, "{" + user + R"(, "max_completion_tokens": 0})", "max_completion_tokens"},
      {false, R"({"prompt": "x", "temperature": 3})", "temperature"},
      {false, R"({"prompt": "x", "temperature": -0.1})", "temperature"},
      {false, R"({"prompt": "x", "top_p": 0})", "top_p"},
      {false, R"({"prompt": "x", "top_p": 1.01})", "top_p"},
      {false, R"({"prompt": "x", "top_k": -1})", "top_k"},
      {false, R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty"},
      {false, R"({"prompt": "x", "seed": -1})", "seed"},
      {false, R"({"prompt": "x", "logprobs": 6})", "logprobs"},
      {false, R"({"prompt": "x", "logprobs": -1})", "logprobs"},
      {true, "{" + user + R"(, "logprobs": true, "top_logprobs": 6})", "top_logprobs"},
      {true, "{" + user + R"(, "top_logprobs": 2})", "top_logprobs"},
      {false, R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {false, R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
      // Prompts.
      {false, R"({})", "prompt"},
      {false, R"({"prompt": null})", "prompt"},
      {false, R"({"prompt": ""})", "prompt"},
      {false, R"({"prompt": [""]})", "prompt"},
      {false, R"({"prompt": []})", "prompt"},
      {false, R"({"prompt": ["a", "b"]})", "prompt"},
      {false, R"({"prompt": [1, 2, 3]})", "prompt"},
      {false, R"({"prompt": [[1, 2]]})", "prompt"},
      // Unsupported.
      {false, R"({"prompt": "x", "n": 2})", "n"},
      {true, "{" + user + R"(, "n": 2})", "n"},
      {false, R"({"prompt": "x", "best_of": 2})", "best_of"},
      {false, R"({"prompt": "x", "echo": true})", "echo"},
      {false, R"({"prompt": "x", "suffix": "end"})", "suffix"},
      {false, R"({"prompt": "x", "presence_penalty": 0.5})", "presence_penalty"},
      {true, "{" + user + R"(, "frequency_penalty": -1})", "frequency_penalty"},
      {false, R"({"prompt": "x", "logit_bias": {"50256": -100}})", "logit_bias"},
      {true, "{" + user + R"(, "tools": [{"type": "function"}]})", "tools"},
      {true, "{" + user + R"(, "tool_choice": "auto"})", "tool_choice"},
      {true, "{" + user + R"(, "response_format": {"type": "json_object"}})", "response_format"},
      {true, "{" + user + R"(, "response_format": {"type": 5}})", "response_format"},
      {true, "{" + user + R"(, "functions": []})", "functions"},
      {false, R"({"prompt": "x", "tools": []})", "tools"},  // not a completions field
      // Conversations.
      {true, R"({})", "messages"},
      {true, R"({"messages": []})", "messages"},
      {true, R"({"messages": [{"role": "bot", "content": "Hi"}]})", "messages[0].role"},
      {true, R"({"messages": [{"role": "tool", "content": "Hi"}]})", "messages[0].role"},
      {true, R"({"messages": [{"content": "Hi"}]})", "messages[0].role"},
      {true, R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {true,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url",
           "image_url": {"url": "http://x/y.png"}}]}]})",
       "messages[0].content[0]"},
      {true, R"({"messages": [{"role": "user", "content": [{"type": "audio"}]}]})",
       "messages[0].content[0].type"},
      {true, R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})",
       "messages[0].content[0].text"},
      {true, R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant",
           "content": "Hello"}]})",
       "messages"},
      {true, R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "system",
           "content": "x"}, {"role": "user", "content": "Hi"}]})",
       "messages[1].role"},
      {true, R"({"messages": [{"role": "system", "content": ""}, {"role": "user",
           "content": ""}]})",
       "messages"},
      {true, R"({"messages": [{"role": "assistant", "content": null, "tool_calls": []},
           {"role": "user", "content": "Hi"}]})",
       "messages[0].tool_calls"},
  };
  for (const Case& c : cases) {
    const openai::ApiError e = error_of(c.chat, c.body);
    BOOST_TEST(e.status == 400, c.body);
    BOOST_TEST(e.param == c.param, c.body << ": param " << e.param << " (" << e.message << ")");
    BOOST_TEST(e.type == "invalid_request_error", c.body);
    BOOST_TEST(!e.message.empty(), c.body);
  }
}

BOOST_AUTO_TEST_CASE(error_messages_say_what_openai_says) {
  BOOST_TEST(error_of(false, R"({"prompt": "x", "temprature": 1})").message ==
             "Unrecognized request argument supplied: temprature");
  BOOST_TEST(error_of(false, R"({"prompt": "x", "temperature": 3})").message ==
             "'temperature' must be a number between 0 and 2.");
  // The parser's position, and no library prefix.
  const auto syntax = error_of(false, R"({"prompt": x})").message;
  BOOST_TEST(syntax.find("not valid JSON") != std::string::npos, syntax);
  BOOST_TEST(syntax.find("byte 12") != std::string::npos, syntax);
  BOOST_TEST(syntax.find("[json.exception") == std::string::npos, syntax);
  const auto image = error_of(true, R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "x"}}]}]})");
  BOOST_TEST(image.message.find("Images are not supported: this server serves a text-only model") !=
             std::string::npos);
  BOOST_TEST(error_of(false, R"({"prompt": "x", "max_tokens": 2000000})").message.find("absurd") !=
             std::string::npos);
  BOOST_TEST(error_of(true, R"({"messages": [{"role": "user", "content": "Hi"}], "tools": [1]})")
                 .message.find("not supported") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(another_model_is_a_404) {
  for (const bool chat : {false, true}) {
    const auto e = error_of(chat, chat ? R"({"model": "gpt-4", "messages": [
                                             {"role": "user", "content": "Hi"}]})"
                                       : R"({"model": "gpt-4", "prompt": "Hi"})");
    BOOST_TEST(e.status == 404);
    BOOST_TEST(e.type == "invalid_request_error");
    BOOST_TEST(e.code == "model_not_found");
    BOOST_TEST(e.param == "model");
    BOOST_TEST(e.message.find("The model `gpt-4` does not exist") == 0u, e.message);
  }
}

BOOST_AUTO_TEST_CASE(render_chat_follows_the_template) {
  const std::vector<openai::Message> messages = {{"system", "You are terse.", {}},
                                                 {"user", "Hi", {}},
                                                 {"assistant", "Hello.", {}},
                                                 {"user", "What is 2+2?", {}}};
  BOOST_TEST(openai::render_chat(messages) ==
             "You are terse.\n\n"
             "### User:\nHi\n\n"
             "### Assistant:\nHello.\n\n"
             "### User:\nWhat is 2+2?\n\n"
             "### Assistant:\n");
  BOOST_TEST(openai::render_chat({{"user", "Hi", {}}}) == "### User:\nHi\n\n### Assistant:\n");
}

BOOST_AUTO_TEST_CASE(completion_response_has_openais_schema) {
  auto request = parse(false, R"({"prompt": "Say"})");
  openai::Choice c;
  c.text = "Hello";
  c.token_ids = {15};
  c.finish_reason = "stop";
  json j = json::parse(openai::response_body(request, response_id("cmpl-1"), c, {3, 1}, {1, 2, 3}));
  BOOST_TEST(j["id"] == "cmpl-1");
  BOOST_TEST(j["object"] == "text_completion");
  BOOST_TEST(j["created"] == 1700000000);
  BOOST_TEST(j["model"] == "bloom-560m");
  BOOST_REQUIRE(j["choices"].size() == 1u);
  const json& choice = j["choices"][0];
  BOOST_TEST(choice["index"] == 0);
  BOOST_TEST(choice["text"] == "Hello");
  BOOST_TEST(choice["logprobs"].is_null());
  BOOST_TEST(choice["finish_reason"] == "stop");
  BOOST_TEST(!choice.contains("token_ids"));
  BOOST_TEST(!j.contains("prompt_token_ids"));
  BOOST_TEST(j["usage"] ==
             json({{"prompt_tokens", 3}, {"completion_tokens", 1}, {"total_tokens", 4}}));

  request = parse(false, R"({"prompt": "Say", "logprobs": 2, "return_token_ids": true})");
  j = json::parse(openai::response_body(request, response_id("cmpl-2"), choice_with_logprobs(),
                                        {3, 2}, {1, 2, 3}));
  const json& with = j["choices"][0];
  BOOST_TEST(with["finish_reason"] == "length");
  BOOST_TEST(with["token_ids"] == json({15, 2897}));
  BOOST_TEST(j["prompt_token_ids"] == json({1, 2, 3}));
  const json& lp = with["logprobs"];
  BOOST_TEST(lp["tokens"] == json({"Hello", " wor"}));
  BOOST_TEST(lp["token_logprobs"] == json({-0.5, -1.25}));
  // Two alternatives asked, three given: the first two.
  BOOST_TEST(lp["top_logprobs"] ==
             json::parse(R"([{"Hello": -0.5, "Hi": -1.5}, {" wor": -1.25, " world": -2.0}])"));
  BOOST_TEST(lp["text_offset"] == json({0, 5}));

  request.top_logprobs = 0;  // logprobs: 0: the tokens' own, no alternatives
  j = json::parse(
      openai::response_body(request, response_id("cmpl-3"), choice_with_logprobs(), {3, 2}, {}));
  BOOST_TEST(j["choices"][0]["logprobs"]["top_logprobs"] == json::parse("[{}, {}]"));
}

BOOST_AUTO_TEST_CASE(chat_response_has_openais_schema) {
  auto request = parse(true, R"({"messages": [{"role": "user", "content": "Hi"}]})");
  openai::Choice c;
  c.text = "Hello!";
  c.finish_reason = "stop";
  json j = json::parse(openai::response_body(request, response_id("chatcmpl-1"), c, {5, 2}, {}));
  BOOST_TEST(j["object"] == "chat.completion");
  BOOST_TEST(j["id"] == "chatcmpl-1");
  const json& choice = j["choices"][0];
  BOOST_TEST(choice["index"] == 0);
  BOOST_TEST(choice["message"] == json({{"role", "assistant"}, {"content", "Hello!"}}));
  BOOST_TEST(choice["logprobs"].is_null());
  BOOST_TEST(choice["finish_reason"] == "stop");
  BOOST_TEST(j["usage"]["total_tokens"] == 7);
  BOOST_TEST(!j.contains("prompt_token_ids"));

  request = parse(true, R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true,
                           "top_logprobs": 1, "return_token_ids": true})");
  j = json::parse(openai::response_body(request, response_id("chatcmpl-2"), choice_with_logprobs(),
                                        {5, 2}, {9, 8}));
  BOOST_TEST(j["prompt_token_ids"] == json({9, 8}));
  BOOST_TEST(j["choices"][0]["token_ids"] == json({15, 2897}));
  const json& content = j["choices"][0]["logprobs"]["content"];
  BOOST_REQUIRE(content.size() == 2u);
  BOOST_TEST(content[1]["token"] == " wor");
  BOOST_TEST(content[1]["logprob"] == -1.25);
  BOOST_TEST(content[1]["bytes"] == json({32, 119, 111, 114}));
  BOOST_TEST(content[1]["top_logprobs"] ==
             json::parse(R"([{"token": " wor", "logprob": -1.25, "bytes": [32, 119, 111, 114]}])"));
}

BOOST_AUTO_TEST_CASE(stream_chunks_are_framed_events) {
  const auto completion = parse(false, R"({"prompt": "Say", "stream": true})");
  openai::Choice delta;
  delta.text = " wor";
  delta.token_ids = {2897};
  json j = event_json(openai::stream_chunk(completion, response_id("cmpl-9"), delta, true));
  BOOST_TEST(j["id"] == "cmpl-9");
  BOOST_TEST(j["object"] == "text_completion");
  BOOST_TEST(j["created"] == 1700000000);
  BOOST_TEST(j["model"] == "bloom-560m");
  BOOST_TEST(j["choices"][0]["index"] == 0);
  BOOST_TEST(j["choices"][0]["text"] == " wor");
  BOOST_TEST(j["choices"][0]["logprobs"].is_null());
  BOOST_TEST(j["choices"][0]["finish_reason"].is_null());
  BOOST_TEST(!j["choices"][0].contains("token_ids"));
  BOOST_TEST(j.contains("usage"));
  BOOST_TEST(j["usage"].is_null());

  auto chat = parse(true, R"({"messages": [{"role": "user", "content": "Hi"}], "stream": true,
                              "stream_options": {"include_usage": true}, "return_token_ids": true,
                              "logprobs": true})");
  openai::Choice first;
  j = event_json(openai::stream_chunk(chat, response_id("chatcmpl-9"), first, true));
  BOOST_TEST(j["object"] == "chat.completion.chunk");
  BOOST_TEST(j["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
  BOOST_TEST(j["choices"][0]["token_ids"] == json::array());
  BOOST_TEST(j["choices"][0]["logprobs"] == json({{"content", json::array()}}));
  openai::Choice middle;
  middle.text = "Hel";
  middle.token_ids = {7};
  middle.logprobs = {{"Hel", -0.25, {}}};
  j = event_json(openai::stream_chunk(chat, response_id("chatcmpl-9"), middle, false));
  BOOST_TEST(j["choices"][0]["delta"] == json({{"content", "Hel"}}));
  BOOST_TEST(j["choices"][0]["token_ids"] == json({7}));
  BOOST_TEST(j["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.25);
  BOOST_TEST(j["choices"][0]["finish_reason"].is_null());
  openai::Choice last;
  last.finish_reason = "stop";
  j = event_json(openai::stream_chunk(chat, response_id("chatcmpl-9"), last, false));
  BOOST_TEST(j["choices"][0]["delta"] == json::object());
  BOOST_TEST(j["choices"][0]["finish_reason"] == "stop");

  j = event_json(openai::stream_usage_chunk(chat, response_id("chatcmpl-9"), {4, 2}));
  BOOST_TEST(j["object"] == "chat.completion.chunk");
  BOOST_TEST(j["choices"] == json::array());
  BOOST_TEST(j["usage"] ==
             json({{"prompt_tokens", 4}, {"completion_tokens", 2}, {"total_tokens", 6}}));
  BOOST_TEST(openai::kStreamDone == "data: [DONE]\n\n");
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_replaced_not_thrown) {
  const auto request = parse(true, R"({"messages": [{"role": "user", "content": "Hi"}],
                                       "logprobs": true, "top_logprobs": 1})");
  openai::Choice c;
  c.text = "caf\xc3";  // a token ending mid-character
  c.logprobs = {{"\xc3", -0.1, {{"\xc3", -0.1}}}};
  std::string body, chunk;
  BOOST_REQUIRE_NO_THROW(
      body = openai::response_body(request, response_id("chatcmpl-u"), c, {1, 1}, {}));
  BOOST_REQUIRE_NO_THROW(chunk =
                             openai::stream_chunk(request, response_id("chatcmpl-u"), c, false));
  const json j = json::parse(body);
  BOOST_TEST(j["choices"][0]["message"]["content"] == "caf\xef\xbf\xbd");          // U+FFFD
  BOOST_TEST(j["choices"][0]["logprobs"]["content"][0]["bytes"] == json({0xc3}));  // the truth
  BOOST_TEST(event_json(chunk)["choices"][0]["delta"]["content"] == "caf\xef\xbf\xbd");
  // Completions' top_logprobs keys too.
  auto completion = parse(false, R"({"prompt": "x", "logprobs": 1})");
  BOOST_REQUIRE_NO_THROW(
      body = openai::response_body(completion, response_id("cmpl-u"), c, {1, 1}, {}));
  BOOST_TEST(
      json::parse(body)["choices"][0]["logprobs"]["top_logprobs"][0].contains("\xef\xbf\xbd"));
  openai::ApiError bad_text;
  bad_text.message = "bad \xff byte";
  BOOST_TEST(json::parse(openai::error_body(bad_text))["error"]["message"] ==
             "bad \xef\xbf\xbd byte");
}

BOOST_AUTO_TEST_CASE(impossible_logprobs_stay_json) {
  const auto request = parse(false, R"({"prompt": "x", "logprobs": 1})");
  openai::Choice c;
  c.text = "a";
  c.logprobs = {{"a", -INFINITY, {{"b", -INFINITY}}}};
  const json j = json::parse(openai::response_body(request, response_id("cmpl-i"), c, {1, 1}, {}));
  BOOST_TEST(j["choices"][0]["logprobs"]["token_logprobs"][0] == -9999.0);
  BOOST_TEST(j["choices"][0]["logprobs"]["top_logprobs"][0]["b"] == -9999.0);
}

BOOST_AUTO_TEST_CASE(error_and_models_bodies) {
  BOOST_TEST(json::parse(openai::error_body({400, "bad", "invalid_request_error", "top_p", ""})) ==
             json::parse(R"({"error": {"message": "bad", "type": "invalid_request_error",
                                       "param": "top_p", "code": null}})"));
  const std::string full = openai::error_body({503, "busy", "server_error", "", "overloaded", 2});
  BOOST_TEST(full == R"({"error":{"message":"busy","type":"server_error","param":null,)"
                     R"("code":"overloaded"}})");
  BOOST_TEST(json::parse(openai::models_body("bloom-560m", 12)) ==
             json::parse(R"({"object": "list", "data": [{"id": "bloom-560m", "object": "model",
                             "created": 12, "owned_by": "turbine"}]})"));
}

BOOST_AUTO_TEST_CASE(metrics_render_exactly) {
  Metrics m;
  m.counter("turbine_requests_total", "Requests answered.");
  m.gauge("turbine_running", "Requests running now.");
  m.histogram("turbine_ttft_seconds", "Time to first token.", {0.1, 0.5, 2});
  m.add("turbine_requests_total", 1, R"(outcome="ok")");
  m.add("turbine_requests_total", 2, R"(outcome="ok")");
  m.add("turbine_requests_total", 1, R"(outcome="error")");
  m.set("turbine_running", 4);
  m.set("turbine_running", 2.5);
  m.observe("turbine_ttft_seconds", 0.05);
  m.observe("turbine_ttft_seconds", 0.5);  // le is inclusive
  m.observe("turbine_ttft_seconds", 0.7);
  m.observe("turbine_ttft_seconds", 100);
  m.observe("turbine_ttft_seconds", 0.25, R"(outcome="ok")");
  BOOST_TEST(m.render() ==
             "# HELP turbine_requests_total Requests answered.\n"
             "# TYPE turbine_requests_total counter\n"
             "turbine_requests_total{outcome=\"error\"} 1\n"
             "turbine_requests_total{outcome=\"ok\"} 3\n"
             "# HELP turbine_running Requests running now.\n"
             "# TYPE turbine_running gauge\n"
             "turbine_running 2.5\n"
             "# HELP turbine_ttft_seconds Time to first token.\n"
             "# TYPE turbine_ttft_seconds histogram\n"
             "turbine_ttft_seconds_bucket{le=\"0.1\"} 1\n"
             "turbine_ttft_seconds_bucket{le=\"0.5\"} 2\n"
             "turbine_ttft_seconds_bucket{le=\"2\"} 3\n"
             "turbine_ttft_seconds_bucket{le=\"+Inf\"} 4\n"
             "turbine_ttft_seconds_sum 101.25\n"
             "turbine_ttft_seconds_count 4\n"
             "turbine_ttft_seconds_bucket{outcome=\"ok\",le=\"0.1\"} 0\n"
             "turbine_ttft_seconds_bucket{outcome=\"ok\",le=\"0.5\"} 1\n"
             "turbine_ttft_seconds_bucket{outcome=\"ok\",le=\"2\"} 1\n"
             "turbine_ttft_seconds_bucket{outcome=\"ok\",le=\"+Inf\"} 1\n"
             "turbine_ttft_seconds_sum{outcome=\"ok\"} 0.25\n"
             "turbine_ttft_seconds_count{outcome=\"ok\"} 1\n");
}

BOOST_AUTO_TEST_CASE(metrics_values_and_numbers) {
  Metrics m;
  m.counter("tokens_total", "Tokens.\nAll of them, \\o/");
  m.gauge("g", "A gauge.");
  m.histogram("h", "Latency.", latency_buckets());
  BOOST_TEST(m.value("tokens_total") == 0);  // no series yet
  BOOST_TEST(m.render() ==
             "# HELP tokens_total Tokens.\\nAll of them, \\\\o/\n# TYPE tokens_total counter\n"
             "# HELP g A gauge.\n# TYPE g gauge\n# HELP h Latency.\n# TYPE h histogram\n");
  m.add("tokens_total", 1e7);
  m.add("tokens_total", 0);
  m.add("tokens_total", 1, R"(kind="prompt")");
  BOOST_TEST(m.value("tokens_total") == 1e7);
  BOOST_TEST(m.value("tokens_total", R"(kind="prompt")") == 1);
  BOOST_TEST(m.value("tokens_total", R"(kind="other")") == 0);
  m.set("g", -3);
  m.set("g", 1e-5, "a=\"1\"");
  m.observe("h", 0.003);
  m.observe("h", 0.003);
  BOOST_TEST(m.value("g") == -3);
  BOOST_TEST(m.value("h") == 2);  // a histogram's count
  const std::string text = m.render();
  BOOST_TEST(text.find("tokens_total 10000000\n") != std::string::npos, text);
  BOOST_TEST(text.find("g -3\n") != std::string::npos);
  BOOST_TEST(text.find("g{a=\"1\"} 1e-05\n") != std::string::npos);
  BOOST_TEST(text.find("h_bucket{le=\"0.0025\"} 0\nh_bucket{le=\"0.005\"} 2\n") !=
             std::string::npos);
  BOOST_TEST(
      text.find("h_bucket{le=\"60\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.006\nh_count 2\n") !=
      std::string::npos);
  const auto buckets = latency_buckets();
  BOOST_TEST(buckets.front() == 0.001);
  BOOST_TEST(buckets.back() == 60);
  BOOST_TEST(std::is_sorted(buckets.begin(), buckets.end()));
}

BOOST_AUTO_TEST_CASE(metrics_refuse_misuse) {
  Metrics m;
  m.counter("c", "A counter.");
  m.gauge("g", "A gauge.");
  m.histogram("h", "A histogram.", {1, 2});
  BOOST_CHECK_THROW(m.add("missing", 1), Error);
  BOOST_CHECK_THROW(m.set("missing", 1), Error);
  BOOST_CHECK_THROW(m.observe("missing", 1), Error);
  BOOST_CHECK_THROW(m.value("missing"), Error);
  BOOST_CHECK_THROW(m.set("c", 1), Error);
  BOOST_CHECK_THROW(m.add("g", 1), Error);
  BOOST_CHECK_THROW(m.observe("c", 1), Error);
  BOOST_CHECK_THROW(m.add("h", 1), Error);
  BOOST_CHECK_THROW(m.add("c", -1), Error);  // counters only go up
  BOOST_CHECK_THROW(m.counter("c", "again"), Error);
  BOOST_CHECK_THROW(m.gauge("bad name", "x"), Error);
  BOOST_CHECK_THROW(m.histogram("h2", "x", {2, 1}), Error);
  BOOST_CHECK_THROW(m.histogram("h3", "x", {1, INFINITY}), Error);
  BOOST_TEST(m.value("c") == 0);  // nothing half-done
}

BOOST_AUTO_TEST_CASE(metrics_are_thread_safe) {
  Metrics m;
  m.counter("c", "A counter.");
  m.histogram("h", "A histogram.", {0.5});
  constexpr int kThreads = 8, kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&m, t] {
      const std::string labels = t % 2 ? R"(parity="odd")" : R"(parity="even")";
      for (int i = 0; i < kEach; ++i) {
        m.add("c", 1, labels);
        m.observe("h", i % 2 ? 1.0 : 0.25);
        if (i % 1000 == 0) m.render();
      }
    });
  for (auto& thread : threads) thread.join();
  BOOST_TEST(m.value("c", R"(parity="odd")") == kThreads / 2 * kEach);
  BOOST_TEST(m.value("c", R"(parity="even")") == kThreads / 2 * kEach);
  BOOST_TEST(m.value("h") == kThreads * kEach);
  BOOST_TEST(m.render().find("h_bucket{le=\"0.5\"} 20000\n") != std::string::npos);
}

// The streaming detokenizer (infer/text_stream.hpp) that the server's
// streams and infer generate share: a character split over two tokens is
// released whole, text that could begin a stop string is held back, the
// text ends before the stop string and at EOS, and ids past the
// tokenizer's vocabulary add no text.
BOOST_AUTO_TEST_CASE(text_stream_releases_whole_characters_and_cuts_at_stops) {
  data::Tokenizer::TrainOptions options;
  options.vocab_size = 300;
  const data::Tokenizer tokenizer =
      data::Tokenizer::train({"plain ascii text, plain ascii text"}, options);
  const int32_t eos = tokenizer.eos_id().value();
  const std::vector<int32_t> e_acute = tokenizer.encode("\xC3\xA9");  // U+00E9, two bytes
  BOOST_REQUIRE_EQUAL(e_acute.size(), 2u);                            // one byte token each

  infer::TextStream utf8(tokenizer, {}, eos);
  BOOST_TEST(utf8.push(tokenizer.encode("x")[0]) == "x");
  BOOST_TEST(utf8.push(e_acute[0]).empty());  // half a character waits
  BOOST_TEST(utf8.push(e_acute[1]) == "\xC3\xA9");
  BOOST_TEST(utf8.push(tokenizer.vocab_size() + 5).empty());  // a padding row of the vocabulary
  BOOST_TEST(!utf8.stopped());
  BOOST_TEST(utf8.push(eos).empty());
  BOOST_TEST(utf8.stopped());
  BOOST_TEST(utf8.finish().empty());
  BOOST_TEST(utf8.text() == "x\xC3\xA9");

  infer::TextStream stops(tokenizer, {"", "ab"}, eos);
  std::string streamed;
  for (const char* piece : {"x", "a"}) streamed += stops.push(tokenizer.encode(piece)[0]);
  BOOST_TEST(streamed == "x");  // "a" may begin "ab"
  streamed += stops.push(tokenizer.encode("b")[0]);
  BOOST_TEST(stops.stopped());
  streamed += stops.finish();
  BOOST_TEST(streamed == "x");
  BOOST_TEST(stops.text() == "x");

  infer::TextStream held(tokenizer, {"ab"}, eos);
  streamed = held.push(tokenizer.encode("x")[0]);
  streamed += held.push(tokenizer.encode("a")[0]);
  BOOST_TEST(streamed == "x");
  streamed += held.finish();  // the end releases what was held
  BOOST_TEST(streamed == "xa");
  BOOST_TEST(!held.stopped());
}
