#include "decoder/bart.hpp"

#include <cmath>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;

void parse_bart(const Node& n, BartConfig& c) {
  c.vocab_size = get_int(n, "vocab_size", c.vocab_size);
  c.d_model = get_int_aliased(n, "d_model", "hidden_size", c.d_model);
  c.encoder_layers = get_int(n, "encoder_layers", c.encoder_layers);
  c.decoder_layers = get_int(n, "decoder_layers", c.decoder_layers);
  c.encoder_attention_heads = get_int_aliased(n, "encoder_attention_heads", "num_attention_heads",
                                              c.encoder_attention_heads);
  c.decoder_attention_heads = get_int(n, "decoder_attention_heads", c.decoder_attention_heads);
  c.encoder_ffn_dim = get_int(n, "encoder_ffn_dim", c.encoder_ffn_dim);
  c.decoder_ffn_dim = get_int(n, "decoder_ffn_dim", c.decoder_ffn_dim);
  c.max_position_embeddings = get_int(n, "max_position_embeddings", c.max_position_embeddings);
  c.activation_function = get_string(n, "activation_function", c.activation_function);
  c.activation = parse_activation(n, "activation_function", c.activation_function);
  c.scale_embedding = get_bool(n, "scale_embedding", c.scale_embedding);
  c.pad_token_id = get_int(n, "pad_token_id", c.pad_token_id);
  c.bos_token_id = get_int(n, "bos_token_id", c.bos_token_id);
  c.eos_token_id = get_int(n, "eos_token_id", c.eos_token_id);
  c.decoder_start_token_id = get_int(n, "decoder_start_token_id", c.decoder_start_token_id);
  // (normalize_before, add_final_layer_norm and add_bias_logits, which old BART configs carry,
  // are read by no transformers BART code.)
  for (const auto& [key, value] :
       {std::pair{"vocab_size", c.vocab_size}, {"d_model", c.d_model}, {"encoder_layers", c.encoder_layers},
        {"decoder_layers", c.decoder_layers}, {"encoder_attention_heads", c.encoder_attention_heads},
        {"decoder_attention_heads", c.decoder_attention_heads}, {"encoder_ffn_dim", c.encoder_ffn_dim},
        {"decoder_ffn_dim", c.decoder_ffn_dim}, {"max_position_embeddings", c.max_position_embeddings}})
    require_positive(n, key, value);
  for (const auto& [key, heads] : {std::pair{"encoder_attention_heads", c.encoder_attention_heads},
                                   {"decoder_attention_heads", c.decoder_attention_heads}})
    if (c.d_model % heads != 0)
      throw ShapeError(fmt::format("{}: d_model {} is not a multiple of {} {}", n.where(key), c.d_model, key, heads));
  if (c.decoder_start_token_id < 0 || c.decoder_start_token_id >= c.vocab_size)
    throw InputError(fmt::format("{}: token id {} is outside the vocabulary [0, {})", n.where("decoder_start_token_id"),
                                 c.decoder_start_token_id, c.vocab_size));
}

namespace {

constexpr float kBartEps = 1e-5f;  // nn.LayerNorm's default; BART has no config key for it

blocks::LinearSpec qkv(const std::string& attn, std::int64_t d) {
  blocks::LinearSpec s;
  s.parts = {{attn + "q_proj", d, {}}, {attn + "k_proj", d, {}}, {attn + "v_proj", d, {}}};
  s.in = d;
  return s;
}

// ref: BartAttention: q_proj(x) * head_dim^-0.5 (bias included), no other scaling.
float scaling(std::int64_t d, std::int64_t heads) {
  return 1.0f / std::sqrt(static_cast<float>(d / heads));
}

}  // namespace

TextEncoderSpec bart_encoder_spec(const BartConfig& c, const BartNames& names) {
  const std::int64_t d = c.d_model;
  TextEncoderSpec s;
  s.name = "BART encoder";
  s.vocab_size = c.vocab_size;
  s.width = d;
  s.heads = c.encoder_attention_heads;
  s.positions = c.max_position_embeddings;
  s.position_offset = 2;  // ref: BartLearnedPositionalEmbedding.offset
  s.token_embedding = names.shared;
  s.embedding_scale = c.scale_embedding ? std::sqrt(static_cast<float>(d)) : 1.0f;
  s.position_embedding = names.encoder + "embed_positions.weight";
  s.embedding_norm = blocks::NormSpec{names.encoder + "layernorm_embedding", d, kBartEps};
  for (std::int64_t l = 0; l < c.encoder_layers; ++l) {
    const std::string n = fmt::format("{}layers.{}.", names.encoder, l);
    blocks::EncoderLayerSpec layer;
    layer.norm_first = false;
    layer.attention_norm = {n + "self_attn_layer_norm", d, kBartEps};
    layer.qkv = qkv(n + "self_attn.", d);
    layer.attention_out = blocks::linear(n + "self_attn.out_proj", d, d);
    layer.mlp_norm = {n + "final_layer_norm", d, kBartEps};
    layer.fc1 = blocks::linear(n + "fc1", d, c.encoder_ffn_dim);
    layer.fc2 = blocks::linear(n + "fc2", c.encoder_ffn_dim, d);
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.encoder_attention_heads;
    layer.attention_scale = scaling(d, c.encoder_attention_heads);
    s.layers.push_back(std::move(layer));
  }
  return s;
}

TextDecoderSpec bart_decoder_spec(const BartConfig& c, const BartNames& names) {
  const std::int64_t d = c.d_model;
  TextDecoderSpec s;
  s.name = "BART decoder";
  s.vocab_size = c.vocab_size;
  s.width = d;
  s.heads = c.decoder_attention_heads;
  s.positions = c.max_position_embeddings;
  s.position_offset = 2;
  s.token_embedding = names.shared;
  s.embedding_scale = c.scale_embedding ? std::sqrt(static_cast<float>(d)) : 1.0f;
  s.position_embedding = names.decoder + "embed_positions.weight";
  s.embedding_norm = blocks::NormSpec{names.decoder + "layernorm_embedding", d, kBartEps};
  s.cross_width = d;
  const float scale = scaling(d, c.decoder_attention_heads);
  for (std::int64_t l = 0; l < c.decoder_layers; ++l) {
    const std::string n = fmt::format("{}layers.{}.", names.decoder, l);
    blocks::DecoderLayerSpec layer;
    layer.norm_first = false;
    layer.self_qkv = qkv(n + "self_attn.", d);
    layer.self_out = blocks::linear(n + "self_attn.out_proj", d, d);
    layer.self_norm = {n + "self_attn_layer_norm", d, kBartEps};
    layer.cross_q = blocks::linear(n + "encoder_attn.q_proj", d, d);
    layer.cross_kv.parts = {{n + "encoder_attn.k_proj", d, {}}, {n + "encoder_attn.v_proj", d, {}}};
    layer.cross_kv.in = d;
    layer.cross_out = blocks::linear(n + "encoder_attn.out_proj", d, d);
    layer.cross_norm = {n + "encoder_attn_layer_norm", d, kBartEps};
    layer.fc1 = blocks::linear(n + "fc1", d, c.decoder_ffn_dim);
    layer.fc2 = blocks::linear(n + "fc2", c.decoder_ffn_dim, d);
    layer.mlp_norm = {n + "final_layer_norm", d, kBartEps};
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.decoder_attention_heads;
    layer.self_scale = layer.cross_scale = scale;
    s.layers.push_back(std::move(layer));
  }
  if (!names.head.empty() && names.head != names.shared) {
    s.head_weight = names.head;
    s.head_weight_optional = true;
  }
  if (!names.head_bias.empty()) {
    s.head_bias = {names.head_bias};
    s.head_bias_shape = {1, c.vocab_size};
    s.head_bias_optional = true;
  }
  return s;
}

}  // namespace xcaption
