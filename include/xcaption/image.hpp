// Images as the public API sees them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
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

/// load_image on bytes already in memory (an upload): the same decoding, with `name` standing
/// for the file in messages. Thread-safe. Throws FormatError naming `name` for empty, truncated
/// or undecodable data.
RgbImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name);

}  // namespace xcaption
