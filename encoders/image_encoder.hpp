// What the engine needs from an image tower: preprocessed pixels in, one row of states per
// encoder token out, and where the tokens sit on the image (for attention overlays).
#pragma once

#include <cstdint>
#include <string>

namespace xcaption {

/// The encoder tokens that cover the image: tokens [first, first + rows * cols) are the cells of
/// a rows x cols grid in row-major order; others (CLS, a mean token) cover no single cell.
struct TokenGrid {
  std::int64_t tokens = 0;
  std::int64_t first = 1;
  std::int64_t rows = 0, cols = 0;
};

class ImageEncoder {
 public:
  virtual ~ImageEncoder() = default;
  virtual std::int64_t image_height() const = 0;
  virtual std::int64_t image_width() const = 0;
  virtual std::int64_t num_tokens() const = 0;
  virtual std::int64_t hidden_size() const = 0;
  virtual TokenGrid grid() const = 0;
  /// pixels (batch, 3, height, width) -> out (batch, num_tokens, hidden_size). Workspaces grow
  /// to the largest batch seen.
  virtual void forward(const float* pixels, std::int64_t batch, float* out) = 0;
  /// FLOPs of one image (a multiply-add counts 2).
  virtual double flops() const = 0;
  /// One line for `xcaption info`, e.g. "ViT 224x224/16, 12 layers, 768 wide, 12 heads".
  virtual std::string describe() const = 0;
  virtual std::int64_t num_layers() const = 0;
  virtual std::int64_t num_heads() const = 0;
  virtual std::int64_t patch_size() const = 0;
};

}  // namespace xcaption
