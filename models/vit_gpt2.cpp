#include "models/vit_gpt2.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

namespace {
bool needs_projection(const ModelConfig& c) {
  // ref: VisionEncoderDecoderModel.__init__: enc_to_dec_proj exists when the hidden sizes differ
  // and the decoder does not set cross_attention_hidden_size.
  return c.encoder.hidden_size != c.decoder.n_embd && !c.decoder.cross_attention_hidden_size;
}

const WeightStore& validated(const WeightStore& weights, const ModelConfig& config) {
  weights.validate(VitGpt2Model::expected_tensors(config));
  return weights;
}
}  // namespace

std::vector<ExpectedTensor> VitGpt2Model::expected_tensors(const ModelConfig& config) {
  if (config.decoder.cross_attention_hidden_size &&
      *config.decoder.cross_attention_hidden_size != config.decoder.n_embd)
    throw InputError(fmt::format(
        "{}: decoder.cross_attention_hidden_size = {} differs from n_embd = {}; GPT-2 cross-attention "
        "with a different key width is not supported",
        (config.dir / "config.json").string(), *config.decoder.cross_attention_hidden_size,
        config.decoder.n_embd));
  std::vector<ExpectedTensor> table;
  VitEncoder::append_expected(config.encoder, "encoder.", table);
  if (needs_projection(config)) {
    table.push_back({"enc_to_dec_proj.weight", {config.decoder.n_embd, config.encoder.hidden_size}});
    table.push_back({"enc_to_dec_proj.bias", {config.decoder.n_embd}});
  }
  Gpt2Decoder::append_expected(config.decoder, "decoder.", table);
  return table;
}

VitGpt2Model::VitGpt2Model(const ModelConfig& config, Backend& backend, const WeightStore& weights,
                           std::int64_t max_beams)
    : backend_(backend),
      encoder_(config.encoder, backend, validated(weights, config), "encoder."),
      decoder_(config.decoder, backend, weights, "decoder.", max_beams, encoder_.num_tokens()) {
  const std::int64_t t = encoder_.num_tokens();
  if (needs_projection(config)) {
    FloatBuffer w = weights.load("enc_to_dec_proj.weight");
    FloatBuffer b = weights.load("enc_to_dec_proj.bias");
    projection_ = backend.prepare_linear(w.data(), WeightLayout::OutIn, config.encoder.hidden_size,
                                         config.decoder.n_embd, b.data(), t);
    projected_.resize(static_cast<std::size_t>(t * config.decoder.n_embd));
  }
  encoder_states_.resize(static_cast<std::size_t>(t * config.encoder.hidden_size));
}

void VitGpt2Model::encode(const float* pixels, std::int64_t batch) {
  if (batch < 1) throw InputError(fmt::format("encode: batch must be at least 1, got {}", batch));
  const auto per_image = static_cast<std::size_t>(encoder_.num_tokens() * encoder_.hidden_size());
  if (encoder_states_.size() < per_image * static_cast<std::size_t>(batch))
    encoder_states_.resize(per_image * static_cast<std::size_t>(batch));
  encoder_.forward(pixels, encoder_states_.data(), batch);
  batch_ = batch;
}

const float* VitGpt2Model::encoder_states(std::int64_t image) const {
  if (image < 0 || image >= std::max<std::int64_t>(batch_, 1))
    throw InputError(fmt::format("encoder_states: image {} outside the encoded batch of {}", image, batch_));
  return encoder_states_.data() + image * encoder_.num_tokens() * encoder_.hidden_size();
}

void VitGpt2Model::prepare_cross_attention(std::int64_t max_rows, std::int64_t max_length, std::int64_t image) {
  const std::int64_t t = encoder_.num_tokens();
  decoder_.reserve(max_rows, max_length, t);
  const float* states = encoder_states(image);
  if (projection_) {
    ops::linear(backend_, *projection_, states, t, projected_.data());
    states = projected_.data();
  }
  decoder_.set_encoder_states(states, t);
}

std::int64_t VitGpt2Model::attention_floats() const {
  return decoder_.num_layers() * decoder_.num_heads() * encoder_.num_tokens();
}

}  // namespace xcaption
