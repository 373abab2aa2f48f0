#include "models/caption_model.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

CaptionModel::CaptionModel(CaptionModelParts parts, Backend& backend) : parts_(std::move(parts)), backend_(backend) {
  const std::int64_t t = parts_.encoder->num_tokens();
  states_.resize(static_cast<std::size_t>(t * parts_.encoder->hidden_size()));
  if (parts_.projection) projected_.resize(static_cast<std::size_t>(t * parts_.projection->out_features()));
}

void CaptionModel::encode(const float* pixels, std::int64_t batch) {
  if (batch < 1) throw InputError(fmt::format("encode: batch must be at least 1, got {}", batch));
  const auto per_image = static_cast<std::size_t>(parts_.encoder->num_tokens() * parts_.encoder->hidden_size());
  if (states_.size() < per_image * static_cast<std::size_t>(batch))
    states_.resize(per_image * static_cast<std::size_t>(batch));
  parts_.encoder->forward(pixels, batch, states_.data());
  batch_ = batch;
}

const float* CaptionModel::encoder_states(std::int64_t image) const {
  if (image < 0 || image >= batch_)
    throw InputError(fmt::format("encoder_states: image {} outside the encoded batch of {}", image, batch_));
  return states_.data() + image * parts_.encoder->num_tokens() * parts_.encoder->hidden_size();
}

std::unique_ptr<blocks::KvCache> CaptionModel::start(std::int64_t image, std::int64_t rows, std::int64_t max_length) {
  const std::int64_t t = parts_.encoder->num_tokens();
  const float* states = encoder_states(image);
  if (parts_.projection) {
    ops::linear(backend_, *parts_.projection, states, t, projected_.data());
    states = projected_.data();
  }
  return parts_.decoder->start(states, t, rows, max_length);
}

std::int64_t CaptionModel::attention_floats() const {
  return parts_.decoder->num_layers() * parts_.decoder->num_heads() * parts_.encoder->num_tokens();
}

void CaptionModel::step(std::span<DecoderState* const> groups, const std::int64_t* tokens, float* logits,
                        float* attention) {
  caches_.clear();
  for (DecoderState* g : groups) caches_.push_back(static_cast<blocks::KvCache*>(g));
  parts_.decoder->step(caches_, tokens, logits, attention);
}

void CaptionModel::log_softmax(const float* logits, std::int64_t rows, float* dst) {
  ops::log_softmax(backend_, logits, dst, rows, vocab_size());
}

void CaptionModel::describe(ModelInfo& i, bool bf16) const {
  const ImageEncoder& e = *parts_.encoder;
  const TextDecoder& d = *parts_.decoder;
  i.family = parts_.family;
  i.architecture = parts_.architecture;
  i.encoder_description = e.describe();
  const auto& ds = d.spec();
  i.decoder_description = fmt::format("{}, {} layers, {} wide, {} heads, vocab {}, {} positions{}", ds.name,
                                      d.num_layers(), d.width(), d.num_heads(), d.vocab_size(), d.positions(),
                                      ds.layers.empty() || ds.layers.front().norm_first ? "" : ", post-norm");
  i.prompt_rule = parts_.prompt_rule;
  i.warnings.insert(i.warnings.end(), parts_.warnings.begin(), parts_.warnings.end());
  i.image_height = e.image_height();
  i.image_width = e.image_width();
  i.patch_size = e.patch_size();
  const TokenGrid grid = e.grid();
  i.grid_rows = grid.rows;
  i.grid_cols = grid.cols;
  i.encoder_tokens = e.num_tokens();
  i.encoder_hidden = e.hidden_size();
  i.encoder_layers = e.num_layers();
  i.encoder_heads = e.num_heads();
  i.decoder_hidden = d.width();
  i.decoder_layers = d.num_layers();
  i.decoder_heads = d.num_heads();
  i.vocab_size = d.vocab_size();
  i.n_positions = d.positions();
  i.enc_to_dec_proj = parts_.projection != nullptr;
  const double t = static_cast<double>(e.num_tokens());
  i.encoder_flops = e.flops();
  if (parts_.projection)
    i.encoder_flops += 2 * t * static_cast<double>(parts_.projection->in_features()) * parts_.projection->out_features();
  i.cross_kv_flops = d.cross_flops(e.num_tokens());
  i.decoder_step_flops = d.step_flops();
  // Plus the cached cross keys/values every step reads (bf16 under bf16).
  i.decoder_step_bytes = d.step_weight_bytes(bf16) + (bf16 ? 2.0 : 4.0) * d.num_layers() * t * 2 * d.width();
}

}  // namespace xcaption
