#include "decoder/text_encoder.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

void TextEncoder::describe(const TextEncoderSpec& s, bool shared, std::vector<ExpectedTensor>& table) {
  if (!shared) table.push_back({s.token_embedding, {s.vocab_size, s.width}});
  table.push_back({s.position_embedding, {s.positions + s.position_offset, s.width}});
  if (s.embedding_norm) blocks::describe(*s.embedding_norm, table);
  for (const auto& l : s.layers) blocks::EncoderLayer::describe(l, table);
  if (s.final_norm) blocks::describe(*s.final_norm, table);
}

TextEncoder::TextEncoder(const TextEncoderSpec& spec, const WeightStore& w, Backend& backend,
                         TextDecoder* decoder, std::int64_t tokens_hint)
    : spec_(spec), backend_(backend) {
  if (decoder && decoder->spec().token_embedding == spec.token_embedding) {
    if (decoder->spec().embedding_scale != spec.embedding_scale || decoder->width() != spec.width)
      throw ShapeError(fmt::format("{}: the encoder shares '{}' with the decoder but not its width or scale",
                                   w.description(), spec.token_embedding));
    shared_ = decoder;
  } else {
    token_embedding_ = w.load(spec.token_embedding);
  }
  position_embedding_ = w.load(spec.position_embedding);
  if (spec.embedding_norm) embedding_norm_ = blocks::load(*spec.embedding_norm, w);
  if (spec.final_norm) final_norm_ = blocks::load(*spec.final_norm, w);
  layers_.reserve(spec.layers.size());
  for (const auto& l : spec.layers) {
    layers_.emplace_back(l, w, backend, tokens_hint);
    ffn_ = std::max(ffn_, layers_.back().ffn());
  }
}

void TextEncoder::forward(const float* prefix, std::int64_t prefix_tokens, std::span<const std::int64_t> ids,
                          float* dst) {
  const std::int64_t d = spec_.width, n = static_cast<std::int64_t>(ids.size()), t = prefix_tokens + n;
  if (t < 1) throw InputError("the text encoder got an empty sequence");
  if (t > spec_.positions)
    throw InputError(fmt::format("the encoder input has {} tokens ({} image tokens and a {}-token prompt), "
                                 "more than its max_position_embeddings {}",
                                 t, prefix_tokens, n, spec_.positions));
  if (prefix_tokens > 0) ops::copy_rows(backend_, prefix, d, prefix_tokens, nullptr, prefix_tokens, d, dst, d);
  if (n > 0) {
    float* x = dst + prefix_tokens * d;
    if (shared_) {
      shared_->embed(ids.data(), n, x, d);
    } else {
      ops::copy_rows(backend_, token_embedding_.data(), d, spec_.vocab_size, ids.data(), n, d, x, d);
      if (spec_.embedding_scale != 1.0f) ops::scale_rows(backend_, x, n, d, d, spec_.embedding_scale);
    }
  }
  // ref: BartLearnedPositionalEmbedding: positions 0..t-1 over the whole input, read at + offset.
  ops::add_rows(backend_, position_embedding_.data() + spec_.position_offset * d, d, t, d, dst, d);
  if (spec_.embedding_norm) ops::layer_norm(backend_, embedding_norm_, dst, dst, t);
  ws_.reserve(t, t, d, spec_.heads, ffn_);
  for (const auto& layer : layers_) layer.forward(backend_, dst, 1, t, ws_);
  if (spec_.final_norm) ops::layer_norm(backend_, final_norm_, dst, dst, t);
}

double TextEncoder::flops(std::int64_t tokens) const {
  double n = 0;
  for (const auto& l : layers_) n += l.flops(tokens);
  return n;
}

}  // namespace xcaption
