// Images as the public API sees them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace xcaption {

/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> data;  // width * height * 3
};

/// Decodes an image file (PNG, JPEG, anything OpenCV reads). EXIF orientation is applied, alpha
/// dropped, grayscale expanded. Throws FormatError naming the file when it cannot be decoded.
RgbImage load_image(const std::filesystem::path& path);

}  // namespace xcaption
