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

}  // namespace xcaption::ops
