#include "src/server/api.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace xcaption::server {

using nlohmann::json;

std::string error_type(int status) {
  switch (status) {
    case 400: case 404: case 405: case 413: case 415: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    case 503: return "server_busy";
    case 504: return "timeout";
  }
  return "server_error";
}

std::string error_body(int status, const std::string& code, const std::string& message) {
  const json j = {{"error", {{"message", message}, {"type", error_type(status)}, {"code", code}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- base64 -------------------------------------------------------------------------------------

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                   static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                   static_cast<unsigned char>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (const std::size_t left = bytes.size() - i; left > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (left == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += left == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  static const std::array<int, 256> kValue = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < 62; ++i) t[static_cast<unsigned char>(a[i])] = i;
    t['+'] = t['-'] = 62;
    t['/'] = t['_'] = 63;
    return t;
  }();
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t padding = 0;
  for (const char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = kValue[static_cast<unsigned char>(c)];
    if (v < 0 || padding > 0) return std::nullopt;  // a stray character, or data after '='
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // 6 left-over bits cannot hold a byte; left-over bits must be zero; at most two '='.
  if (bits == 6 || (acc & ((1u << bits) - 1)) != 0 || padding > 2) return std::nullopt;
  return out;
}

std::string decode_data_url(std::string_view url) {
  if (url.substr(0, 5) != "data:") {
    const auto colon = url.find(':');
    const std::string scheme = colon == std::string_view::npos || colon > 16 ? std::string("a relative") : std::string(url.substr(0, colon));
    throw HttpError(400, "unsupported_url",
                    fmt::format("image_url must be a data: URL (data:image/png;base64,...); {} URL is not "
                                "fetched: this server never downloads anything",
                                scheme));
  }
  const auto comma = url.find(',');
  if (comma == std::string_view::npos) throw HttpError(400, "invalid_data_url", "the data: URL has no ',' before its data");
  const std::string_view meta = url.substr(5, comma - 5);
  if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
    throw HttpError(400, "invalid_data_url", "the data: URL must be base64-encoded (data:image/...;base64,...)");
  auto bytes = base64_decode(url.substr(comma + 1));
  if (!bytes) throw HttpError(400, "invalid_base64", "the data: URL's base64 data is malformed");
  if (bytes->empty()) throw HttpError(400, "invalid_image", "the data: URL holds no data");
  return std::move(*bytes);
}

// ---- image headers (the probe itself is src/io/image_header.cpp) -----------------------------------

ImageHeader check_image_header(std::string_view bytes, std::int64_t max_pixels) {
  const auto header = probe_image(bytes);
  if (!header)
    throw HttpError(400, "invalid_image",
                    bytes.empty() ? std::string("the request holds no image")
                                  : "the upload is not a PNG, JPEG, WebP, BMP, TIFF or PNM image (or its header is cut short)");
  if (header->width < 1 || header->height < 1)
    throw HttpError(400, "invalid_image", fmt::format("the {} header declares a {}x{} image", header->format,
                                                       header->width, header->height));
  if (exceeds_pixels(header->width, header->height, max_pixels))
    throw HttpError(413, "image_too_large",
                    fmt::format("the {} image declares {}x{} = {:.0f} pixels, more than this server's --max-pixels {}",
                                header->format, header->width, header->height,
                                static_cast<double>(header->width) * static_cast<double>(header->height),
                                max_pixels));
  return *header;
}

// ---- generation fields ----------------------------------------------------------------------------

namespace {
constexpr std::int64_t kMaxBeams = 16;
constexpr std::int64_t kMaxNewTokens = 1024;

std::string value_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::int64_t integer_field(std::string_view name, const json& v, std::int64_t lo, std::int64_t hi) {
  std::optional<std::int64_t> n;
  if (v.is_number_integer()) {
    n = v.get<std::int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::abs(v.get<double>()) < 1e15) {
    n = static_cast<std::int64_t>(v.get<double>());
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    std::size_t used = 0;
    try {
      n = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) n.reset();
  }
  if (!n) throw HttpError(400, "invalid_parameter", fmt::format("{} must be an integer, got {}", name, value_text(v)));
  if (*n < lo || *n > hi)
    throw HttpError(400, "invalid_parameter", fmt::format("{} must lie in [{}, {}], got {}", name, lo, hi, *n));
  return *n;
}

double number_field(std::string_view name, const json& v) {
  std::optional<double> x;
  if (v.is_number()) {
    x = v.get<double>();
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    std::size_t used = 0;
    try {
      x = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) x.reset();
  }
  if (!x || !std::isfinite(*x))
    throw HttpError(400, "invalid_parameter", fmt::format("{} must be a number, got {}", name, value_text(v)));
  return *x;
}
}  // namespace

bool is_generation_field(std::string_view n) {
  return n == "beams" || n == "num_beams" || n == "max_new_tokens" || n == "min_new_tokens" ||
         n == "length_penalty" || n == "early_stopping" || n == "no_repeat_ngram_size" ||
         n == "repetition_penalty" || n == "prompt" || n == "task" || n == "text";
}

void set_generation_field(CaptionRequest& r, std::string_view name, const json& v) {
  GenerationOptions& g = r.generation;
  if (name == "beams" || name == "num_beams") {
    g.num_beams = integer_field(name, v, 1, kMaxBeams);
  } else if (name == "max_new_tokens") {
    g.max_new_tokens = integer_field(name, v, 1, kMaxNewTokens);
  } else if (name == "min_new_tokens") {
    g.min_new_tokens = integer_field(name, v, 0, kMaxNewTokens);
  } else if (name == "no_repeat_ngram_size") {
    g.no_repeat_ngram_size = integer_field(name, v, 0, kMaxNewTokens);
  } else if (name == "length_penalty") {
    g.length_penalty = number_field(name, v);
  } else if (name == "repetition_penalty") {
    const double p = number_field(name, v);
    if (p <= 0) throw HttpError(400, "invalid_parameter", fmt::format("repetition_penalty must be positive, got {}", p));
    g.repetition_penalty = p;
  } else if (name == "early_stopping") {
    std::string s = v.is_boolean() ? (v.get<bool>() ? "true" : "false") : v.is_string() ? v.get<std::string>() : "";
    if (s != "true" && s != "false" && s != "never")
      throw HttpError(400, "invalid_parameter",
                      fmt::format("early_stopping must be true, false or \"never\", got {}", value_text(v)));
    g.early_stopping = s;
  } else if (name == "prompt") {
    if (!v.is_string()) throw HttpError(400, "invalid_parameter", "prompt must be a string");
    if (!v.get<std::string>().empty()) r.prompt = v.get<std::string>();
  } else if (name == "task") {  // a task model's task, e.g. Florence-2's "<OD>"
    if (!v.is_string()) throw HttpError(400, "invalid_parameter", "task must be a string");
    if (!v.get<std::string>().empty()) r.task = v.get<std::string>();
  } else if (name == "text") {  // the task's input
    if (!v.is_string()) throw HttpError(400, "invalid_parameter", "text must be a string");
    r.task_text = v.get<std::string>();
  } else {
    throw HttpError(400, "invalid_parameter", fmt::format("unknown generation field '{}'", name));
  }
}

// ---- chat completions -----------------------------------------------------------------------------

namespace {
[[noreturn]] void bad(const std::string& code, const std::string& message) { throw HttpError(400, code, message); }

// Fields whose presence asks for something this server cannot do, unless they hold the value that
// means "off".
void refuse_sampling(const json& body) {
  auto number = [&](const char* key) -> std::optional<double> {
    if (!body.contains(key) || body[key].is_null()) return std::nullopt;
    if (!body[key].is_number()) bad("invalid_parameter", fmt::format("{} must be a number", key));
    return body[key].get<double>();
  };
  const char* deterministic = "xcaption decodes deterministically (greedy or beam search); leave it out";
  if (auto t = number("temperature"); t && *t != 0)
    bad("unsupported_parameter", fmt::format("temperature {} asks for sampling: {} or set 0", *t, deterministic));
  if (auto p = number("top_p"); p && *p != 1)
    bad("unsupported_parameter", fmt::format("top_p {} asks for sampling: {} or set 1", *p, deterministic));
  if (auto k = number("top_k"); k && *k > 0)
    bad("unsupported_parameter", fmt::format("top_k {} asks for sampling: {}", *k, deterministic));
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (auto x = number(key); x && *x != 0)
      bad("unsupported_parameter",
          fmt::format("{} is not supported; repetition_penalty and no_repeat_ngram_size are", key));
  if (body.contains("n") && !body["n"].is_null() && body["n"] != 1)
    bad("unsupported_parameter", "n must be 1: one caption per request (beams picks the best of several)");
  auto present = [&](const char* key) {
    if (!body.contains(key)) return false;
    const json& v = body[key];
    return !(v.is_null() || (v.is_boolean() && !v.get<bool>()) || (v.is_array() && v.empty()) ||
             (v.is_object() && v.empty()));
  };
  for (const char* key : {"logprobs", "top_logprobs", "logit_bias", "tools", "functions", "tool_choice",
                          "function_call", "stop", "audio", "modalities", "prediction"})
    if (present(key)) bad("unsupported_parameter", fmt::format("{} is not supported by this server", key));
  if (present("response_format")) {
    const json& f = body["response_format"];
    if (!(f.is_object() && f.value("type", "") == "text"))
      bad("unsupported_parameter", "response_format must be {\"type\": \"text\"}: a caption is plain text");
  }
}
}  // namespace

ChatRequest parse_chat_request(std::string_view text, ChatText chat_text) {
  json body = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) bad("invalid_json", "the request body is not valid JSON");
  if (!body.is_object()) bad("invalid_request", "the request body must be a JSON object");
  refuse_sampling(body);
  ChatRequest out;
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    bad("invalid_request", "messages must be a non-empty array");
  std::optional<std::string> url;
  std::vector<std::string> texts;
  for (const json& m : body["messages"]) {
    if (!m.is_object()) bad("invalid_request", "each message must be an object");
    const std::string role = m.contains("role") && m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (!m.contains("content") || m["content"].is_null()) continue;
    const json& content = m["content"];
    if (content.is_string()) {
      if (role == "user") texts.push_back(content.get<std::string>());
      continue;
    }
    if (!content.is_array()) bad("invalid_request", "a message's content must be a string or an array of parts");
    std::vector<std::string> message_texts;
    bool has_image = false;
    for (const json& part : content) {
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        bad("invalid_request", "each content part must be an object with a type");
      const std::string type = part["type"].get<std::string>();
      if (type == "text") {
        if (!part.contains("text") || !part["text"].is_string()) bad("invalid_request", "a text part needs a text string");
        message_texts.push_back(part["text"].get<std::string>());
      } else if (type == "image_url") {
        const json& iu = part.contains("image_url") ? part["image_url"] : json();
        const json u = iu.is_string() ? iu : iu.is_object() && iu.contains("url") ? iu["url"] : json();
        if (!u.is_string()) bad("invalid_request", "an image_url part needs image_url.url");
        if (url) bad("too_many_images", "one image per request: this request holds several image_url parts");
        url = u.get<std::string>();
        has_image = true;
      } else {
        bad("unsupported_content", fmt::format("content parts of type '{}' are not supported (text, image_url)", type));
      }
    }
    // The text that goes with the image is the prompt; text of other messages (system
    // instructions, earlier turns) is not.
    if (has_image) texts = message_texts;
  }
  if (!url) bad("missing_image", "the messages hold no image_url part (data:image/...;base64,...)");
  out.image = decode_data_url(*url);

  std::string prompt;
  for (const auto& t : texts) {
    if (t.empty()) continue;
    if (!prompt.empty()) prompt += ' ';
    prompt += t;
  }
  if (chat_text == ChatText::Prompt && !prompt.empty()) out.request.prompt = prompt;

  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (body.contains(key) && !body[key].is_null()) set_generation_field(out.request, "max_new_tokens", body[key]);
  for (auto it = body.begin(); it != body.end(); ++it)
    if (is_generation_field(it.key()) && it.key() != "prompt" && !it.value().is_null())
      set_generation_field(out.request, it.key(), it.value());
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) bad("invalid_parameter", "stream must be true or false");
    out.stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && body["stream_options"].is_object())
    out.include_usage = body["stream_options"].value("include_usage", false);
  return out;
}

std::string finish_reason(const CaptionResult& r, const ModelInfo& info) {
  if (!r.token_ids.empty() &&
      std::find(info.eos_token_ids.begin(), info.eos_token_ids.end(), r.token_ids.back()) != info.eos_token_ids.end())
    return "stop";
  return "length";
}

json usage_json(const CaptionResult& r) {
  const auto prompt = static_cast<std::int64_t>(r.prompt_ids.size());
  const auto completion = static_cast<std::int64_t>(r.token_ids.size());
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

json chat_completion_json(const std::string& id, std::int64_t created, const std::string& model,
                          const CaptionResult& r, const ModelInfo& info) {
  return {{"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"choices",
           {{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", r.caption}}},
             {"logprobs", nullptr},
             {"finish_reason", finish_reason(r, info)}}}},
          {"usage", usage_json(r)}};
}

json chat_chunk_json(const std::string& id, std::int64_t created, const std::string& model, const json& delta,
                     const std::string& reason) {
  return {{"id", id},
          {"object", "chat.completion.chunk"},
          {"created", created},
          {"model", model},
          {"choices",
           {{{"index", 0},
             {"delta", delta},
             {"logprobs", nullptr},
             {"finish_reason", reason.empty() ? json(nullptr) : json(reason)}}}}};
}

std::size_t stable_text_length(std::string_view text) {
  std::size_t n = text.size();
  // Drop trailing replacement characters (the decoder's mark for a cut multi-byte character).
  while (n >= 3 && text.substr(n - 3, 3) == "\xEF\xBF\xBD") n -= 3;
  // And an incomplete UTF-8 sequence, should a tokenizer hand raw bytes through.
  std::size_t lead = n;
  for (std::size_t back = 0; back < 4 && lead > 0; ++back) {
    const auto c = static_cast<unsigned char>(text[lead - 1]);
    if ((c & 0xc0) != 0x80) {
      const std::size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
      if (n - (lead - 1) < need) n = lead - 1;
      break;
    }
    --lead;
  }
  return n;
}

}  // namespace xcaption::server
