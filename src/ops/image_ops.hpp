// Ops of convolutional and windowed image towers (DaViT): convolution, window partition/merge,
// windowed and channel-group attention, the mean over rows. Each checks its arguments, then
// dispatches to the backend (see the structs and kernels in src/backend/backend.hpp).
#pragma once

#include <cstdint>

#include "src/backend/backend.hpp"

namespace xcaption::ops {

/// dst (batch, OH, OW, out) NHWC = conv(src) + bias [+ residual]; see Backend::conv2d.
/// Throws InputError on null or aliasing buffers, empty shapes, or an output smaller than 1x1.
void conv2d(Backend& backend, const PreparedConv& conv, const float* src, std::int64_t batch,
            std::int64_t height, std::int64_t width, const float* residual, float* dst);

/// (batch, height, width, channels) -> zero-padded windows; see Backend::window_partition.
/// Returns the number of windows per image. Throws InputError on empty shapes.
std::int64_t window_partition(Backend& backend, const float* src, std::int64_t batch, std::int64_t height,
                              std::int64_t width, std::int64_t channels, std::int64_t window, float* dst);

/// Windows back to (batch, height, width, channels), padding dropped, optionally added to dst.
void window_merge(Backend& backend, const float* src, std::int64_t batch, std::int64_t height,
                  std::int64_t width, std::int64_t channels, std::int64_t window, float* dst, bool accumulate);

/// Number of windows of a height x width map (ceil on both axes).
std::int64_t window_count(std::int64_t height, std::int64_t width, std::int64_t window);

/// See WindowAttention. Throws InputError on null buffers, empty shapes or narrow strides.
void window_attention(Backend& backend, const WindowAttention& args);

/// See ChannelAttention. Throws InputError on null buffers, empty shapes, channels not divisible
/// by groups, or narrow strides.
void channel_attention(Backend& backend, const ChannelAttention& args);

/// dst (cols) = mean of rows x cols values at src (stride src_ld).
void mean_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols,
               float* dst);

}  // namespace xcaption::ops
