#include "decoder/text_decoder.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

void TextDecoder::describe(const TextDecoderSpec& s, std::vector<ExpectedTensor>& table) {
  table.push_back({s.token_embedding, {s.vocab_size, s.width}});
  table.push_back({s.position_embedding, {s.positions + s.position_offset, s.width}});
  if (s.embedding_norm) blocks::describe(*s.embedding_norm, table);
  for (const auto& l : s.layers) blocks::DecoderLayer::describe(l, table);
  if (s.final_norm) blocks::describe(*s.final_norm, table);
  if (s.head_transform) blocks::describe(*s.head_transform, table);
  if (s.head_transform_norm) blocks::describe(*s.head_transform_norm, table);
  if (s.head_weight) table.push_back({*s.head_weight, {s.vocab_size, s.width}, !s.head_weight_optional});
  // Alternative names of one bias: each optional here; the constructor requires one of them.
  for (const auto& b : s.head_bias)
    table.push_back({b, s.head_bias_shape.empty() ? std::vector<std::int64_t>{s.vocab_size} : s.head_bias_shape, false});
}

TextDecoder::TextDecoder(const TextDecoderSpec& spec, const WeightStore& w, Backend& backend,
                         std::int64_t rows_hint, std::int64_t encoder_tokens_hint)
    : spec_(spec), backend_(backend) {
  const std::int64_t d = spec.width, v = spec.vocab_size;
  position_embedding_ = w.load(spec.position_embedding);
  if (spec.embedding_norm) embedding_norm_ = blocks::load(*spec.embedding_norm, w);
  if (spec.final_norm) final_norm_ = blocks::load(*spec.final_norm, w);

  const Precision precision = backend.precision();
  cross_bf16_ = precision == Precision::BF16;
  layers_.reserve(spec.layers.size());
  double blocks = 0;
  for (const auto& l : spec.layers) {
    layers_.emplace_back(l, w, backend, rows_hint, encoder_tokens_hint);
    blocks += layers_.back().step_weights();
    ffn_ = std::max(ffn_, layers_.back().ffn());
  }
  if (spec.head_transform) {
    head_transform_ = blocks::load(*spec.head_transform, w, backend, rows_hint);
    if (spec.head_transform_norm) head_transform_norm_ = blocks::load(*spec.head_transform_norm, w);
  }

  FloatBuffer bias;
  if (!spec.head_bias.empty()) {
    auto it = std::find_if(spec.head_bias.begin(), spec.head_bias.end(), [&](const auto& n) { return w.has(n); });
    if (it == spec.head_bias.end() && !spec.head_bias_optional) {
      std::string names;
      for (const auto& n : spec.head_bias) names += (names.empty() ? "'" : " or '") + n + "'";
      throw FormatError(fmt::format("{}: the LM head bias is missing (expected {})", w.description(), names));
    }
    if (it != spec.head_bias.end()) bias = w.load(*it);
  }
  // The head decides every token. Under bf16 layers it stays float32 when it is a small part of
  // the weights a step reads; GPT-2's 50257-token head is over a quarter of them and goes bf16.
  const double head = static_cast<double>(v) * d;
  head_f32_ = precision == Precision::F32 || head <= kSmallHeadShare * (head + blocks);
  FloatBuffer embeddings = w.load(spec.token_embedding);
  const bool own_head = spec.head_weight && w.has(*spec.head_weight);
  FloatBuffer head_weight;
  if (own_head) {
    head_weight = w.load(*spec.head_weight);
    // A stored head equal to the embeddings (BLIP ties them; the file holds both) is read once.
    tied_ = std::memcmp(head_weight.data(), embeddings.data(), sizeof(float) * static_cast<std::size_t>(v * d)) == 0;
  } else {
    tied_ = true;
  }
  backend.set_precision(head_f32_ ? Precision::F32 : precision);
  head_ = backend.prepare_linear(tied_ ? embeddings.data() : head_weight.data(), WeightLayout::OutIn, d, v,
                                 bias.size() ? bias.data() : nullptr, rows_hint);
  backend.set_precision(precision);
  // A tied decoder reads its token embeddings back from the prepared head
  // (Backend::weight_column), so the (V, D) matrix is held once.
  if (!tied_) token_embedding_ = std::move(embeddings);
}

void TextDecoder::embed(const std::int64_t* ids, std::int64_t rows, float* dst, std::int64_t dst_ld) {
  const std::int64_t d = spec_.width;
  if (tied_) {
    ops::weight_columns(backend_, *head_, ids, rows, dst, dst_ld);
  } else {
    for (std::int64_t r = 0; r < rows; ++r)
      if (ids[r] < 0 || ids[r] >= spec_.vocab_size)
        throw InputError(fmt::format("token id {} is outside the vocabulary (size {})", ids[r], spec_.vocab_size));
    ops::copy_rows(backend_, token_embedding_.data(), d, spec_.vocab_size, ids, rows, d, dst, dst_ld);
  }
  if (spec_.embedding_scale != 1.0f) ops::scale_rows(backend_, dst, rows, d, dst_ld, spec_.embedding_scale);
}

std::unique_ptr<blocks::KvCache> TextDecoder::start(const float* states, std::int64_t tokens,
                                                    std::int64_t rows, std::int64_t max_positions) {
  // The last token of a max_positions-long sequence is never fed, so it needs no position.
  if (max_positions - 1 > spec_.positions)
    throw InputError(fmt::format("generation needs {} positions, but the decoder has n_positions = {}",
                                 max_positions - 1, spec_.positions));
  auto cache = std::make_unique<blocks::KvCache>(backend_, num_layers(), spec_.width, spec_.heads, cross_bf16_);
  cache->reserve(rows, max_positions, tokens);
  ws_.reserve(std::max(rows, ws_.rows), max_positions, tokens, spec_.width, spec_.heads, ffn_);
  for (std::int64_t l = 0; l < num_layers(); ++l)
    layers_[static_cast<std::size_t>(l)].prepare_cross(backend_, l, states, tokens, *cache, ws_);
  return cache;
}

void TextDecoder::step(std::span<blocks::KvCache* const> groups, const std::int64_t* tokens, float* logits,
                       float* attention) {
  const std::int64_t d = spec_.width;
  std::int64_t rows = 0, positions = 0, cross = 0;
  for (const auto* g : groups) {
    g->check_room();
    rows += g->rows();
    positions = std::max(positions, g->positions());
    cross = std::max(cross, g->cross_tokens());
  }
  if (rows > ws_.rows) ws_.reserve(rows, positions, cross, d, spec_.heads, ffn_);
  if (x_.size() < static_cast<std::size_t>(rows * d)) {
    x_.resize(static_cast<std::size_t>(rows * d));
    transformed_.resize(static_cast<std::size_t>(rows * d));
  }
  float* x = x_.data();

  // Token embeddings, then each group's position embedding.
  embed(tokens, rows, x, d);
  std::int64_t first = 0;
  for (const auto* g : groups) {
    ops::add_rows(backend_, position_embedding_.data() + (g->position() + spec_.position_offset) * d, 0, g->rows(), d,
                  x + first * d, d);
    first += g->rows();
  }
  if (spec_.embedding_norm) ops::layer_norm(backend_, embedding_norm_, x, x, rows);

  const std::int64_t attention_ld = num_layers() * spec_.heads * cross;
  for (std::int64_t l = 0; l < num_layers(); ++l)
    layers_[static_cast<std::size_t>(l)].step(backend_, l, x, rows, groups, ws_, attention, attention_ld);

  const float* h = x;
  if (spec_.final_norm) {
    ops::layer_norm(backend_, final_norm_, x, ws_.normed.data(), rows);
    h = ws_.normed.data();
  }
  if (head_transform_) {
    ops::linear(backend_, *head_transform_, h, rows, transformed_.data(), spec_.head_transform_activation);
    if (spec_.head_transform_norm) ops::layer_norm(backend_, head_transform_norm_, transformed_.data(), transformed_.data(), rows);
    h = transformed_.data();
  }
  ops::linear(backend_, *head_, h, rows, logits);
  for (auto* g : groups) g->advance();
}

double TextDecoder::step_flops() const {
  double n = static_cast<double>(spec_.vocab_size) * spec_.width;
  if (head_transform_) n += static_cast<double>(spec_.width) * spec_.width;
  for (const auto& l : layers_) n += l.step_weights();
  return 2 * n;
}

double TextDecoder::step_weight_bytes(bool bf16) const {
  const double wbytes = bf16 ? 2 : 4, d = static_cast<double>(spec_.width);
  double matrices = 0, small = 0;  // small: biases and norms, float32
  for (const auto& l : layers_) {
    matrices += l.step_weights();
    small += 3 * 2 * d + 7 * d + static_cast<double>(l.ffn());  // 3 norms; biases: qkv 3d, 3 x d, fc1, fc2
  }
  if (head_transform_) {
    matrices += d * d;
    small += 3 * d;
  }
  if (spec_.embedding_norm) small += 2 * d;
  if (spec_.final_norm) small += 2 * d;
  const double head_bytes = head_f32_ ? 4 : wbytes;
  return wbytes * matrices + head_bytes * static_cast<double>(spec_.vocab_size) * d + 4 * small;
}

double TextDecoder::cross_flops(std::int64_t tokens) const {
  double n = 0;
  for (const auto& l : layers_) n += l.cross_weights();
  return 2 * static_cast<double>(tokens) * n;
}

}  // namespace xcaption
