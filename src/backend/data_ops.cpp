// Host implementations of the Backend's data-movement kernels (see src/backend/backend.hpp).
#include <cstring>

#include "src/backend/backend.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {

void Backend::patchify(const float* src, std::int64_t batch, std::int64_t channels,
                       std::int64_t height, std::int64_t width, std::int64_t patch, float* dst) {
  const std::int64_t gy_count = height / patch, gx_count = width / patch;
  float* row = dst;
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* image = src + b * channels * height * width;
    for (std::int64_t gy = 0; gy < gy_count; ++gy)
      for (std::int64_t gx = 0; gx < gx_count; ++gx)
        for (std::int64_t ch = 0; ch < channels; ++ch)
          for (std::int64_t ky = 0; ky < patch; ++ky) {
            std::memcpy(row, image + (ch * height + gy * patch + ky) * width + gx * patch,
                        sizeof(float) * static_cast<std::size_t>(patch));
            row += patch;
          }
  }
}

void Backend::copy_rows(const float* src, std::int64_t src_ld, const std::int64_t* index,
                        std::int64_t rows, std::int64_t cols, float* dst, std::int64_t dst_ld) {
  for (std::int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dst_ld, src + (index ? index[r] : r) * src_ld,
                sizeof(float) * static_cast<std::size_t>(cols));
}

void Backend::add_rows(const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols,
                       float* dst, std::int64_t dst_ld) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * src_ld;
    float* d = dst + r * dst_ld;
    for (std::int64_t c = 0; c < cols; ++c) d[c] += s[c];
  }
}

void Backend::scale_rows(float* dst, std::int64_t rows, std::int64_t cols, std::int64_t dst_ld, float scale) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * dst_ld;
    for (std::int64_t c = 0; c < cols; ++c) d[c] *= scale;
  }
}

void Backend::split_heads(const float* src, std::int64_t src_ld, std::int64_t tokens,
                          std::int64_t heads, std::int64_t head_dim, float* dst) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t t = 0; t < tokens; ++t)
      std::memcpy(dst + (h * tokens + t) * head_dim, src + t * src_ld + h * head_dim,
                  sizeof(float) * static_cast<std::size_t>(head_dim));
}

void Backend::split_heads_bf16(const float* src, std::int64_t src_ld, std::int64_t tokens,
                               std::int64_t heads, std::int64_t head_dim, std::uint16_t* dst) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t t = 0; t < tokens; ++t)
      f32_to_bf16(src + t * src_ld + h * head_dim, dst + (h * tokens + t) * head_dim, head_dim);
}

}  // namespace xcaption
