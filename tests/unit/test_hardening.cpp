// Limits on untrusted input (README "Untrusted input") and the regression tests of what the
// fuzzers and sanitizers found (tests/fuzz/README.md "Findings"): each finding's input is also in
// tests/fuzz/corpus/TARGET/ and runs at every `ctest -L fuzz`.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include <xcaption/errors.hpp>
#include <xcaption/image.hpp>
#include <xcaption/video.hpp>

#include "src/io/image_header.hpp"
#include "src/io/json_config.hpp"
#include "src/server/api.hpp"
#include "tests/test_util.hpp"

using namespace xcaption;
using Catch::Matchers::Contains;

namespace {

std::string png_header(std::uint32_t w, std::uint32_t h) {
  std::string b("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (const std::uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) b += static_cast<char>((v >> s) & 0xff);
  b += std::string("\x08\x02\0\0\0", 5);
  b += std::string(4, '\0');  // CRC (not checked by the probe)
  b += std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  return b;
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("the pixel count of a header never overflows", "[hardening]") {
  // Finding: check_image_header multiplied two 32-bit sizes in int64 (UBSan: signed overflow).
  CHECK(exceeds_pixels(0xFFFFFFFFll, 0xFFFFFFFFll, 40'000'000));
  CHECK(exceeds_pixels(std::numeric_limits<std::int64_t>::max(), 2, std::numeric_limits<std::int64_t>::max()));
  CHECK_FALSE(exceeds_pixels(6000, 4000, 24'000'000));
  CHECK(exceeds_pixels(6001, 4000, 24'000'000));
  CHECK_FALSE(exceeds_pixels(0, 5, 1));
  try {
    server::check_image_header(png_header(0xFFFFFFFFu, 0xFFFFFFFFu), 40'000'000);
    FAIL("not refused");
  } catch (const server::HttpError& e) {
    CHECK(e.status() == 413);
    CHECK_THAT(e.what(), Contains("4294967295x4294967295 = 18446744065119617024 pixels"));
  }
}

TEST_CASE("decode_image checks the declared size before decoding", "[hardening]") {
  ImageLimits limits;
  // A header declaring 100000 x 100000 over a few bytes: refused by the limit, not by a failed
  // 30 GB allocation or a decoder error.
  try {
    decode_image(bytes_of(png_header(100000, 100000)), "bomb.png", limits);
    FAIL("not refused");
  } catch (const InputError& e) {
    CHECK_THAT(e.what(), Contains("bomb.png: the png header declares 100000x100000 = 10000000000 pixels"));
    CHECK_THAT(e.what(), Contains("more than the limit of 89478485 pixels"));
  }
  limits.max_pixels = 15;
  CHECK_THROWS_AS(decode_image(bytes_of(png_header(4, 4)), "small.png", limits), InputError);
  limits.max_bytes = 10;
  CHECK_THROWS_WITH(decode_image(bytes_of(png_header(1, 1)), "x.png", limits), Contains("more than the limit of 10 bytes"));
  CHECK_THROWS_WITH(decode_image(bytes_of(png_header(0, 7)), "zero.png"), Contains("declares a 0x7 image"));
}

TEST_CASE("load_image refuses what is not a regular file, and files over the size limit", "[hardening]") {
  test::TempDir dir("hardening-image");
  std::filesystem::create_directories(dir.path / "x.png");
  CHECK_THROWS_WITH(load_image(dir.path / "x.png"), Contains("not a regular file (a folder)"));
  CHECK_THROWS_WITH(load_image("/dev/null"), Contains("not a regular file (a FIFO, socket or device)"));
  const auto big = dir.write("big.png", std::string(3000, 'x'));
  ImageLimits limits;
  limits.max_bytes = 2048;
  CHECK_THROWS_WITH(load_image(big, limits), Contains("has 3000 bytes, more than the limit of 2048 bytes"));
}

TEST_CASE("JSON files: nesting depth and size limits", "[hardening]") {
  using config::parse_json;
  CHECK_NOTHROW(parse_json<nlohmann::json>(std::string(config::kMaxJsonDepth, '[') + std::string(config::kMaxJsonDepth, ']')));
  // nlohmann counts the depth from 0, so one level more than kMaxJsonDepth still parses.
  CHECK_THROWS_AS(parse_json<nlohmann::json>(std::string(config::kMaxJsonDepth + 2, '[') +
                                             std::string(config::kMaxJsonDepth + 2, ']')),
                  config::JsonTooDeep);
  CHECK_THROWS_AS(parse_json<nlohmann::json>(std::string(100000, '[')), config::JsonTooDeep);
  test::TempDir dir("hardening-json");
  const auto deep = dir.write("config.json", std::string(100000, '['));
  CHECK_THROWS_WITH(config::read_json_object(deep), Contains("nested deeper than 512 levels"));
  const auto file = dir.write("x.json", std::string(5000, ' ') + "{}");
  CHECK_THROWS_WITH(config::read_text_file(file, 4096), Contains("larger than the limit"));
  CHECK(config::read_text_file(file, 8192).size() == 5002);
}

TEST_CASE("config sizes are capped so that products of sizes cannot overflow", "[hardening]") {
  const nlohmann::json j = {{"hidden_size", std::int64_t{1} << 40}};
  const config::Node n{&j, "config.json", ""};
  CHECK_THROWS_WITH(config::require_positive(n, "hidden_size", std::int64_t{1} << 40),
                    Contains("larger than any model dimension xcaption accepts (at most 16777216)"));
  CHECK_NOTHROW(config::require_positive(n, "hidden_size", config::kMaxConfigSize));
  CHECK_THROWS_AS(config::require_positive(n, "hidden_size", 0), ShapeError);
}

TEST_CASE("subtitle times that no stream has are clamped, not cast past the integer range", "[hardening]") {
  // Finding: format_timestamp / to_srt cast seconds * 1000 to int64 for any double (UBSan:
  // float-cast-overflow at 1e300 or infinity).
  CHECK(video::format_timestamp(std::numeric_limits<double>::infinity(), ',') == "277777777:46:40,000");
  CHECK(video::format_timestamp(1e300, '.') == "277777777:46:40.000");
  CHECK(video::format_timestamp(std::nan(""), ',') == "00:00:00,000");
  CHECK(video::format_timestamp(-1e300, ',') == "00:00:00,000");
  video::Segment s;
  s.start = 1e300;
  s.end = std::numeric_limits<double>::infinity();
  s.caption = "far away";
  const std::vector<video::Segment> segments{s};
  CHECK_THAT(video::to_srt(segments), Contains("277777777:46:40,000 --> 277777777:46:40,001"));
}
