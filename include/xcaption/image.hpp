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

/// What an image may cost before it is decoded, in the spirit of Pillow's decompression-bomb
/// guard (Image.MAX_IMAGE_PIXELS). The declared width and height are read from the header (PNG,
/// JPEG, WebP, BMP, TIFF, PNM) and checked before any decoder runs, so a small file that declares
/// a huge image costs nothing; other formats OpenCV reads are checked once decoded (OpenCV's own
/// cap, 2^30 pixels, bounds that decode).
struct ImageLimits {
  /// Largest width * height. The default is Pillow's MAX_IMAGE_PIXELS (89,478,485: about
  /// 256 MB of RGB, e.g. 10,000 x 8,900); a decoded image costs 3 bytes per pixel twice over
  /// (OpenCV's BGR and the RGB copy).
  std::int64_t max_pixels = 89'478'485;
  /// Largest file size in bytes that load_image reads (decode_image: the buffer's size).
  std::int64_t max_bytes = std::int64_t{1} << 30;
};

/// Decodes an image file (PNG, JPEG, anything OpenCV reads). EXIF orientation is applied, alpha
/// dropped, grayscale expanded. Throws FormatError naming the file when it is missing, not a
/// regular file (a folder, a FIFO, a device), unreadable or cannot be decoded, and InputError when
/// it is larger than `limits` allow.
RgbImage load_image(const std::filesystem::path& path, const ImageLimits& limits = {});

/// load_image on bytes already in memory (an upload): the same decoding and limits, with `name`
/// standing for the file in messages. Thread-safe. Throws FormatError naming `name` for empty,
/// truncated or undecodable data, InputError when `limits` are exceeded.
RgbImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name, const ImageLimits& limits = {});

}  // namespace xcaption
