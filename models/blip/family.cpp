// BLIP captioning (ref: transformers models/blip/modeling_blip.py BlipForConditionalGeneration,
// modeling_blip_text.py): the BLIP vision tower (a ViT with a fused qkv and `projection`, pre-norm,
// post_layernorm on every token) feeding a BERT decoder (decoder/bert.hpp) whose every layer
// cross-attends to all image tokens. Prompt rule of generate(): the tokenized prompt
// `[CLS] ... [SEP]` with [CLS] replaced by bos ([DEC]) and the last id dropped; no prompt: [bos].
#include <cmath>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "encoders/vision_transformer.hpp"
#include "models/blip/config.hpp"
#include "models/family.hpp"

namespace xcaption {

namespace {

VisionTransformerSpec blip_vision_spec(const VitConfig& c, const std::string& prefix) {
  const std::int64_t d = c.hidden_size, p = c.patch_size;
  const float eps = static_cast<float>(c.layer_norm_eps);
  VisionTransformerSpec s;
  s.name = "BLIP vision";
  s.image_size = c.image_size;
  s.patch_size = p;
  s.channels = c.num_channels;
  s.width = d;
  s.heads = c.num_attention_heads;
  const std::string e = prefix + "embeddings.";
  s.cls_token = e + "class_embedding";
  s.position_embedding = e + "position_embedding";
  s.patch_embedding = blocks::linear(e + "patch_embedding", c.num_channels * p * p, d);
  s.patch_embedding.parts[0].weight_shape = {d, c.num_channels, p, p};
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string n = fmt::format("{}encoder.layers.{}.", prefix, l);
    blocks::EncoderLayerSpec layer;
    layer.norm_first = true;
    layer.attention_norm = {n + "layer_norm1", d, eps};
    layer.qkv = blocks::linear(n + "self_attn.qkv", d, 3 * d);  // rows q | k | v, heads contiguous
    layer.attention_out = blocks::linear(n + "self_attn.projection", d, d);
    layer.mlp_norm = {n + "layer_norm2", d, eps};
    layer.fc1 = blocks::linear(n + "mlp.fc1", d, c.intermediate_size);
    layer.fc2 = blocks::linear(n + "mlp.fc2", c.intermediate_size, d);
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.num_attention_heads;
    // ref: BlipAttention: scores = (Q·Kᵀ) * head_dim^-0.5
    layer.attention_scale = 1.0f / std::sqrt(static_cast<float>(d / c.num_attention_heads));
    s.layers.push_back(std::move(layer));
  }
  s.final_norm = {prefix + "post_layernorm", d, eps};
  return s;
}

// The config's sizes against the checkpoint, before any table is built from them.
void check_backed(const BlipConfig& c, const WeightStore& w) {
  const std::string file = (c.dir / "config.json").string();
  auto key = [&](const char* k) { return fmt::format("{}: key '{}'", file, k); };
  const VitConfig& v = c.vision;
  const BertDecoderShape& t = c.text.shape;
  w.require_layers(key("vision_config.num_hidden_layers"), v.num_hidden_layers);
  w.require_layers(key("text_config.num_hidden_layers"), t.num_hidden_layers);
  const double grid = static_cast<double>(v.image_size / v.patch_size);
  w.require_elements(key("vision_config.image_size"), "the position embeddings", (grid * grid + 1) * v.hidden_size);
  w.require_elements(key("vision_config.patch_size"), "the patch embedding",
                     3.0 * v.patch_size * v.patch_size * v.hidden_size);
  w.require_elements(key("vision_config.intermediate_size"), "an MLP weight", 1.0 * v.intermediate_size * v.hidden_size);
  w.require_elements(key("text_config.vocab_size"), "the token embeddings", 1.0 * t.vocab_size * t.hidden_size);
  w.require_elements(key("text_config.max_position_embeddings"), "the position embeddings",
                     1.0 * t.max_position_embeddings * t.hidden_size);
  w.require_elements(key("text_config.intermediate_size"), "an MLP weight", 1.0 * t.intermediate_size * t.hidden_size);
}

std::unique_ptr<CaptionModel> load(const FamilyLoad& f) {
  const BlipConfig c = load_blip_config(f.dir);
  check_backed(c, f.weights);
  const VisionTransformerSpec vision = blip_vision_spec(c.vision, "vision_model.");
  const TextDecoderSpec text = bert_decoder_spec(c.text.shape, "text_decoder.");

  CaptionModelParts parts;
  VisionTransformer::describe(vision, parts.tensors);
  TextDecoder::describe(text, parts.tensors);
  f.weights.validate(parts.tensors);

  parts.family = "blip";
  parts.architecture = "BlipForConditionalGeneration";
  parts.prompt_rule = "[DEC] (bos), then the prompt's WordPiece tokens ([CLS] ... [SEP] with [CLS] -> bos, [SEP] dropped)";
  parts.preprocessor = c.preprocessor;
  parts.generation = c.generation;
  parts.default_length_cap = c.text.shape.max_position_embeddings;
  auto encoder = std::make_unique<VisionTransformer>(vision, f.weights, f.backend);
  const std::int64_t tokens = encoder->num_tokens();
  parts.encoder = std::move(encoder);
  parts.decoder = std::make_unique<TextDecoder>(text, f.weights, f.backend, f.rows_hint, tokens);
  const std::int64_t bos = c.text.bos_token_id;
  parts.prompt = [bos](const Tokenizer& tokenizer, const GenerationConfig&, std::optional<std::string_view> prompt) {
    if (!prompt) return std::vector<std::int64_t>{bos};
    // ref: BlipForConditionalGeneration.generate: input_ids[:, 0] = bos_token_id, then
    // input_ids[:, :-1] (the processor's ids end with [SEP]).
    std::vector<std::int64_t> ids = tokenizer.encode(*prompt, /*add_special_tokens=*/true);
    if (ids.empty()) return std::vector<std::int64_t>{bos};
    ids.front() = bos;
    if (ids.size() > 1) ids.pop_back();
    return ids;
  };
  if (c.has_generation_config_file)
    parts.warnings.push_back("generation_config.json is not read: transformers' BLIP generate() takes its "
                             "settings from text_config in config.json");
  return std::make_unique<CaptionModel>(std::move(parts), f.backend);
}

}  // namespace

const ModelFamily& blip_family() {
  static const ModelFamily family{
      "blip",
      "config.json model_type \"blip\" (BlipForConditionalGeneration), e.g. Salesforce/blip-image-captioning-base",
      is_blip_config, load};
  return family;
}

}  // namespace xcaption
