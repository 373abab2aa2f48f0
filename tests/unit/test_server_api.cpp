// The server's request parsing and answers (src/server/api.hpp), without sockets.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "src/server/api.hpp"
#include "src/server/engine.hpp"

using namespace xcaption;
using namespace xcaption::server;
using nlohmann::json;

namespace {
// A minimal PNG header (signature + IHDR) declaring width x height.
std::string png_header(std::uint32_t width, std::uint32_t height) {
  std::string s("\x89PNG\r\n\x1a\n", 8);
  s += std::string("\0\0\0\x0dIHDR", 8);
  for (std::uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  s += std::string("\x08\x02\0\0\0", 5);
  return s;
}

int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.status();
  }
  return 0;
}

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.code();
  }
  return "";
}

std::string chat_body(const json& extra = json::object(), const std::string& url = "data:image/png;base64,iVBORw0KGgo=") {
  json j = {{"model", "m"},
            {"messages",
             {{{"role", "user"},
               {"content", {{{"type", "text"}, {"text", "a photo of"}}, {{"type", "image_url"}, {"image_url", {{"url", url}}}}}}}}}};
  j.update(extra);
  return j.dump();
}
}  // namespace

TEST_CASE("base64 round-trips and refuses garbage", "[server]") {
  for (const std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("abc"),
                              std::string("\x00\xff\x10\x80 binary", 11)}) {
    const std::string e = base64_encode(s);
    CHECK(e.size() % 4 == 0);
    REQUIRE(base64_decode(e));
    CHECK(*base64_decode(e) == s);
  }
  CHECK(base64_encode("Man") == "TWFu");
  CHECK(base64_encode("Ma") == "TWE=");
  CHECK(*base64_decode("TWE") == "Ma");            // padding optional
  CHECK(*base64_decode("TW\nFu") == "Man");        // line breaks ignored
  CHECK(*base64_decode("-_8=") == *base64_decode("+/8="));  // URL-safe alphabet
  CHECK_FALSE(base64_decode("TW*u"));               // stray character
  CHECK_FALSE(base64_decode("TWFuT"));              // a lone sextet
  CHECK_FALSE(base64_decode("TWF="));               // bits set after the last byte
  CHECK_FALSE(base64_decode("TW=Fu"));              // data after padding
}

TEST_CASE("data URLs: only base64 data, never a fetch", "[server]") {
  CHECK(decode_data_url("data:image/png;base64,TWFu") == "Man");
  CHECK(code_of([] { decode_data_url("https://example.com/cat.png"); }) == "unsupported_url");
  CHECK(code_of([] { decode_data_url("file:///etc/passwd"); }) == "unsupported_url");
  CHECK(code_of([] { decode_data_url("data:image/png,rawtext"); }) == "invalid_data_url");
  CHECK(code_of([] { decode_data_url("data:image/png;base64,!!!"); }) == "invalid_base64");
  CHECK(status_of([] { decode_data_url("data:image/png;base64,"); }) == 400);
}

TEST_CASE("image headers are read without decoding, and the pixel cap applies to them", "[server]") {
  auto h = probe_image(png_header(640, 480));
  REQUIRE(h);
  CHECK(h->format == "png");
  CHECK(h->width == 640);
  CHECK(h->height == 480);
  CHECK(check_image_header(png_header(100, 100), 10'000).width == 100);
  CHECK(status_of([] { check_image_header(png_header(100000, 100000), 40'000'000); }) == 413);
  CHECK(code_of([] { check_image_header(png_header(100000, 100000), 40'000'000); }) == "image_too_large");
  CHECK(status_of([] { check_image_header("GIF89a...", 100); }) == 400);
  CHECK(status_of([] { check_image_header(png_header(0, 5), 100); }) == 400);
  CHECK_FALSE(probe_image(png_header(4, 4).substr(0, 20)));  // cut inside IHDR

  // JPEG: SOI, an APP0 segment, then SOF0 with height 300, width 500.
  std::string jpeg("\xff\xd8\xff\xe0\x00\x04\x00\x00\xff\xc0\x00\x11\x08\x01\x2c\x01\xf4\x03", 18);
  h = probe_image(jpeg);
  REQUIRE(h);
  CHECK(h->format == "jpeg");
  CHECK(h->width == 500);
  CHECK(h->height == 300);

  // BMP with a BITMAPINFOHEADER: width 7, height -9 (top-down).
  std::string bmp = "BM" + std::string(12, '\0') + std::string("\x28\0\0\0\x07\0\0\0\xf7\xff\xff\xff", 12);
  h = probe_image(bmp);
  REQUIRE(h);
  CHECK(h->width == 7);
  CHECK(h->height == 9);

  h = probe_image("P6\n# comment\n640 480\n255\n");
  REQUIRE(h);
  CHECK(h->format == "pnm");
  CHECK(h->width == 640);
  CHECK(h->height == 480);
}

TEST_CASE("generation fields parse from form strings and JSON, with clear errors", "[server]") {
  CaptionRequest r;
  set_generation_field(r, "beams", json("3"));
  set_generation_field(r, "max_new_tokens", json(7));
  set_generation_field(r, "length_penalty", json("0.5"));
  set_generation_field(r, "early_stopping", json(true));
  set_generation_field(r, "prompt", json("a photo of"));
  CHECK(*r.generation.num_beams == 3);
  CHECK(*r.generation.max_new_tokens == 7);
  CHECK(*r.generation.length_penalty == 0.5);
  CHECK(*r.generation.early_stopping == "true");
  CHECK(*r.prompt == "a photo of");
  CHECK(status_of([&] { set_generation_field(r, "beams", json("two")); }) == 400);
  CHECK(status_of([&] { set_generation_field(r, "beams", json(0)); }) == 400);
  CHECK(status_of([&] { set_generation_field(r, "max_new_tokens", json(1.5)); }) == 400);
  CHECK(status_of([&] { set_generation_field(r, "repetition_penalty", json(-1)); }) == 400);
  CHECK(status_of([&] { set_generation_field(r, "early_stopping", json("maybe")); }) == 400);
  CHECK(is_generation_field("num_beams"));
  CHECK_FALSE(is_generation_field("temperature"));
}

TEST_CASE("chat requests: the image, the prompt, max_tokens and the extensions", "[server]") {
  const ChatRequest c = parse_chat_request(chat_body({{"max_tokens", 9}, {"num_beams", 2}, {"stream", true},
                                                      {"stream_options", {{"include_usage", true}}}}));
  CHECK(c.image == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(*c.request.prompt == "a photo of");
  CHECK(*c.request.generation.max_new_tokens == 9);
  CHECK(*c.request.generation.num_beams == 2);
  CHECK(c.stream);
  CHECK(c.include_usage);
  CHECK_FALSE(parse_chat_request(chat_body(), ChatText::Ignore).request.prompt);
  // The values that mean "no sampling" are accepted.
  CHECK_NOTHROW(parse_chat_request(chat_body({{"temperature", 0}, {"top_p", 1}, {"n", 1}, {"seed", 4}})));
}

TEST_CASE("chat requests: what the server cannot do is a 400 naming it", "[server]") {
  CHECK(code_of([] { parse_chat_request("{not json"); }) == "invalid_json");
  CHECK(code_of([] { parse_chat_request("[1, 2]"); }) == "invalid_request");
  CHECK(code_of([] { parse_chat_request(chat_body({{"n", 2}})); }) == "unsupported_parameter");
  CHECK(code_of([] { parse_chat_request(chat_body({{"temperature", 0.7}})); }) == "unsupported_parameter");
  CHECK(code_of([] { parse_chat_request(chat_body({{"top_p", 0.9}})); }) == "unsupported_parameter");
  CHECK(code_of([] { parse_chat_request(chat_body({{"logprobs", true}})); }) == "unsupported_parameter");
  CHECK(code_of([] { parse_chat_request(chat_body({{"stop", {"."}}})); }) == "unsupported_parameter");
  CHECK(code_of([] { parse_chat_request(chat_body(json::object(), "http://169.254.169.254/latest")); }) == "unsupported_url");
  CHECK(code_of([] { parse_chat_request(chat_body(json::object(), "data:image/png;base64,@@@@")); }) == "invalid_base64");
  CHECK(code_of([] {
          parse_chat_request(json{{"messages", {{{"role", "user"}, {"content", "no image here"}}}}}.dump());
        }) == "missing_image");
  const json two = {{"messages",
                     {{{"role", "user"},
                       {"content",
                        {{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,TWFu"}}}},
                         {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,TWFu"}}}}}}}}}};
  CHECK(code_of([&] { parse_chat_request(two.dump()); }) == "too_many_images");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(status_of([&] { parse_chat_request(deep); }) == 400);
}

TEST_CASE("chat answers have OpenAI's shape", "[server]") {
  CaptionResult r;
  r.caption = "a red circle";
  r.prompt_ids = {1};
  r.token_ids = {5, 6, 2};
  ModelInfo info;
  info.eos_token_ids = {2};
  const json c = chat_completion_json("chatcmpl-1", 7, "m", r, info);
  CHECK(c["object"] == "chat.completion");
  REQUIRE(c["choices"].is_array());
  REQUIRE(c["choices"].size() == 1);
  CHECK(c["choices"][0]["message"]["content"] == "a red circle");
  CHECK(c["choices"][0]["message"]["role"] == "assistant");
  CHECK(c["choices"][0]["finish_reason"] == "stop");
  CHECK(c["usage"]["prompt_tokens"] == 1);
  CHECK(c["usage"]["completion_tokens"] == 3);
  CHECK(c["usage"]["total_tokens"] == 4);
  r.token_ids = {5, 6};
  CHECK(finish_reason(r, info) == "length");
  const json k = chat_chunk_json("chatcmpl-1", 7, "m", {{"content", "a"}}, "");
  CHECK(k["object"] == "chat.completion.chunk");
  REQUIRE(k["choices"].size() == 1);
  CHECK(k["choices"][0]["delta"]["content"] == "a");
  CHECK(k["choices"][0]["finish_reason"].is_null());
  const json e = json::parse(error_body(429, "queue_full", "full"));
  CHECK(e["error"]["message"] == "full");
  CHECK(e["error"]["type"] == "rate_limit_error");
  CHECK(e["error"]["code"] == "queue_full");
}

TEST_CASE("streamed text holds back a character cut between tokens", "[server]") {
  CHECK(stable_text_length("a cat") == 5);
  CHECK(stable_text_length("caf\xEF\xBF\xBD") == 3);  // U+FFFD: the decoder's mark for a cut character
  CHECK(stable_text_length("caf\xC3") == 3);          // an incomplete sequence
  CHECK(stable_text_length("caf\xC3\xA9") == 5);      // a whole one
  CHECK(stable_text_length("\xE2\x82") == 0);
}

TEST_CASE("requests share a batch only with equal settings", "[server]") {
  CaptionRequest a, b;
  CHECK(settings_key(a) == settings_key(b));
  b.generation.num_beams = 2;
  CHECK(settings_key(a) != settings_key(b));
  b = a;
  b.prompt = "x";
  CHECK(settings_key(a) != settings_key(b));
  b = a;
  b.capture_cross_attention = true;
  CHECK(settings_key(a) != settings_key(b));
  // A task model's task and its text each split batches (they set the encoder prompt); no text
  // can pass for another field.
  b = a;
  b.task = "<OD>";
  CHECK(settings_key(a) != settings_key(b));
  CaptionRequest c = b;
  c.task_text = "a car";
  CHECK(settings_key(b) != settings_key(c));
  CaptionRequest d = b;
  d.task = "<OD> x1:a car";
  CHECK(settings_key(c) != settings_key(d));
}

TEST_CASE("task and text are request fields", "[server]") {
  CaptionRequest r;
  CHECK(is_generation_field("task"));
  CHECK(is_generation_field("text"));
  set_generation_field(r, "task", json("<CAPTION_TO_PHRASE_GROUNDING>"));
  set_generation_field(r, "text", json("a green car"));
  CHECK(r.task == "<CAPTION_TO_PHRASE_GROUNDING>");
  CHECK(r.task_text == "a green car");
  CHECK_THROWS_AS(set_generation_field(r, "task", json(3)), HttpError);
}
