#include "encoders/vision_transformer.hpp"

#include <fmt/format.h>

namespace xcaption {

void VisionTransformer::describe(const VisionTransformerSpec& s, std::vector<ExpectedTensor>& table) {
  const std::int64_t g = s.image_size / s.patch_size;
  table.push_back({s.cls_token, {1, 1, s.width}});
  table.push_back({s.position_embedding, {1, 1 + g * g, s.width}});
  blocks::describe(s.patch_embedding, table);
  for (const auto& l : s.layers) blocks::EncoderLayer::describe(l, table);
  blocks::describe(s.final_norm, table);
}

VisionTransformer::VisionTransformer(const VisionTransformerSpec& spec, const WeightStore& w, Backend& backend)
    : spec_(spec), backend_(backend), grid_(spec.image_size / spec.patch_size) {
  const std::int64_t t = num_tokens();
  patch_embedding_ = blocks::load(spec.patch_embedding, w, backend, t - 1);
  cls_token_ = w.load(spec.cls_token);
  position_embeddings_ = w.load(spec.position_embedding);
  layers_.reserve(spec.layers.size());
  for (const auto& l : spec.layers) layers_.emplace_back(l, w, backend, t);
  final_norm_ = blocks::load(spec.final_norm, w);
  reserve(1);
}

void VisionTransformer::reserve(std::int64_t batch) {
  if (batch <= batch_capacity_) return;
  const std::int64_t d = spec_.width, p = spec_.patch_size, t = num_tokens();
  const auto b = static_cast<std::size_t>(batch), np = static_cast<std::size_t>(t - 1);
  patches_.resize(b * np * static_cast<std::size_t>(spec_.channels * p * p));
  embedded_.resize(b * np * static_cast<std::size_t>(d));
  std::int64_t ffn = 0;
  for (const auto& l : layers_) ffn = std::max(ffn, l.ffn());
  ws_.reserve(batch * t, t, d, spec_.heads, ffn);
  batch_capacity_ = batch;
}

void VisionTransformer::forward(const float* pixels, std::int64_t batch, float* out) {
  const std::int64_t d = spec_.width, t = num_tokens(), np = t - 1;
  reserve(batch);
  ops::patchify(backend_, pixels, batch, spec_.channels, spec_.image_size, spec_.image_size, spec_.patch_size,
                patches_.data());
  // x = [CLS; patches·W + b] + position embeddings, in `out`: (B, T, D).
  ops::linear(backend_, *patch_embedding_, patches_.data(), batch * np, embedded_.data());
  for (std::int64_t b = 0; b < batch; ++b) {
    float* x = out + b * t * d;
    ops::copy_rows(backend_, cls_token_.data(), d, 1, nullptr, 1, d, x, d);
    ops::copy_rows(backend_, embedded_.data() + b * np * d, d, np, nullptr, np, d, x + d, d);
    ops::add_rows(backend_, position_embeddings_.data(), d, t, d, x, d);
  }
  for (const auto& layer : layers_) layer.forward(backend_, out, batch, t, ws_);
  ops::layer_norm(backend_, final_norm_, out, out, batch * t);
}

double VisionTransformer::flops() const {
  const double np = static_cast<double>(num_tokens() - 1);
  double f = 2 * np * static_cast<double>(spec_.patch_embedding.weights());
  for (const auto& l : layers_) f += l.flops(num_tokens());
  return f;
}

std::string VisionTransformer::describe() const {
  std::int64_t ffn = layers_.empty() ? 0 : layers_.front().ffn();
  return fmt::format("{} {}x{}/{} ({} tokens), {} layers, {} wide, {} heads, MLP {}", spec_.name, spec_.image_size,
                     spec_.image_size, spec_.patch_size, num_tokens(), layers_.size(), spec_.width, spec_.heads, ffn);
}

}  // namespace xcaption
