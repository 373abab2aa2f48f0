#include "src/ops/image_ops.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::ops {

namespace {
void require(bool ok, const char* op, const char* what) {
  if (!ok) throw InputError(fmt::format("op {}: {}", op, what));
}
}  // namespace

void conv2d(Backend& backend, const PreparedConv& conv, const float* src, std::int64_t batch,
            std::int64_t height, std::int64_t width, const float* residual, float* dst) {
  require(src && dst, "conv2d", "null buffer");
  require(batch > 0 && height > 0 && width > 0, "conv2d", "empty input");
  const Conv2dShape& s = conv.shape();
  if (height + 2 * s.padding < s.kernel || width + 2 * s.padding < s.kernel)
    throw InputError(fmt::format("op conv2d: a {}x{} input is smaller than the {}x{} kernel with padding {}", height,
                                 width, s.kernel, s.kernel, s.padding));
  require(dst != src && dst != residual, "conv2d", "dst must not alias src or residual");
  backend.conv2d(conv, src, batch, height, width, residual, dst);
}

std::int64_t window_count(std::int64_t height, std::int64_t width, std::int64_t window) {
  return ((height + window - 1) / window) * ((width + window - 1) / window);
}

std::int64_t window_partition(Backend& backend, const float* src, std::int64_t batch, std::int64_t height,
                              std::int64_t width, std::int64_t channels, std::int64_t window, float* dst) {
  require(src && dst && src != dst, "window_partition", "null or aliasing buffers");
  require(batch > 0 && height > 0 && width > 0 && channels > 0 && window > 0, "window_partition", "empty shape");
  backend.window_partition(src, batch, height, width, channels, window, dst);
  return window_count(height, width, window);
}

void window_merge(Backend& backend, const float* src, std::int64_t batch, std::int64_t height,
                  std::int64_t width, std::int64_t channels, std::int64_t window, float* dst, bool accumulate) {
  require(src && dst && src != dst, "window_merge", "null or aliasing buffers");
  require(batch > 0 && height > 0 && width > 0 && channels > 0 && window > 0, "window_merge", "empty shape");
  backend.window_merge(src, batch, height, width, channels, window, dst, accumulate);
}

void window_attention(Backend& backend, const WindowAttention& a) {
  require(a.qkv && a.scores && a.out, "window_attention", "null buffer");
  require(a.windows > 0 && a.window_tokens > 0 && a.heads > 0 && a.head_dim > 0, "window_attention", "empty shape");
  const std::int64_t width = a.heads * a.head_dim;
  require(a.qkv_ld >= 3 * width && a.out_ld >= width, "window_attention",
          "row stride smaller than 3 * heads * head_dim (qkv) or heads * head_dim (out)");
  backend.window_attention(a);
}

void channel_attention(Backend& backend, const ChannelAttention& a) {
  require(a.qkv && a.scores && a.out, "channel_attention", "null buffer");
  require(a.tokens > 0 && a.channels > 0 && a.groups > 0, "channel_attention", "empty shape");
  require(a.channels % a.groups == 0, "channel_attention", "channels not a multiple of groups");
  require(a.qkv_ld >= 3 * a.channels && a.out_ld >= a.channels, "channel_attention",
          "row stride smaller than 3 * channels (qkv) or channels (out)");
  backend.channel_attention(a);
}

void mean_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols,
               float* dst) {
  require(src && dst, "mean_rows", "null buffer");
  require(rows > 0 && cols > 0 && src_ld >= cols, "mean_rows", "bad shape or stride");
  backend.mean_rows(src, src_ld, rows, cols, dst);
}

}  // namespace xcaption::ops
