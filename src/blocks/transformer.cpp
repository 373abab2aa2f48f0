#include "src/blocks/transformer.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::blocks {

AttentionScale AttentionScale::of(float scale) {
  AttentionScale s;
  s.folded = exact_fold(scale);
  s.remaining = scale / s.folded;
  return s;
}

namespace {
// The spec of a projection whose first `width` outputs are queries, with the fold applied.
LinearSpec with_query_scale(LinearSpec spec, std::int64_t width, float folded) {
  spec.scaled_out = width;
  spec.scale = folded;
  return spec;
}
}  // namespace

void EncoderWorkspace::reserve(std::int64_t rows, std::int64_t tokens, std::int64_t width,
                               std::int64_t heads, std::int64_t ffn) {
  auto grow = [](FloatBuffer& b, std::int64_t n) {
    if (b.size() < static_cast<std::size_t>(n)) b.resize(static_cast<std::size_t>(n));
  };
  grow(normed, rows * width);
  grow(qkv, rows * 3 * width);
  grow(context, rows * width);
  grow(scores, heads * tokens * tokens);
  grow(mlp, rows * ffn);
}

void EncoderLayer::describe(const EncoderLayerSpec& s, std::vector<ExpectedTensor>& table) {
  blocks::describe(s.attention_norm, table);
  blocks::describe(s.qkv, table);
  blocks::describe(s.attention_out, table);
  blocks::describe(s.mlp_norm, table);
  blocks::describe(s.fc1, table);
  blocks::describe(s.fc2, table);
}

EncoderLayer::EncoderLayer(const EncoderLayerSpec& s, const WeightStore& w, Backend& backend,
                           std::int64_t tokens_hint)
    : norm_first_(s.norm_first), width_(s.width), heads_(s.heads), activation_(s.activation),
      attention_precision_(backend.precision()) {
  const AttentionScale scale = AttentionScale::of(s.attention_scale);
  scale_ = scale.remaining;
  attention_norm_ = load(s.attention_norm, w);
  mlp_norm_ = load(s.mlp_norm, w);
  qkv_ = load(with_query_scale(s.qkv, s.width, scale.folded), w, backend, tokens_hint);
  attention_out_ = load(s.attention_out, w, backend, tokens_hint);
  fc1_ = load(s.fc1, w, backend, tokens_hint);
  fc2_ = load(s.fc2, w, backend, tokens_hint);
}

void EncoderLayer::forward(Backend& backend, float* x, std::int64_t batch, std::int64_t tokens,
                           EncoderWorkspace& ws) const {
  const std::int64_t d = width_, rows = batch * tokens, hd = d / heads_;
  const float* in = x;
  if (norm_first_) {
    ops::layer_norm(backend, attention_norm_, x, ws.normed.data(), rows);
    in = ws.normed.data();
  }
  ops::linear(backend, *qkv_, in, rows, ws.qkv.data());
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* qkv = ws.qkv.data() + b * tokens * 3 * d;
    ops::attention(backend, {qkv, 3 * d, qkv + d, 3 * d, qkv + 2 * d, 3 * d, tokens, tokens, heads_, hd,
                             scale_, ws.scores.data(), ws.context.data() + b * tokens * d, d,
                             attention_precision_});
  }
  ops::linear(backend, *attention_out_, ws.context.data(), rows, x, Activation::None, true);
  if (!norm_first_) ops::layer_norm(backend, attention_norm_, x, x, rows);

  in = x;
  if (norm_first_) {
    ops::layer_norm(backend, mlp_norm_, x, ws.normed.data(), rows);
    in = ws.normed.data();
  }
  ops::linear(backend, *fc1_, in, rows, ws.mlp.data(), activation_);
  ops::linear(backend, *fc2_, ws.mlp.data(), rows, x, Activation::None, true);
  if (!norm_first_) ops::layer_norm(backend, mlp_norm_, x, x, rows);
}

double EncoderLayer::flops(std::int64_t tokens) const {
  const double t = static_cast<double>(tokens), d = static_cast<double>(width_);
  const double linears = static_cast<double>(qkv_->in_features()) * qkv_->out_features() +
                         static_cast<double>(attention_out_->in_features()) * attention_out_->out_features() +
                         static_cast<double>(fc1_->in_features()) * fc1_->out_features() +
                         static_cast<double>(fc2_->in_features()) * fc2_->out_features();
  return 2 * t * linears + 2 * 2 * t * t * d;  // + Q·Kᵀ and P·V
}

void DecoderWorkspace::reserve(std::int64_t r, std::int64_t positions, std::int64_t encoder_tokens,
                               std::int64_t width, std::int64_t heads, std::int64_t ffn) {
  auto grow = [](FloatBuffer& b, std::int64_t n) {
    if (b.size() < static_cast<std::size_t>(n)) b.resize(static_cast<std::size_t>(n));
  };
  rows = std::max(rows, r);
  tokens = std::max(tokens, encoder_tokens);
  grow(normed, r * width);
  grow(qkv, r * 3 * width);
  grow(q, r * width);
  grow(context, r * width);
  grow(mlp, r * ffn);
  grow(scores, heads * r * std::max(encoder_tokens, positions));
  grow(cross_kv, encoder_tokens * 2 * width);
}

void DecoderLayer::describe(const DecoderLayerSpec& s, std::vector<ExpectedTensor>& table) {
  blocks::describe(s.self_norm, table);
  blocks::describe(s.self_qkv, table);
  blocks::describe(s.self_out, table);
  blocks::describe(s.cross_norm, table);
  blocks::describe(s.cross_q, table);
  blocks::describe(s.cross_kv, table);
  blocks::describe(s.cross_out, table);
  blocks::describe(s.mlp_norm, table);
  blocks::describe(s.fc1, table);
  blocks::describe(s.fc2, table);
}

DecoderLayer::DecoderLayer(const DecoderLayerSpec& s, const WeightStore& w, Backend& backend,
                           std::int64_t rows_hint, std::int64_t encoder_tokens_hint)
    : norm_first_(s.norm_first), width_(s.width), heads_(s.heads), activation_(s.activation) {
  const AttentionScale self = AttentionScale::of(s.self_scale), cross = AttentionScale::of(s.cross_scale);
  self_scale_ = self.remaining;
  cross_scale_ = cross.remaining;
  self_norm_ = load(s.self_norm, w);
  cross_norm_ = load(s.cross_norm, w);
  mlp_norm_ = load(s.mlp_norm, w);
  self_qkv_ = load(with_query_scale(s.self_qkv, s.width, self.folded), w, backend, rows_hint);
  self_out_ = load(s.self_out, w, backend, rows_hint);
  cross_q_ = load(with_query_scale(s.cross_q, s.width, cross.folded), w, backend, rows_hint);
  cross_kv_ = load(s.cross_kv, w, backend, encoder_tokens_hint);
  cross_out_ = load(s.cross_out, w, backend, rows_hint);
  fc1_ = load(s.fc1, w, backend, rows_hint);
  fc2_ = load(s.fc2, w, backend, rows_hint);
}

void DecoderLayer::prepare_cross(Backend& backend, std::int64_t layer, const float* states,
                                 std::int64_t tokens, KvCache& cache, DecoderWorkspace& ws) const {
  ops::linear(backend, *cross_kv_, states, tokens, ws.cross_kv.data());
  cache.set_cross(layer, ws.cross_kv.data(), tokens);
}

void DecoderLayer::step(Backend& backend, std::int64_t layer, float* x, std::int64_t rows,
                        std::span<KvCache* const> groups, DecoderWorkspace& ws, float* attention,
                        std::int64_t attention_ld) const {
  const std::int64_t d = width_, heads = heads_, hd = d / heads;

  // Self-attention: each group appends this step's keys/values at its own position.
  const float* in = x;
  if (norm_first_) {
    ops::layer_norm(backend, self_norm_, x, ws.normed.data(), rows);
    in = ws.normed.data();
  }
  ops::linear(backend, *self_qkv_, in, rows, ws.qkv.data());
  std::int64_t first = 0;
  for (KvCache* g : groups) {
    const std::int64_t m = g->rows(), pos = g->position(), stride = g->row_stride();
    const float* qkv = ws.qkv.data() + first * 3 * d;
    ops::copy_rows(backend, qkv + d, 3 * d, m, nullptr, m, d, g->self_k(layer) + pos * d, stride);
    ops::copy_rows(backend, qkv + 2 * d, 3 * d, m, nullptr, m, d, g->self_v(layer) + pos * d, stride);
    ops::one_query_attention(backend, {qkv, 3 * d, g->self_k(layer), g->self_v(layer), stride, hd, d, m, pos + 1,
                                       heads, hd, self_scale_, ws.scores.data(), ws.context.data() + first * d, d});
    first += m;
  }
  ops::linear(backend, *self_out_, ws.context.data(), rows, x, Activation::None, true);
  if (!norm_first_) ops::layer_norm(backend, self_norm_, x, x, rows);

  // Cross-attention: the rows of a group query its image's keys/values.
  in = x;
  if (norm_first_) {
    ops::layer_norm(backend, cross_norm_, x, ws.normed.data(), rows);
    in = ws.normed.data();
  }
  ops::linear(backend, *cross_q_, in, rows, ws.q.data());
  first = 0;
  for (KvCache* g : groups) {
    const std::int64_t m = g->rows(), s = g->cross_tokens();
    OneQueryAttention cross{ws.q.data() + first * d, d, g->cross_k(layer), g->cross_v(layer), /*shared by all rows*/ 0,
                            /*head-major*/ s * hd, hd, m, s, heads, hd, cross_scale_, ws.scores.data(),
                            ws.context.data() + first * d, d};
    if (g->cross_bf16()) {
      cross.k16 = g->cross_k16(layer);
      cross.v16 = g->cross_v16(layer);
    }
    ops::one_query_attention(backend, cross);
    if (attention)  // scores hold the probabilities (m, heads, s)
      ops::copy_rows(backend, ws.scores.data(), heads * s, m, nullptr, m, heads * s,
                     attention + first * attention_ld + layer * heads * s, attention_ld);
    first += m;
  }
  ops::linear(backend, *cross_out_, ws.context.data(), rows, x, Activation::None, true);
  if (!norm_first_) ops::layer_norm(backend, cross_norm_, x, x, rows);

  // Feed-forward.
  in = x;
  if (norm_first_) {
    ops::layer_norm(backend, mlp_norm_, x, ws.normed.data(), rows);
    in = ws.normed.data();
  }
  ops::linear(backend, *fc1_, in, rows, ws.mlp.data(), activation_);
  ops::linear(backend, *fc2_, ws.mlp.data(), rows, x, Activation::None, true);
  if (!norm_first_) ops::layer_norm(backend, mlp_norm_, x, x, rows);
}

double DecoderLayer::step_weights() const {
  double n = 0;
  for (const auto* l : {&self_qkv_, &self_out_, &cross_q_, &cross_out_, &fc1_, &fc2_})
    n += static_cast<double>((*l)->in_features()) * (*l)->out_features();
  return n;
}

}  // namespace xcaption::blocks
