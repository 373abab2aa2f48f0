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

/// dst row r (in_features values, stride dst_ld) = column ids[r] of a prepared layer's W: the
/// token embeddings of a head tied to them (Backend::weight_column). Throws InputError for an
/// id outside [0, out_features).
void weight_columns(Backend& backend, const PreparedLinear& layer, const std::int64_t* ids,
                    std::int64_t rows, float* dst, std::int64_t dst_ld);

/// Image tiles for a patch embedding: see Backend::patchify. Throws InputError unless height
/// and width are positive multiples of patch.
void patchify(Backend& backend, const float* src, std::int64_t batch, std::int64_t channels,
              std::int64_t height, std::int64_t width, std::int64_t patch, float* dst);

/// dst row r = src row index[r] (or row r when index is null); see Backend::copy_rows.
/// `src_rows` bounds the indices: an index outside [0, src_rows) throws InputError.
void copy_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t src_rows,
               const std::int64_t* index, std::int64_t rows, std::int64_t cols, float* dst,
               std::int64_t dst_ld);

/// dst rows += src rows (src_ld 0 broadcasts one row); see Backend::add_rows.
void add_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t rows,
              std::int64_t cols, float* dst, std::int64_t dst_ld);

/// dst rows *= scale; see Backend::scale_rows.
void scale_rows(Backend& backend, float* dst, std::int64_t rows, std::int64_t cols, std::int64_t dst_ld, float scale);

/// (tokens, heads * head_dim) rows to head-major (heads, tokens, head_dim), float32 or bf16.
void split_heads(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t tokens,
                 std::int64_t heads, std::int64_t head_dim, float* dst);
void split_heads(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t tokens,
                 std::int64_t heads, std::int64_t head_dim, std::uint16_t* dst);

}  // namespace xcaption::ops
