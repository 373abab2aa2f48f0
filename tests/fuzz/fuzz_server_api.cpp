// libFuzzer target for the request parsing of `xcaption serve` (src/server/api.*): the first byte
// picks the parser, the rest is the request data:
//  0: a /v1/chat/completions body (parse_chat_request, both ways of treating text parts);
//  1: base64: decode_base64 of the bytes, and decode(encode(bytes)) == bytes;
//  2: a data: URL (decode_data_url);
//  3: an upload's header (probe_image, check_image_header with a 40 M pixel cap);
//  4: a generation field "NAME\0VALUE" with VALUE as a JSON value or as a form string;
//  5: stable_text_length, which must return a prefix length that ends on a UTF-8 boundary.
// Only HttpError may come out of a parser; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/server/api.hpp"
#include "tests/fuzz/fuzz_util.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_server_api: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption::server;
  if (size < 1) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 6) {
      case 0:
        for (const ChatText t : {ChatText::Prompt, ChatText::Ignore}) {
          try {
            const ChatRequest r = parse_chat_request(body, t);
            if (r.image.empty()) fail("a chat request accepted without image bytes");
          } catch (const HttpError& e) {
            if (e.status() != 400) fail("a chat request refused with a status other than 400");
          }
        }
        break;
      case 1: {
        base64_decode(body);
        const auto back = base64_decode(base64_encode(body));
        if (!back || *back != body) fail("base64 round trip");
        break;
      }
      case 2: decode_data_url(body); break;
      case 3:
        if (const auto h = probe_image(body); h && (h->width < 0 || h->height < 0)) fail("a negative image size");
        check_image_header(body, 40'000'000);
        break;
      case 4: {
        const auto [name, value] = xcaption::fuzz::split(body, std::string_view("\0", 1));
        xcaption::CaptionRequest r;
        const auto j = nlohmann::json::parse(value, nullptr, false);
        if (!j.is_discarded()) {
          try {
            set_generation_field(r, name, j);
          } catch (const HttpError&) {
          }
        }
        set_generation_field(r, name, nlohmann::json(std::string(value)));
        break;
      }
      case 5: {
        const std::size_t n = stable_text_length(body);
        if (n > body.size()) fail("stable_text_length past the end");
        if (n < body.size() && (static_cast<unsigned char>(body[n]) & 0xc0) == 0x80 &&
            n > 0 && (static_cast<unsigned char>(body[n - 1]) & 0x80) != 0 &&
            (static_cast<unsigned char>(body[n - 1]) & 0xc0) != 0x80)
          fail("stable_text_length cut after a lead byte");
        break;
      }
    }
  } catch (const HttpError&) {
  }
  return 0;
}
