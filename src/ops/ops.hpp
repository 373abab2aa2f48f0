// Ops: the functions model code calls. Each checks its arguments, then dispatches to the backend
// (src/backend), whose kernels assume valid input. Buffers are float32 and row-major.
#pragma once

#include <cstdint>

#include "src/backend/backend.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption::ops {

/// Layer-norm parameters of one torch.nn.LayerNorm (n = normalized size).
struct LayerNorm {
  FloatBuffer gamma;  // (n)
  FloatBuffer beta;   // (n)
  float eps = 1e-5f;
  std::int64_t size() const { return static_cast<std::int64_t>(gamma.size()); }
};

/// dst (m, out) = act(src (m, in) · W + b) [+ dst]. Throws InputError on bad sizes.
void linear(Backend& backend, const PreparedLinear& layer, const float* src, std::int64_t m,
            float* dst, Activation act = Activation::None, bool accumulate = false);

/// Row-wise layer norm of `rows` rows of ln.size() values. src and dst may alias.
void layer_norm(Backend& backend, const LayerNorm& ln, const float* src, float* dst,
                std::int64_t rows);

/// dst (rows, n) = log_softmax of each row of src (rows, n). Throws InputError on bad sizes.
void log_softmax(Backend& backend, const float* src, float* dst, std::int64_t rows, std::int64_t n);

/// One query block attending to one key/value block, all heads at once, no mask: see
/// BlockAttention in src/backend/backend.hpp. Throws InputError on null buffers, empty shapes or
/// row strides narrower than heads * head_dim.
using AttentionArgs = BlockAttention;
void attention(Backend& backend, const AttentionArgs& args);

/// One query row per sequence against that sequence's own keys/values, or against keys/values
/// shared by all rows (see OneQueryAttention in src/backend/backend.hpp): the decoder's self- and
/// cross-attention at each generated token, all rows and heads in one call. Throws InputError on
/// null buffers, empty shapes or overlapping strides.
void one_query_attention(Backend& backend, const OneQueryAttention& args);

}  // namespace xcaption::ops
