// Host implementations of the Backend's data-movement kernels (see src/backend/backend.hpp), and
// the default compositions of the windowed and channel attentions from batched_matmul + softmax.
#include <algorithm>
#include <cstring>
#include <vector>

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

void Backend::window_partition(const float* src, std::int64_t batch, std::int64_t height, std::int64_t width,
                               std::int64_t channels, std::int64_t window, float* dst) {
  const std::int64_t wy = (height + window - 1) / window, wx = (width + window - 1) / window;
  const auto row_bytes = sizeof(float) * static_cast<std::size_t>(channels);
  // One task per (image, window row of tiles, row inside a tile): whole rows of channels move.
#pragma omp parallel for collapse(2) schedule(static) if (batch * height * width * channels >= (1 << 18))
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t y = 0; y < wy * window; ++y) {
      const std::int64_t ty = y / window, iy = y % window;
      for (std::int64_t tx = 0; tx < wx; ++tx) {
        float* d = dst + (((b * wy + ty) * wx + tx) * window + iy) * window * channels;
        for (std::int64_t ix = 0; ix < window; ++ix, d += channels) {
          const std::int64_t x = tx * window + ix;
          if (y < height && x < width)
            std::memcpy(d, src + ((b * height + y) * width + x) * channels, row_bytes);
          else
            std::memset(d, 0, row_bytes);
        }
      }
    }
}

void Backend::window_merge(const float* src, std::int64_t batch, std::int64_t height, std::int64_t width,
                           std::int64_t channels, std::int64_t window, float* dst, bool accumulate) {
  const std::int64_t wy = (height + window - 1) / window, wx = (width + window - 1) / window;
#pragma omp parallel for collapse(2) schedule(static) if (batch * height * width * channels >= (1 << 18))
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t y = 0; y < height; ++y) {
      const std::int64_t ty = y / window, iy = y % window;
      for (std::int64_t x = 0; x < width; ++x) {
        const std::int64_t tx = x / window, ix = x % window;
        const float* s = src + ((((b * wy + ty) * wx + tx) * window + iy) * window + ix) * channels;
        float* d = dst + ((b * height + y) * width + x) * channels;
        if (accumulate) {
          for (std::int64_t c = 0; c < channels; ++c) d[c] += s[c];
        } else {
          std::memcpy(d, s, sizeof(float) * static_cast<std::size_t>(channels));
        }
      }
    }
}

void Backend::mean_rows(const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols, float* dst) {
  std::vector<double> sum(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * src_ld;
    for (std::int64_t c = 0; c < cols; ++c) sum[static_cast<std::size_t>(c)] += s[c];
  }
  for (std::int64_t c = 0; c < cols; ++c)
    dst[c] = static_cast<float>(sum[static_cast<std::size_t>(c)] / static_cast<double>(rows));
}

void Backend::window_attention(const WindowAttention& a) {
  const std::int64_t t = a.window_tokens, hd = a.head_dim, width = a.heads * hd, ld = a.qkv_ld;
  // One head at a time over all windows: three large batched products instead of three per window.
  for (std::int64_t h = 0; h < a.heads; ++h) {
    const float* q = a.qkv + h * hd;
    const float* k = a.qkv + width + h * hd;
    const float* v = a.qkv + 2 * width + h * hd;
    batched_matmul(a.windows, t, t, hd, q, Strided3{t * ld, ld, 1}, k, Strided3{t * ld, 1, ld}, a.scores,
                   Strided3{t * t, t, 1}, a.scale);
    softmax(a.scores, a.windows * t, t, t);
    batched_matmul(a.windows, t, hd, t, a.scores, Strided3{t * t, t, 1}, v, Strided3{t * ld, ld, 1}, a.out + h * hd,
                   Strided3{t * a.out_ld, a.out_ld, 1}, 1.0f);
  }
}

void Backend::channel_attention(const ChannelAttention& a) {
  const std::int64_t d = a.channels / a.groups, n = a.tokens, ld = a.qkv_ld;
  const float* q = a.qkv;
  const float* k = a.qkv + a.channels;
  const float* v = a.qkv + 2 * a.channels;
  // scores_g (d, d) = scale · Q_gᵀ · K_g: Q_gᵀ is the (d, n) view of the group's q columns.
  batched_matmul(a.groups, d, d, n, q, Strided3{d, 1, ld}, k, Strided3{d, ld, 1}, a.scores, Strided3{d * d, d, 1},
                 a.scale);
  softmax(a.scores, a.groups * d, d, d);
  // out_g (n, d) = V_g · A_gᵀ: A_gᵀ is the transposed view of the probabilities.
  batched_matmul(a.groups, n, d, d, v, Strided3{d, ld, 1}, a.scores, Strided3{d * d, 1, d}, a.out,
                 Strided3{d, a.out_ld, 1}, 1.0f);
}

}  // namespace xcaption
