#include "src/ops/ops.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::ops {

namespace {
void require(bool ok, const char* op, const char* what) {
  if (!ok) throw InputError(fmt::format("op {}: {}", op, what));
}
}  // namespace

void linear(Backend& backend, const PreparedLinear& layer, const float* src, std::int64_t m,
            float* dst, Activation act, bool accumulate) {
  require(src && dst, "linear", "null buffer");
  require(m > 0, "linear", "row count must be positive");
  require(src != dst, "linear", "src and dst must not alias");
  backend.linear(layer, src, m, dst, act, accumulate);
}

void layer_norm(Backend& backend, const LayerNorm& ln, const float* src, float* dst,
                std::int64_t rows) {
  require(src && dst, "layer_norm", "null buffer");
  require(rows > 0 && ln.size() > 0, "layer_norm", "empty input");
  require(ln.beta.size() == ln.gamma.size(), "layer_norm", "gamma and beta sizes differ");
  backend.layer_norm(src, dst, rows, ln.size(), ln.gamma.data(), ln.beta.data(), ln.eps);
}

void log_softmax(Backend& backend, const float* src, float* dst, std::int64_t rows, std::int64_t n) {
  require(src && dst, "log_softmax", "null buffer");
  require(rows > 0 && n > 0, "log_softmax", "empty input");
  require(src != dst, "log_softmax", "src and dst must not alias");
  backend.log_softmax(src, dst, rows, n);
}

void attention(Backend& backend, const AttentionArgs& a) {
  require(a.q && a.k && a.v && a.scores && a.out, "attention", "null buffer");
  require(a.tq > 0 && a.tk > 0 && a.heads > 0 && a.head_dim > 0, "attention", "empty shape");
  const std::int64_t width = a.heads * a.head_dim;
  require(a.q_ld >= width && a.k_ld >= width && a.v_ld >= width && a.out_ld >= width, "attention",
          "row stride smaller than heads * head_dim");
  backend.block_attention(a);
}

void one_query_attention(Backend& backend, const OneQueryAttention& a) {
  require(a.q && a.scores && a.out && ((a.k && a.v && !a.k16 && !a.v16) || (!a.k && !a.v && a.k16 && a.v16)),
          "one_query_attention", "null buffer (keys and values: k and v, or k16 and v16)");
  require(a.rows > 0 && a.n > 0 && a.heads > 0 && a.head_dim > 0, "one_query_attention", "empty shape");
  const std::int64_t width = a.heads * a.head_dim;
  require(a.q_ld >= width && a.out_ld >= width, "one_query_attention", "row stride smaller than heads * head_dim");
  const bool side_by_side = a.kv_head_stride == a.head_dim && a.kv_ld >= width;
  const bool head_major = a.kv_ld >= a.head_dim && a.kv_head_stride >= a.n * a.kv_ld;
  require(side_by_side || head_major, "one_query_attention",
          "keys/values neither heads side by side (head stride = head_dim, row >= heads * head_dim) nor "
          "head-major (head stride >= n * kv_ld)");
  require(a.rows == 1 || a.kv_row_stride == 0 || a.kv_row_stride >= a.n * std::max(a.kv_ld, a.kv_head_stride),
          "one_query_attention", "sequences' keys/values overlap (kv_row_stride neither 0 nor large enough)");
  backend.one_query_attention(a);
}

void weight_columns(Backend& backend, const PreparedLinear& layer, const std::int64_t* ids,
                    std::int64_t rows, float* dst, std::int64_t dst_ld) {
  require(ids && dst, "weight_columns", "null buffer");
  require(rows >= 0 && dst_ld >= layer.in_features(), "weight_columns", "bad shape or stride");
  for (std::int64_t r = 0; r < rows; ++r)
    if (ids[r] < 0 || ids[r] >= layer.out_features())
      throw InputError(fmt::format("token id {} is outside the vocabulary (size {})", ids[r], layer.out_features()));
  for (std::int64_t r = 0; r < rows; ++r) backend.weight_column(layer, ids[r], dst + r * dst_ld);
}

void patchify(Backend& backend, const float* src, std::int64_t batch, std::int64_t channels,
              std::int64_t height, std::int64_t width, std::int64_t patch, float* dst) {
  require(src && dst, "patchify", "null buffer");
  require(batch > 0 && channels > 0 && patch > 0 && height > 0 && width > 0, "patchify", "empty shape");
  require(height % patch == 0 && width % patch == 0, "patchify", "image size not a multiple of the patch");
  backend.patchify(src, batch, channels, height, width, patch, dst);
}

void copy_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t src_rows,
               const std::int64_t* index, std::int64_t rows, std::int64_t cols, float* dst,
               std::int64_t dst_ld) {
  require(src && dst, "copy_rows", "null buffer");
  require(rows >= 0 && cols >= 0 && src_ld >= 0 && dst_ld >= cols, "copy_rows", "bad shape or stride");
  if (index) {
    for (std::int64_t r = 0; r < rows; ++r)
      if (index[r] < 0 || index[r] >= src_rows)
        throw InputError(fmt::format("op copy_rows: row index {} outside [0, {})", index[r], src_rows));
  } else {
    require(rows <= src_rows, "copy_rows", "more rows than the source holds");
  }
  if (rows == 0 || cols == 0) return;
  backend.copy_rows(src, src_ld, index, rows, cols, dst, dst_ld);
}

void add_rows(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t rows,
              std::int64_t cols, float* dst, std::int64_t dst_ld) {
  require(src && dst, "add_rows", "null buffer");
  require(rows >= 0 && cols >= 0 && src_ld >= 0 && dst_ld >= cols, "add_rows", "bad shape or stride");
  if (rows == 0 || cols == 0) return;
  backend.add_rows(src, src_ld, rows, cols, dst, dst_ld);
}

void scale_rows(Backend& backend, float* dst, std::int64_t rows, std::int64_t cols, std::int64_t dst_ld, float scale) {
  require(dst != nullptr, "scale_rows", "null buffer");
  require(rows >= 0 && cols >= 0 && dst_ld >= cols, "scale_rows", "bad shape or stride");
  backend.scale_rows(dst, rows, cols, dst_ld, scale);
}

void split_heads(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t tokens,
                 std::int64_t heads, std::int64_t head_dim, float* dst) {
  require(src && dst, "split_heads", "null buffer");
  require(tokens > 0 && heads > 0 && head_dim > 0 && src_ld >= heads * head_dim, "split_heads", "bad shape");
  backend.split_heads(src, src_ld, tokens, heads, head_dim, dst);
}

void split_heads(Backend& backend, const float* src, std::int64_t src_ld, std::int64_t tokens,
                 std::int64_t heads, std::int64_t head_dim, std::uint16_t* dst) {
  require(src && dst, "split_heads", "null buffer");
  require(tokens > 0 && heads > 0 && head_dim > 0 && src_ld >= heads * head_dim, "split_heads", "bad shape");
  backend.split_heads_bf16(src, src_ld, tokens, heads, head_dim, dst);
}

}  // namespace xcaption::ops
