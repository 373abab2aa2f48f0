#include "decoder/bert.hpp"

#include <cmath>

#include <fmt/format.h>

namespace xcaption {

TextDecoderSpec bert_decoder_spec(const BertDecoderShape& c, const std::string& prefix) {
  const std::int64_t d = c.hidden_size, enc = c.encoder_hidden_size, ffn = c.intermediate_size;
  const float eps = static_cast<float>(c.layer_norm_eps);
  const std::string b = prefix + "bert.";
  TextDecoderSpec s;
  s.name = "BERT";
  s.vocab_size = c.vocab_size;
  s.width = d;
  s.heads = c.num_attention_heads;
  s.positions = c.max_position_embeddings;
  s.token_embedding = b + "embeddings.word_embeddings.weight";
  s.position_embedding = b + "embeddings.position_embeddings.weight";
  s.embedding_norm = blocks::NormSpec{b + "embeddings.LayerNorm", d, eps};
  s.cross_width = enc;
  // ref: BlipTextSelfAttention: scores / sqrt(head_dim) (self- and cross-attention).
  const float scale = 1.0f / std::sqrt(static_cast<float>(d / c.num_attention_heads));
  auto qkv = [&](const std::string& n, std::int64_t kv_in) {
    blocks::LinearSpec q = blocks::linear(n + "query", d, d);
    blocks::LinearSpec kv;
    kv.parts = {{n + "key", d, {}}, {n + "value", d, {}}};
    kv.in = kv_in;
    return std::pair{q, kv};
  };
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string n = fmt::format("{}encoder.layer.{}.", b, l);
    blocks::DecoderLayerSpec layer;
    layer.norm_first = false;
    const auto [self_q, self_kv] = qkv(n + "attention.self.", d);
    layer.self_qkv.parts = {self_q.parts[0], self_kv.parts[0], self_kv.parts[1]};
    layer.self_qkv.in = d;
    layer.self_out = blocks::linear(n + "attention.output.dense", d, d);
    layer.self_norm = {n + "attention.output.LayerNorm", d, eps};
    const auto [cross_q, cross_kv] = qkv(n + "crossattention.self.", enc);
    layer.cross_q = cross_q;
    layer.cross_kv = cross_kv;
    layer.cross_out = blocks::linear(n + "crossattention.output.dense", d, d);
    layer.cross_norm = {n + "crossattention.output.LayerNorm", d, eps};
    layer.fc1 = blocks::linear(n + "intermediate.dense", d, ffn);
    layer.fc2 = blocks::linear(n + "output.dense", ffn, d);
    layer.mlp_norm = {n + "output.LayerNorm", d, eps};
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.num_attention_heads;
    layer.self_scale = layer.cross_scale = scale;
    s.layers.push_back(std::move(layer));
  }
  const std::string p = prefix + "cls.predictions.";
  s.head_transform = blocks::linear(p + "transform.dense", d, d);
  s.head_transform_activation = c.activation;
  s.head_transform_norm = blocks::NormSpec{p + "transform.LayerNorm", d, eps};
  s.head_weight = p + "decoder.weight";
  s.head_weight_optional = true;
  s.head_bias = {p + "bias", p + "decoder.bias"};
  return s;
}

}  // namespace xcaption
