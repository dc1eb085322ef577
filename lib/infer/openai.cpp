// OpenAI's HTTP API (infer/openai.hpp): request bodies read field by field
// with their types and ranges checked, BLOOM's chat template, and the JSON
// of responses, stream chunks and errors.
#include "infer/openai.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>

namespace turbine::infer::openai {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Past this, max_tokens is a mistake, not a wish: no context is that long.
constexpr int64_t kAbsurdMaxTokens = 1'000'000;
// JSON has no -Infinity; OpenAI writes this for an impossible token.
constexpr double kLowestLogprob = -9999.0;

[[noreturn]] void invalid(const std::string& param, const std::string& message) {
  throw ApiError{400, message, "invalid_request_error", param, "", 0};
}

[[noreturn]] void wrong_type(const std::string& param, std::string_view expected,
                             const json& value) {
  invalid(param, fmt::format("Invalid type for '{}': expected {}, but got {} instead.", param,
                             expected, value.type_name()));
}

// `value` qualifies what is refused ("other than 0"); "" refuses the field.
[[noreturn]] void unsupported(const std::string& param, std::string_view value = "") {
  invalid(param, fmt::format("'{}'{}{} is not supported by this server.", param,
                             value.empty() ? "" : " ", value));
}

[[noreturn]] void unrecognized(const std::string& param) {
  invalid(param, fmt::format("Unrecognized request argument supplied: {}", param));
}

json parse_object(std::string_view body) {
  json value;
  try {
    value = json::parse(body);
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 7: ...",
    // or out_of_range.406 for a number past double's range ("1e999").
    std::string_view what = e.what();
    if (const size_t end = what.find("] "); what.starts_with("[json.") && end != what.npos)
      what.remove_prefix(end + 2);
    const auto* parse = dynamic_cast<const json::parse_error*>(&e);
    invalid("", parse ? fmt::format("The body of your request is not valid JSON (byte {}): {}",
                                    parse->byte, what)
                      : fmt::format("The body of your request is not valid JSON: {}", what));
  }
  if (!value.is_object())
    invalid("", fmt::format("The body of your request must be a JSON object, not {}.",
                            value.type_name()));
  return value;
}

// The fields of one JSON object (the body, a message, a content part), read
// with their types checked. A null field reads as absent, as OpenAI takes it.
class Fields {
 public:
  Fields(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  // The field's name as errors name it: "temperature", "messages[1].role".
  std::string param(std::string_view name) const { return prefix_ + std::string(name); }

  // Every key must be in one of the `known` lists, null or not.
  void check_known(std::initializer_list<std::span<const std::string_view>> known) const {
    for (const auto& [key, value] : object_.items())
      if (std::none_of(known.begin(), known.end(), [&key](std::span<const std::string_view> list) {
            return std::find(list.begin(), list.end(), key) != list.end();
          }))
        unrecognized(param(key));
  }

  const json* get(std::string_view name) const {
    const auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<std::string> string(std::string_view name) const {
    const json* value = get(name);
    if (!value) return std::nullopt;
    if (!value->is_string()) wrong_type(param(name), "a string", *value);
    return value->get<std::string>();
  }

  std::optional<bool> boolean(std::string_view name) const {
    const json* value = get(name);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) wrong_type(param(name), "a boolean", *value);
    return value->get<bool>();
  }

  std::optional<double> number(std::string_view name) const {
    const json* value = get(name);
    if (!value) return std::nullopt;
    if (!value->is_number()) wrong_type(param(name), "a number", *value);
    return value->get<double>();
  }

  std::optional<int64_t> integer(std::string_view name) const {
    const json* value = get(name);
    if (!value) return std::nullopt;
    if (value->is_number_unsigned()) {
      const auto unsigned_value = value->get<uint64_t>();
      if (unsigned_value > uint64_t(std::numeric_limits<int64_t>::max()))
        invalid(param(name), fmt::format("'{}' is too large.", param(name)));
      return int64_t(unsigned_value);
    }
    if (!value->is_number_integer()) wrong_type(param(name), "an integer", *value);
    return value->get<int64_t>();
  }

 private:
  const json& object_;
  std::string prefix_;
};

// Fields both endpoints take.
constexpr std::array<std::string_view, 16> kCommonFields = {
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
    "user", "presence_penalty", "frequency_penalty", "logit_bias",
    // Extensions.
    "top_k", "repetition_penalty", "return_token_ids"};
constexpr std::array<std::string_view, 5> kCompletionFields = {"prompt", "logprobs", "echo",
                                                               "best_of", "suffix"};
constexpr std::array<std::string_view, 4> kChatFields = {"messages", "max_completion_tokens",
                                                         "logprobs", "top_logprobs"};
// Chat fields OpenAI has and Turbine does not implement: a 400 unless null.
constexpr std::array<std::string_view, 11> kChatUnsupported = {
    "tools",          "tool_choice", "functions",  "function_call",    "parallel_tool_calls",
    "modalities",     "audio",       "prediction", "reasoning_effort", "web_search_options",
    "response_format"};

std::vector<std::string> parse_stop(const Fields& fields, int64_t max_stop_strings) {
  const json* value = fields.get("stop");
  if (!value) return {};
  std::vector<std::string> stop;
  if (value->is_string()) {
    stop.push_back(value->get<std::string>());
  } else if (value->is_array()) {
    if (int64_t(value->size()) > max_stop_strings)
      invalid("stop", fmt::format("'stop' may hold at most {} strings, but it holds {}.",
                                  max_stop_strings, value->size()));
    for (size_t i = 0; i < value->size(); ++i) {
      const json& entry = (*value)[i];
      if (!entry.is_string())
        invalid("stop", fmt::format("'stop' must hold strings, but its entry {} is {}.", i,
                                    entry.type_name()));
      stop.push_back(entry.get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or an array of strings", *value);
  }
  std::erase_if(stop, [](const std::string& s) { return s.empty(); });
  return stop;
}

// max_tokens (or chat's max_completion_tokens): at least 1, and not absurd;
// whether it fits the context is the server's to check.
std::optional<int64_t> parse_max_tokens(const Fields& fields, std::string_view name) {
  const auto max_tokens = fields.integer(name);
  if (max_tokens && *max_tokens < 1)
    invalid(std::string(name), fmt::format("'{}' must be at least 1, got {}.", name, *max_tokens));
  if (max_tokens && *max_tokens > kAbsurdMaxTokens)
    invalid(std::string(name),
            fmt::format("'{}' {} is absurd (at most {}).", name, *max_tokens, kAbsurdMaxTokens));
  return max_tokens;
}

// What both endpoints share: model, lengths, sampling, stops, streaming and
// the fields accepted only at their defaults.
void parse_common(const Fields& fields, const Defaults& defaults, CompletionRequest& request) {
  request.model = defaults.model;
  if (const auto model = fields.string("model")) {
    if (*model != defaults.model) {
      ApiError error;
      error.status = 404;
      error.message = fmt::format(
          "The model `{}` does not exist or you do not have access to it. This server serves "
          "`{}`.",
          *model, defaults.model);
      error.param = "model";
      error.code = "model_not_found";
      throw error;
    }
  }

  request.max_tokens = parse_max_tokens(fields, "max_tokens");

  request.sampling = defaults.sampling;
  if (const auto temperature = fields.number("temperature")) {
    if (!(*temperature >= 0 && *temperature <= 2))
      invalid("temperature", "'temperature' must be a number between 0 and 2.");
    request.sampling.temperature = *temperature;
  }
  if (const auto top_p = fields.number("top_p")) {
    if (!(*top_p > 0 && *top_p <= 1))
      invalid("top_p", "'top_p' must be a number greater than 0 and at most 1.");
    request.sampling.top_p = *top_p;
  }
  if (const auto top_k = fields.integer("top_k")) {
    if (*top_k < 0) invalid("top_k", "'top_k' must be at least 0 (0: the whole vocabulary).");
    request.sampling.top_k = *top_k;
  }
  if (const auto penalty = fields.number("repetition_penalty")) {
    if (!(*penalty > 0 && std::isfinite(*penalty)))
      invalid("repetition_penalty", "'repetition_penalty' must be a number greater than 0.");
    request.sampling.repetition_penalty = *penalty;
  }
  if (const json* seed = fields.get("seed")) {
    if (!seed->is_number_integer()) wrong_type("seed", "an integer", *seed);
    if (!seed->is_number_unsigned()) invalid("seed", "'seed' must be at least 0.");
    request.sampling.seed = seed->get<uint64_t>();
    request.has_seed = true;
  }

  if (const auto n = fields.integer("n"); n && *n != 1)
    invalid("n", "'n' must be 1: this server generates one choice per request.");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"})
    if (const auto value = fields.number(penalty); value && *value != 0)
      unsupported(penalty, "other than 0");
  if (const json* bias = fields.get("logit_bias")) {
    if (!bias->is_object()) wrong_type("logit_bias", "an object", *bias);
    if (!bias->empty()) unsupported("logit_bias", "other than {}");
  }
  fields.string("user");  // checked, not used

  request.stop = parse_stop(fields, defaults.max_stop_strings);
  request.stream = fields.boolean("stream").value_or(false);
  if (const json* options = fields.get("stream_options")) {
    if (!options->is_object()) wrong_type("stream_options", "an object", *options);
    if (!request.stream)
      invalid("stream_options", "'stream_options' is only allowed when 'stream' is true.");
    const Fields stream_fields(*options, "stream_options.");
    constexpr std::array<std::string_view, 1> kStreamOptions = {"include_usage"};
    stream_fields.check_known({kStreamOptions});
    request.include_usage = stream_fields.boolean("include_usage").value_or(false);
  }
  request.return_token_ids = fields.boolean("return_token_ids").value_or(false);
}

int parse_top_logprobs(const Fields& fields, std::string_view name, const Defaults& defaults) {
  const auto count = fields.integer(name);
  if (!count) return -1;
  if (*count < 0 || *count > defaults.max_top_logprobs)
    invalid(std::string(name), fmt::format("'{}' must be an integer between 0 and {}.", name,
                                           defaults.max_top_logprobs));
  return int(*count);
}

// An image_url part's image: the bytes of a base64 data URL.
std::string parse_image_part(const Fields& part, const std::string& param) {
  constexpr std::array<std::string_view, 2> kImageFields = {"type", "image_url"};
  part.check_known({kImageFields});
  const json* image = part.get("image_url");
  if (!image) invalid(param + ".image_url", fmt::format("'{}.image_url' is required.", param));
  std::string url;
  if (image->is_string()) {
    url = image->get<std::string>();
  } else if (image->is_object() && image->contains("url") && image->at("url").is_string()) {
    url = image->at("url").get<std::string>();
  } else {
    wrong_type(param + ".image_url", "an object with a 'url' string", *image);
  }
  const size_t comma = url.find(',');
  const std::string head = url.substr(0, comma == std::string::npos ? 0 : comma);
  if (url.rfind("data:image/", 0) != 0 || comma == std::string::npos || head.size() < 7 ||
      head.substr(head.size() - 7) != ";base64")
    invalid(param + ".image_url.url",
            "Only base64 data URLs ('data:image/png;base64,...') are accepted: this server "
            "fetches nothing.");
  auto bytes = decode_base64(std::string_view(url).substr(comma + 1));
  if (!bytes || bytes->empty())
    invalid(param + ".image_url.url", "The data URL's image is not valid base64.");
  return std::move(*bytes);
}

// A message's content: a string, or text parts joined by newlines (each
// image part an "<image>" marker, its bytes in `images`).
std::string parse_content(const Fields& message, const std::string& role, const Defaults& defaults,
                          std::vector<std::string>& images) {
  const std::string param = message.param("content");
  const json* content = message.get("content");
  if (!content) {
    if (role == "assistant") return "";  // OpenAI lets an assistant turn be null
    invalid(param, fmt::format("'{}' is required.", param));
  }
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) wrong_type(param, "a string or an array of content parts", *content);
  std::string text;
  for (size_t j = 0; j < content->size(); ++j) {
    const json& part = (*content)[j];
    const std::string part_param = fmt::format("{}[{}]", param, j);
    if (!part.is_object()) wrong_type(part_param, "an object", part);
    const Fields part_fields(part, part_param + ".");
    const auto type = part_fields.string("type");
    if (!type) invalid(part_param + ".type", fmt::format("'{}.type' is required.", part_param));
    if (*type == "image_url" && defaults.images) {
      images.push_back(parse_image_part(part_fields, part_param));
      if (j > 0) text += '\n';
      text += "<image>";
      continue;
    }
    if (*type == "image_url" || *type == "input_image" || *type == "image")
      invalid(part_param, defaults.images
                              ? "Images come as content parts of type 'image_url'."
                              : "Images are not supported: this server serves a text-only model.");
    if (*type != "text")
      invalid(part_param + ".type",
              fmt::format("Content parts of type '{}' are not supported; only 'text' is.", *type));
    constexpr std::array<std::string_view, 2> kPartFields = {"type", "text"};
    part_fields.check_known({kPartFields});
    const auto part_text = part_fields.string("text");
    if (!part_text)
      invalid(part_param + ".text", fmt::format("'{}.text' is required.", part_param));
    if (j > 0) text += '\n';
    text += *part_text;
  }
  return text;
}

Message parse_message(const json& value, size_t index, const Defaults& defaults) {
  const std::string param = fmt::format("messages[{}]", index);
  if (!value.is_object()) wrong_type(param, "an object", value);
  const Fields fields(value, param + ".");
  // Turn fields of tools and audio: a 400 unless null.
  for (const char* name : {"tool_calls", "tool_call_id", "function_call", "audio"})
    if (fields.get(name)) unsupported(fields.param(name));
  constexpr std::array<std::string_view, 8> kMessageFields = {
      "role", "content", "name", "tool_calls", "tool_call_id", "function_call", "audio", "refusal"};
  fields.check_known({kMessageFields});
  fields.string("name");  // checked, not used
  fields.string("refusal");
  Message message;
  const auto role = fields.string("role");
  if (!role) invalid(fields.param("role"), fmt::format("'{}.role' is required.", param));
  if (*role != "system" && *role != "user" && *role != "assistant")
    invalid(fields.param("role"),
            fmt::format("Invalid value: '{}'. Supported values are: 'system', 'user' and "
                        "'assistant'.",
                        *role));
  message.role = *role;
  message.content = parse_content(fields, message.role, defaults, message.images);
  return message;
}

// A conversation render_chat can continue: an optional system message
// first, then turns, the last the user's, and some text somewhere.
std::vector<Message> parse_messages(const Fields& fields, const Defaults& defaults) {
  const json* value = fields.get("messages");
  if (!value) invalid("messages", "'messages' is required.");
  if (!value->is_array()) wrong_type("messages", "an array", *value);
  if (value->empty()) invalid("messages", "'messages' must hold at least one message.");
  std::vector<Message> messages;
  for (size_t i = 0; i < value->size(); ++i) {
    messages.push_back(parse_message((*value)[i], i, defaults));
    if (i > 0 && messages.back().role == "system")
      invalid(fmt::format("messages[{}].role", i),
              "A system message may only come first in the conversation.");
  }
  if (messages.back().role != "user")
    invalid("messages", "The last message must be the user's: the model answers it.");
  if (std::all_of(messages.begin(), messages.end(),
                  [](const Message& m) { return m.content.empty(); }))
    invalid("messages", "Every message is empty: there is nothing to answer.");
  return messages;
}

// Logprobs as JSON can hold them.
double finite_logprob(double logprob) {
  return std::isnan(logprob) ? kLowestLogprob : std::max(logprob, kLowestLogprob);
}

// The alternatives the request asked for (at most top_logprobs of them).
size_t top_count(const CompletionRequest& request, const TokenLogprob& token) {
  return std::min(token.top.size(), size_t(std::max(request.top_logprobs, 0)));
}

ordered_json completion_logprobs(const CompletionRequest& request,
                                 const std::vector<TokenLogprob>& tokens) {
  if (request.top_logprobs < 0) return nullptr;
  ordered_json out = {{"tokens", ordered_json::array()},
                      {"token_logprobs", ordered_json::array()},
                      {"top_logprobs", ordered_json::array()},
                      {"text_offset", ordered_json::array()}};
  size_t offset = 0;
  for (const TokenLogprob& token : tokens) {
    out["tokens"].push_back(token.token);
    out["token_logprobs"].push_back(finite_logprob(token.logprob));
    ordered_json top = ordered_json::object();
    for (size_t k = 0; k < top_count(request, token); ++k)
      top[token.top[k].first] = finite_logprob(token.top[k].second);
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(offset);
    offset += token.token.size();
  }
  return out;
}

ordered_json bytes_of(const std::string& text) {
  ordered_json bytes = ordered_json::array();
  for (const char c : text) bytes.push_back(int(static_cast<unsigned char>(c)));
  return bytes;
}

ordered_json chat_logprobs(const CompletionRequest& request,
                           const std::vector<TokenLogprob>& tokens) {
  if (request.top_logprobs < 0) return nullptr;
  ordered_json content = ordered_json::array();
  for (const TokenLogprob& token : tokens) {
    ordered_json top = ordered_json::array();
    for (size_t k = 0; k < top_count(request, token); ++k)
      top.push_back({{"token", token.top[k].first},
                     {"logprob", finite_logprob(token.top[k].second)},
                     {"bytes", bytes_of(token.top[k].first)}});
    content.push_back({{"token", token.token},
                       {"logprob", finite_logprob(token.logprob)},
                       {"bytes", bytes_of(token.token)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

ordered_json finish_reason(const std::string& reason) {
  return reason.empty() ? ordered_json(nullptr) : ordered_json(reason);
}

ordered_json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

ordered_json response_head(const ResponseId& id, std::string_view object) {
  return {{"id", id.id}, {"object", object}, {"created", id.created}, {"model", id.model}};
}

// Invalid UTF-8 (a token that ends mid-character) becomes U+FFFD, never an exception.
std::string dump(const ordered_json& value) {
  return value.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace

std::string error_body(const ApiError& error) {
  const auto null_if_empty = [](const std::string& s) {
    return s.empty() ? ordered_json(nullptr) : ordered_json(s);
  };
  return dump({{"error",
                {{"message", error.message},
                 {"type", error.type},
                 {"param", null_if_empty(error.param)},
                 {"code", null_if_empty(error.code)}}}});
}

std::string render_chat(const std::vector<Message>& messages) {
  std::string out;
  for (const Message& message : messages) {
    if (message.role == "system") {
      if (!message.content.empty()) out += message.content + "\n\n";
    } else {
      out += message.role == "user" ? "### User:\n" : "### Assistant:\n";
      out += message.content + "\n\n";
    }
  }
  return out + "### Assistant:\n";
}

CompletionRequest parse_completion(std::string_view body, const Defaults& defaults) {
  const json object = parse_object(body);
  const Fields fields(object, "");
  fields.check_known({kCommonFields, kCompletionFields});
  CompletionRequest request;
  parse_common(fields, defaults, request);

  const json* prompt = fields.get("prompt");
  if (!prompt) invalid("prompt", "'prompt' is required.");
  if (prompt->is_array()) {
    if (std::any_of(prompt->begin(), prompt->end(),
                    [](const json& p) { return p.is_number() || p.is_array(); }))
      invalid("prompt", "Prompts of token ids are not supported; send the prompt as text.");
    if (prompt->size() != 1)
      invalid("prompt", prompt->empty() ? "'prompt' must not be empty."
                                        : "This server takes one prompt per request; send "
                                          "several requests instead of a list of prompts.");
    prompt = &(*prompt)[0];
  }
  if (!prompt->is_string()) wrong_type("prompt", "a string", *prompt);
  request.prompt = prompt->get<std::string>();
  if (request.prompt.empty()) invalid("prompt", "'prompt' must not be empty.");

  request.top_logprobs = parse_top_logprobs(fields, "logprobs", defaults);
  if (fields.boolean("echo").value_or(false)) unsupported("echo", "true");
  if (const auto best_of = fields.integer("best_of"); best_of && *best_of != 1)
    unsupported("best_of", "other than 1");
  if (const auto suffix = fields.string("suffix"); suffix && !suffix->empty())
    unsupported("suffix", "(insertion)");
  return request;
}

std::optional<std::string> decode_base64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int count = 0;
  for (const char c : text) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | uint32_t(v);
    if (++count == 4) {
      out += char((bits >> 16) & 0xff);
      out += char((bits >> 8) & 0xff);
      out += char(bits & 0xff);
      bits = 0;
      count = 0;
    }
  }
  if (count == 2) out += char((bits >> 4) & 0xff);
  if (count == 3) {
    out += char((bits >> 10) & 0xff);
    out += char((bits >> 2) & 0xff);
  }
  return out;
}

CompletionRequest parse_chat(std::string_view body, const Defaults& defaults) {
  const json object = parse_object(body);
  const Fields fields(object, "");
  fields.check_known({kCommonFields, kChatFields, kChatUnsupported});
  for (const std::string_view name : kChatUnsupported) {
    const json* value = fields.get(name);
    // {"type": "text"} is what OpenAI does anyway.
    if (name == "response_format" && value && value->is_object() && value->size() == 1 &&
        value->contains("type") && value->at("type") == "text")
      continue;
    if (value) unsupported(std::string(name));
  }
  CompletionRequest request;
  request.chat = true;
  parse_common(fields, defaults, request);
  // max_completion_tokens replaces the deprecated max_tokens and wins over it.
  if (const auto max_tokens = parse_max_tokens(fields, "max_completion_tokens"))
    request.max_tokens = max_tokens;

  request.messages = parse_messages(fields, defaults);
  request.prompt = render_chat(request.messages);
  request.stop.emplace_back(kChatStop);

  const bool logprobs = fields.boolean("logprobs").value_or(false);
  const int top_logprobs = parse_top_logprobs(fields, "top_logprobs", defaults);
  if (top_logprobs >= 0 && !logprobs)
    invalid("top_logprobs", "'top_logprobs' is only allowed when 'logprobs' is true.");
  if (logprobs) request.top_logprobs = std::max(top_logprobs, 0);
  return request;
}

std::string response_body(const CompletionRequest& request, const ResponseId& id,
                          const Choice& choice, const Usage& usage,
                          const std::vector<int32_t>& prompt_token_ids) {
  ordered_json out = response_head(id, request.chat ? "chat.completion" : "text_completion");
  ordered_json first = {{"index", 0}};
  if (request.chat) {
    first["message"] = {{"role", "assistant"}, {"content", choice.text}};
    first["logprobs"] = chat_logprobs(request, choice.logprobs);
  } else {
    first["text"] = choice.text;
    first["logprobs"] = completion_logprobs(request, choice.logprobs);
  }
  first["finish_reason"] = finish_reason(choice.finish_reason);
  if (request.return_token_ids) first["token_ids"] = choice.token_ids;
  out["choices"] = ordered_json::array({std::move(first)});
  out["usage"] = usage_json(usage);
  if (request.return_token_ids) out["prompt_token_ids"] = prompt_token_ids;
  return dump(out);
}

std::string stream_chunk(const CompletionRequest& request, const ResponseId& id,
                         const Choice& delta, bool first) {
  ordered_json out = response_head(id, request.chat ? "chat.completion.chunk" : "text_completion");
  ordered_json choice = {{"index", 0}};
  if (request.chat) {
    // The role once; the content whenever there is some, and never alone
    // beside the finish_reason (OpenAI's last chunk has delta {}).
    ordered_json message = ordered_json::object();
    if (first) message["role"] = "assistant";
    if (first || !delta.text.empty() || delta.finish_reason.empty())
      message["content"] = delta.text;
    choice["delta"] = std::move(message);
    choice["logprobs"] = chat_logprobs(request, delta.logprobs);
  } else {
    choice["text"] = delta.text;
    choice["logprobs"] = completion_logprobs(request, delta.logprobs);
  }
  choice["finish_reason"] = finish_reason(delta.finish_reason);
  if (request.return_token_ids) choice["token_ids"] = delta.token_ids;
  out["choices"] = ordered_json::array({std::move(choice)});
  out["usage"] = nullptr;
  return "data: " + dump(out) + "\n\n";
}

std::string stream_usage_chunk(const CompletionRequest& request, const ResponseId& id,
                               const Usage& usage) {
  ordered_json out = response_head(id, request.chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = ordered_json::array();
  out["usage"] = usage_json(usage);
  return "data: " + dump(out) + "\n\n";
}

std::string models_body(const std::string& model, int64_t created) {
  return dump({{"object", "list"},
               {"data", ordered_json::array({{{"id", model},
                                              {"object", "model"},
                                              {"created", created},
                                              {"owned_by", "turbine"}}})}});
}

}  // namespace turbine::infer::openai
