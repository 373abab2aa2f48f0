// The size an image file declares, read from its header without decoding it: what the pixel cap
// (ImageLimits::max_pixels, the server's --max-pixels) is checked against before any decoder
// allocates a buffer for a size the file may not back (a decompression bomb, or a lying header).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace xcaption {

struct ImageHeader {
  std::string format;  // "png", "jpeg", "webp", "bmp", "tiff", "pnm"
  std::int64_t width = 0, height = 0;
};

/// Reads PNG, JPEG, WebP, BMP, TIFF and PNM (P1-P7) headers. nullopt when the bytes are none of
/// these or the header is cut short. Width and height are never negative (each below 2^32).
std::optional<ImageHeader> probe_image(std::string_view bytes);

/// width * height > max_pixels, without overflow.
bool exceeds_pixels(std::int64_t width, std::int64_t height, std::int64_t max_pixels);

}  // namespace xcaption
