#include "models/caption_model.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

CaptionModel::CaptionModel(CaptionModelParts parts, Backend& backend) : parts_(std::move(parts)), backend_(backend) {
  const std::int64_t t = parts_.encoder->num_tokens();
  states_.resize(static_cast<std::size_t>(t * parts_.encoder->hidden_size()));
  if (parts_.projection) projected_.resize(static_cast<std::size_t>(t * parts_.projection->out_features()));
  cross_tokens_ = t;
  if (parts_.text_encoder && parts_.text_encoder->width() != parts_.encoder->hidden_size())
    throw ShapeError(fmt::format("the image tower gives {} features per token, the text encoder takes {}",
                                 parts_.encoder->hidden_size(), parts_.text_encoder->width()));
}

std::optional<std::string> CaptionModel::resolve_task(const std::optional<std::string>& task,
                                                      const std::optional<std::string>& text) const {
  const TaskRule& r = parts_.tasks;
  if (r.names.empty()) {
    if (task || text)
      throw InputError(fmt::format("the {} family has no tasks: {} applies to task models (Florence-2)",
                                   parts_.family, task ? "--task " + *task : std::string("--text")));
    return std::nullopt;
  }
  const std::string t = task.value_or(r.default_task);
  if (std::find(r.names.begin(), r.names.end(), t) == r.names.end()) {
    std::string all;
    for (const auto& n : r.names) all += (all.empty() ? "" : " ") + n;
    throw InputError(fmt::format("unknown task '{}' for the {} family (tasks: {})", t, parts_.family, all));
  }
  return t;
}

std::vector<std::int64_t> CaptionModel::encoder_prompt(const Tokenizer& tokenizer, const std::optional<std::string>& task,
                                                       const std::optional<std::string>& text) const {
  const std::optional<std::string> t = resolve_task(task, text);
  if (!t || !parts_.text_encoder) return {};
  return parts_.tasks.encoder_prompt(tokenizer, *t, text);
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

std::unique_ptr<blocks::KvCache> CaptionModel::start(std::int64_t image, std::int64_t rows, std::int64_t max_length,
                                                     std::span<const std::int64_t> encoder_prompt) {
  std::int64_t t = parts_.encoder->num_tokens();
  const float* states = encoder_states(image);
  if (parts_.text_encoder) {
    const std::int64_t total = t + static_cast<std::int64_t>(encoder_prompt.size());
    const auto need = static_cast<std::size_t>(total * parts_.text_encoder->width());
    if (projected_.size() < need) projected_.resize(need);
    parts_.text_encoder->forward(states, t, encoder_prompt, projected_.data());
    states = projected_.data();
    t = total;
  } else if (!encoder_prompt.empty()) {
    throw InputError(fmt::format("the {} family has no text encoder for an encoder prompt", parts_.family));
  } else if (parts_.projection) {
    ops::linear(backend_, *parts_.projection, states, t, projected_.data());
    states = projected_.data();
  }
  cross_states_ = states;
  cross_tokens_ = t;
  return parts_.decoder->start(states, t, rows, max_length);
}

std::int64_t CaptionModel::attention_floats() const {
  return parts_.decoder->num_layers() * parts_.decoder->num_heads() * cross_tokens_;
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
  if (const TextEncoder* te = parts_.text_encoder.get())
    i.encoder_description += fmt::format(", then {} over image + prompt tokens, {} layers, {} wide, {} heads, {} positions",
                                         te->spec().name, te->num_layers(), te->width(), te->num_heads(), te->positions());
  i.tasks = parts_.tasks.names;
  i.default_task = parts_.tasks.default_task;
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
  if (parts_.text_encoder) i.encoder_flops += parts_.text_encoder->flops(e.num_tokens());  // + the prompt's few tokens
  i.cross_kv_flops = d.cross_flops(e.num_tokens());
  i.decoder_step_flops = d.step_flops();
  // Plus the cached cross keys/values every step reads (bf16 under bf16).
  i.decoder_step_bytes = d.step_weight_bytes(bf16) + (bf16 ? 2.0 : 4.0) * d.num_layers() * t * 2 * d.width();
}

}  // namespace xcaption
