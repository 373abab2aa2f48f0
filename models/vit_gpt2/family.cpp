// The ViT -> GPT-2 vision-encoder-decoder family (ref: transformers
// models/vision_encoder_decoder/modeling_vision_encoder_decoder.py, models/vit/modeling_vit.py):
// the ViT tensor names, the optional enc_to_dec_proj, GPT-2 (decoder/gpt2.hpp), and the prompt
// rule: the decoder start token, then the prompt's GPT-2 tokens (generate() prepends the start
// token to decoder_input_ids that lack it).
#include <cmath>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "encoders/vision_transformer.hpp"
#include "models/family.hpp"
#include "models/vit_gpt2/config.hpp"
#include "src/generate/settings.hpp"

namespace xcaption {

namespace {

VisionTransformerSpec vit_spec(const VitConfig& c, const std::string& prefix) {
  const std::int64_t d = c.hidden_size, p = c.patch_size;
  const float eps = static_cast<float>(c.layer_norm_eps);
  VisionTransformerSpec s;
  s.name = "ViT";
  s.image_size = c.image_size;
  s.patch_size = p;
  s.channels = c.num_channels;
  s.width = d;
  s.heads = c.num_attention_heads;
  const std::string e = prefix + "embeddings.";
  s.cls_token = e + "cls_token";
  s.position_embedding = e + "position_embeddings";
  s.patch_embedding = blocks::linear(e + "patch_embeddings.projection", c.num_channels * p * p, d);
  s.patch_embedding.parts[0].weight_shape = {d, c.num_channels, p, p};
  const auto qkv_bias = c.qkv_bias ? blocks::Bias::Required : blocks::Bias::None;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string n = fmt::format("{}encoder.layer.{}.", prefix, l);
    blocks::EncoderLayerSpec layer;
    layer.norm_first = true;
    layer.attention_norm = {n + "layernorm_before", d, eps};
    const std::string a = n + "attention.attention.";
    layer.qkv.parts = {{a + "query", d, {}}, {a + "key", d, {}}, {a + "value", d, {}}};
    layer.qkv.in = d;
    layer.qkv.bias = qkv_bias;
    layer.attention_out = blocks::linear(n + "attention.output.dense", d, d);
    layer.mlp_norm = {n + "layernorm_after", d, eps};
    layer.fc1 = blocks::linear(n + "intermediate.dense", d, c.intermediate_size);
    layer.fc2 = blocks::linear(n + "output.dense", c.intermediate_size, d);
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.num_attention_heads;
    // ref: ViTSelfAttention: scores = (Q·Kᵀ) · head_dim^-0.5
    layer.attention_scale = 1.0f / std::sqrt(static_cast<float>(d / c.num_attention_heads));
    s.layers.push_back(std::move(layer));
  }
  s.final_norm = {prefix + "layernorm", d, eps};
  return s;
}

// The config's sizes against the checkpoint, before any table is built from them.
void check_backed(const VitGpt2Config& c, const WeightStore& w) {
  const std::string file = (c.dir / "config.json").string();
  auto key = [&](const char* k) { return fmt::format("{}: key '{}'", file, k); };
  const VitConfig& e = c.encoder;
  const Gpt2Config& d = c.decoder;
  w.require_layers(key("encoder.num_hidden_layers"), e.num_hidden_layers);
  w.require_layers(key("decoder.n_layer"), d.n_layer);
  const double grid = static_cast<double>(e.image_size / e.patch_size);
  w.require_elements(key("encoder.image_size"), "the position embeddings", (grid * grid + 1) * e.hidden_size);
  w.require_elements(key("encoder.patch_size"), "the patch embedding",
                     3.0 * e.patch_size * e.patch_size * e.hidden_size);
  w.require_elements(key("encoder.intermediate_size"), "an MLP weight", 1.0 * e.intermediate_size * e.hidden_size);
  w.require_elements(key("decoder.vocab_size"), "the token embeddings", 1.0 * d.vocab_size * d.n_embd);
  w.require_elements(key("decoder.n_positions"), "the position embeddings", 1.0 * d.n_positions * d.n_embd);
  w.require_elements(key("decoder.n_inner"), "an MLP weight", 1.0 * d.n_inner * d.n_embd);
}

std::unique_ptr<CaptionModel> load(const FamilyLoad& f) {
  const VitGpt2Config c = load_vit_gpt2_config(f.dir);
  check_backed(c, f.weights);
  if (c.decoder.cross_attention_hidden_size && *c.decoder.cross_attention_hidden_size != c.decoder.n_embd)
    throw InputError(fmt::format(
        "{}: decoder.cross_attention_hidden_size = {} differs from n_embd = {}; GPT-2 cross-attention "
        "with a different key width is not supported",
        (c.dir / "config.json").string(), *c.decoder.cross_attention_hidden_size, c.decoder.n_embd));
  const VisionTransformerSpec encoder = vit_spec(c.encoder, "encoder.");
  const TextDecoderSpec decoder = gpt2_decoder_spec(c.decoder, "decoder.");
  const blocks::LinearSpec projection =
      blocks::linear("enc_to_dec_proj", c.encoder.hidden_size, c.decoder.n_embd);

  CaptionModelParts parts;
  VisionTransformer::describe(encoder, parts.tensors);
  if (c.enc_to_dec_proj) blocks::describe(projection, parts.tensors);
  TextDecoder::describe(decoder, parts.tensors);
  f.weights.validate(parts.tensors);

  parts.family = "vit-gpt2";
  parts.architecture = "VisionEncoderDecoderModel";
  parts.prompt_rule = "decoder start token, then the prompt's tokens";
  parts.preprocessor = c.preprocessor;
  parts.generation = c.generation;
  auto vit = std::make_unique<VisionTransformer>(encoder, f.weights, f.backend);
  const std::int64_t tokens = vit->num_tokens();
  parts.encoder = std::move(vit);
  if (c.enc_to_dec_proj) parts.projection = blocks::load(projection, f.weights, f.backend, tokens);
  parts.decoder = std::make_unique<TextDecoder>(decoder, f.weights, f.backend, f.rows_hint, tokens);
  parts.prompt = [](const Tokenizer& tokenizer, const GenerationConfig& g, std::optional<std::string_view> prompt) {
    std::vector<std::int64_t> ids{decoder_start_token(g)};
    if (prompt) {
      const auto text = tokenizer.encode(*prompt);
      ids.insert(ids.end(), text.begin(), text.end());
    }
    return ids;
  };
  return std::make_unique<CaptionModel>(std::move(parts), f.backend);
}

}  // namespace

const ModelFamily& vit_gpt2_family() {
  static const ModelFamily family{
      "vit-gpt2",
      "config.json model_type \"vision-encoder-decoder\" with a \"vit\" encoder and a \"gpt2\" decoder, "
      "e.g. nlpconnect/vit-gpt2-image-captioning",
      is_vit_gpt2_config, load};
  return family;
}

}  // namespace xcaption
