#include "src/io/image_header.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace xcaption {

namespace {
std::uint32_t be32(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 24 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8 |
         static_cast<unsigned char>(b[at + 3]);
}
std::uint32_t be16(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 8 | static_cast<unsigned char>(b[at + 1]);
}
std::uint32_t le16(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 | static_cast<unsigned char>(b[at]);
}
std::uint32_t le32(std::string_view b, std::size_t at) { return le16(b, at + 2) << 16 | le16(b, at); }

std::optional<ImageHeader> probe_jpeg(std::string_view b) {
  // Walk the marker segments to the first start-of-frame (SOF0-SOF15 except DHT C4, JPG C8, DAC CC).
  std::size_t i = 2;
  while (i + 4 <= b.size()) {
    if (static_cast<unsigned char>(b[i]) != 0xff) return std::nullopt;
    const auto marker = static_cast<unsigned char>(b[i + 1]);
    if (marker == 0xff) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xd8 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {  // no length
      i += 2;
      continue;
    }
    const std::uint32_t length = be16(b, i + 2);
    if (length < 2) return std::nullopt;
    if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc) {
      if (i + 9 > b.size()) return std::nullopt;
      return ImageHeader{"jpeg", be16(b, i + 7), be16(b, i + 5)};
    }
    if (marker == 0xda || marker == 0xd9) return std::nullopt;  // scan before any frame header
    i += 2 + length;
  }
  return std::nullopt;
}

std::optional<ImageHeader> probe_tiff(std::string_view b) {
  const bool little = b[0] == 'I';
  auto u16 = [&](std::size_t at) { return little ? le16(b, at) : be16(b, at); };
  auto u32 = [&](std::size_t at) { return little ? le32(b, at) : be32(b, at); };
  if (u16(2) != 42) return std::nullopt;  // BigTIFF (43) is not read
  const std::size_t ifd = u32(4);
  if (ifd + 2 > b.size()) return std::nullopt;
  const std::uint32_t entries = u16(ifd);
  std::int64_t width = -1, height = -1;
  for (std::uint32_t e = 0; e < entries; ++e) {
    const std::size_t at = ifd + 2 + 12 * static_cast<std::size_t>(e);
    if (at + 12 > b.size()) return std::nullopt;
    const std::uint32_t tag = u16(at), type = u16(at + 2);
    const std::int64_t value = type == 3 ? u16(at + 8) : type == 4 ? u32(at + 8) : -1;
    if (tag == 256) width = value;
    if (tag == 257) height = value;
  }
  if (width < 0 || height < 0) return std::nullopt;
  return ImageHeader{"tiff", width, height};
}

std::optional<ImageHeader> probe_pnm(std::string_view b) {
  // "P6 # comment\n 640 480 255": magic, then white-space separated fields with # comments.
  // PAM (P7) names them: WIDTH w, HEIGHT h.
  std::size_t i = 2;
  auto next_token = [&]() -> std::string {
    for (;;) {
      while (i < b.size() && std::isspace(static_cast<unsigned char>(b[i]))) ++i;
      if (i < b.size() && b[i] == '#') {
        while (i < b.size() && b[i] != '\n') ++i;
        continue;
      }
      break;
    }
    std::string t;
    while (i < b.size() && !std::isspace(static_cast<unsigned char>(b[i])) && t.size() < 32) t += b[i++];
    return t;
  };
  auto number = [](const std::string& t) -> std::int64_t {
    if (t.empty() || t.size() > 12 || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return -1;
    return std::stoll(t);
  };
  std::int64_t width = -1, height = -1;
  if (b[1] == '7') {
    for (int n = 0; n < 64 && i < b.size(); ++n) {
      const std::string key = next_token();
      if (key == "ENDHDR") break;
      if (key == "WIDTH") width = number(next_token());
      else if (key == "HEIGHT") height = number(next_token());
    }
  } else {
    width = number(next_token());
    height = number(next_token());
  }
  if (width < 0 || height < 0) return std::nullopt;
  return ImageHeader{"pnm", width, height};
}
}  // namespace

std::optional<ImageHeader> probe_image(std::string_view b) {
  if (b.size() >= 24 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) && b.substr(12, 4) == "IHDR")
    return ImageHeader{"png", be32(b, 16), be32(b, 20)};
  if (b.size() >= 4 && static_cast<unsigned char>(b[0]) == 0xff && static_cast<unsigned char>(b[1]) == 0xd8)
    return probe_jpeg(b);
  if (b.size() >= 30 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP") {
    const std::string_view chunk = b.substr(12, 4);
    if (chunk == "VP8 " && b.size() >= 30) return ImageHeader{"webp", le16(b, 26) & 0x3fff, le16(b, 28) & 0x3fff};
    if (chunk == "VP8L" && b.size() >= 25) {
      const std::uint32_t v = le32(b, 21);
      return ImageHeader{"webp", (v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1};
    }
    if (chunk == "VP8X" && b.size() >= 30) {
      const std::int64_t w = 1 + (le16(b, 24) | static_cast<std::int64_t>(static_cast<unsigned char>(b[26])) << 16);
      const std::int64_t h = 1 + (le16(b, 27) | static_cast<std::int64_t>(static_cast<unsigned char>(b[29])) << 16);
      return ImageHeader{"webp", w, h};
    }
    return std::nullopt;
  }
  if (b.size() >= 26 && b.substr(0, 2) == "BM") {
    const std::uint32_t header = le32(b, 14);
    if (header == 12) return ImageHeader{"bmp", le16(b, 18), le16(b, 20)};
    const auto w = static_cast<std::int32_t>(le32(b, 18)), h = static_cast<std::int32_t>(le32(b, 22));
    return ImageHeader{"bmp", std::abs(static_cast<std::int64_t>(w)), std::abs(static_cast<std::int64_t>(h))};
  }
  if (b.size() >= 8 && (b.substr(0, 4) == std::string_view("II*\0", 4) || b.substr(0, 4) == std::string_view("MM\0*", 4)))
    return probe_tiff(b);
  if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7' && std::isspace(static_cast<unsigned char>(b[2])))
    return probe_pnm(b);
  return std::nullopt;
}

bool exceeds_pixels(std::int64_t width, std::int64_t height, std::int64_t max_pixels) {
  if (width <= 0 || height <= 0) return false;
  return width > max_pixels / height;
}

}  // namespace xcaption
