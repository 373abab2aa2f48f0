// The HTTP API's data: errors, request parsing (OpenAI chat completions, generation fields, data
// URLs, image headers) and the JSON answers. No sockets here, so every rule has a unit test
// (tests/unit/test_server_api.cpp); src/server/server.cpp wires them to cpp-httplib.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>

#include "src/io/image_header.hpp"

namespace xcaption::server {

/// A request the server answers with an error: {"error": {"message", "type", "code"}} and
/// `status`. `code` is a short machine-readable reason ("queue_full", "invalid_image", ...).
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string code_;
};

/// OpenAI's error `type` for an HTTP status: 400/404/405/413/415 invalid_request_error,
/// 401 authentication_error, 429 rate_limit_error, 503/504 server_busy / timeout, else server_error.
std::string error_type(int status);

/// {"error": {"message", "type", "code"}} as text.
std::string error_body(int status, const std::string& code, const std::string& message);

/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);
/// Decodes standard or URL-safe base64; padding optional, ASCII white space ignored. nullopt for
/// any other character, a lone trailing sextet or bits set after the last byte.
std::optional<std::string> base64_decode(std::string_view text);

/// `data:[MEDIA];base64,DATA` -> the decoded bytes. Throws HttpError 400 for any other URL
/// (http, https, file: the server never fetches anything), a data URL that is not base64, or
/// garbage base64.
std::string decode_data_url(std::string_view url);

/// The image header probe is the library's (src/io/image_header.hpp); the server checks uploads with it.
using xcaption::ImageHeader;
using xcaption::probe_image;

/// Checks an upload before decoding: a known format (else HttpError 400 "invalid_image") whose
/// declared width * height is at most max_pixels (else HttpError 413 "image_too_large").
ImageHeader check_image_header(std::string_view bytes, std::int64_t max_pixels);

/// Generation fields accepted by /caption (form fields and query parameters) and, with the
/// same names, as extensions of /v1/chat/completions: beams (or num_beams), max_new_tokens,
/// min_new_tokens, length_penalty, early_stopping, no_repeat_ngram_size, repetition_penalty,
/// prompt. True when `name` is one of them.
bool is_generation_field(std::string_view name);
/// Sets one generation field from a JSON value (a number, bool or string; strings are parsed
/// for numeric fields, as form fields arrive). Throws HttpError 400 naming the field for a value
/// of the wrong kind or out of range.
void set_generation_field(CaptionRequest& request, std::string_view name, const nlohmann::json& value);

/// What the chat completion asks for.
struct ChatRequest {
  std::string image;  // the image file's bytes
  CaptionRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

/// How a chat request's text becomes the caption request.
enum class ChatText {
  Prompt,  // the text part is the caption's prompt (transformers' text argument)
  Ignore,  // the text is an instruction for chat models ("Describe this image"): dropped
};

/// Parses a /v1/chat/completions body: exactly one image_url part holding a data: URL, in the
/// messages; the text parts of that message, joined with a space, are the prompt (ChatText);
/// max_tokens / max_completion_tokens -> max_new_tokens; the generation fields above as
/// extensions. Throws HttpError 400 for invalid JSON, n != 1, sampling (temperature > 0,
/// top_p < 1, penalties != 0, logit_bias, logprobs, tools, stop sequences, response formats
/// other than text), remote URLs and anything malformed.
ChatRequest parse_chat_request(std::string_view body, ChatText text = ChatText::Prompt);

/// Why generation ended, in OpenAI's words: "stop" when the last token is an end token,
/// "length" when the length limit cut it.
std::string finish_reason(const CaptionResult& result, const ModelInfo& info);

/// A non-streamed chat.completion object.
nlohmann::json chat_completion_json(const std::string& id, std::int64_t created, const std::string& model,
                                    const CaptionResult& result, const ModelInfo& info);
/// usage: prompt_tokens = decoder prompt ids, completion_tokens = generated ids (end token included).
nlohmann::json usage_json(const CaptionResult& result);
/// One chat.completion.chunk with `delta` and `finish_reason` (null when empty).
nlohmann::json chat_chunk_json(const std::string& id, std::int64_t created, const std::string& model,
                               const nlohmann::json& delta, const std::string& finish_reason);

/// The longest prefix of `text` that does not end inside a character cut by the tokenizer
/// (a trailing U+FFFD or an incomplete UTF-8 sequence): what a stream may send now.
std::size_t stable_text_length(std::string_view text);

}  // namespace xcaption::server
