#include "decoder/gpt2.hpp"

#include <cmath>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;
using blocks::LinearSpec;

void parse_gpt2(const Node& n, Gpt2Config& c) {
  c.vocab_size = get_int(n, "vocab_size", c.vocab_size);
  c.n_positions = get_int_aliased(n, "n_positions", "max_position_embeddings", c.n_positions);
  c.n_embd = get_int_aliased(n, "n_embd", "hidden_size", c.n_embd);
  c.n_layer = get_int_aliased(n, "n_layer", "num_hidden_layers", c.n_layer);
  c.n_head = get_int_aliased(n, "n_head", "num_attention_heads", c.n_head);
  require_positive(n, "n_embd", c.n_embd);  // before 4 * n_embd
  const auto n_inner = get_opt_int(n, "n_inner");
  c.n_inner = n_inner ? *n_inner : 4 * c.n_embd;  // ref: GPT2MLP inner_dim
  c.activation_function = get_string(n, "activation_function", c.activation_function);
  c.activation = parse_activation(n, "activation_function", c.activation_function);
  c.layer_norm_epsilon = get_double(n, "layer_norm_epsilon", c.layer_norm_epsilon);
  c.scale_attn_weights = get_bool(n, "scale_attn_weights", c.scale_attn_weights);
  c.scale_attn_by_inverse_layer_idx =
      get_bool(n, "scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  c.reorder_and_upcast_attn = get_bool(n, "reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  c.add_cross_attention = get_bool(n, "add_cross_attention", c.add_cross_attention);
  c.tie_word_embeddings = get_bool(n, "tie_word_embeddings", c.tie_word_embeddings);
  c.cross_attention_hidden_size = get_opt_int(n, "cross_attention_hidden_size");

  require_positive(n, "vocab_size", c.vocab_size);
  require_positive(n, "n_positions", c.n_positions);
  require_positive(n, "n_embd", c.n_embd);
  require_positive(n, "n_layer", c.n_layer);
  require_positive(n, "n_head", c.n_head);
  require_positive(n, "n_inner", c.n_inner);
  require_epsilon(n, "layer_norm_epsilon", c.layer_norm_epsilon);
  if (c.n_embd % c.n_head != 0)
    throw ShapeError(fmt::format("{}: n_embd {} is not a multiple of n_head {}", n.where("n_embd"),
                                 c.n_embd, c.n_head));
}

TextDecoderSpec gpt2_decoder_spec(const Gpt2Config& c, const std::string& prefix) {
  const std::int64_t d = c.n_embd, inner = c.n_inner;
  const float eps = static_cast<float>(c.layer_norm_epsilon);
  const std::string t = prefix + "transformer.";
  constexpr auto conv1d = WeightLayout::InOut;  // GPT-2 Conv1D: (in, out), y = x·W + b
  TextDecoderSpec s;
  s.name = "GPT-2";
  s.vocab_size = c.vocab_size;
  s.width = d;
  s.heads = c.n_head;
  s.positions = c.n_positions;
  s.token_embedding = t + "wte.weight";
  s.position_embedding = t + "wpe.weight";
  s.cross_width = d;
  // ref: GPT2Attention._attn: scores / sqrt(head_dim) when scale_attn_weights, then / (layer_idx
  // + 1) when scale_attn_by_inverse_layer_idx (self- and cross-attention alike).
  const float head_scale = c.scale_attn_weights ? 1.0f / std::sqrt(static_cast<float>(d / c.n_head)) : 1.0f;
  for (std::int64_t l = 0; l < c.n_layer; ++l) {
    const std::string n = fmt::format("{}h.{}.", t, l);
    blocks::DecoderLayerSpec layer;
    layer.norm_first = true;
    layer.self_norm = {n + "ln_1", d, eps};
    layer.self_qkv = blocks::linear(n + "attn.c_attn", d, 3 * d, conv1d);
    layer.self_out = blocks::linear(n + "attn.c_proj", d, d, conv1d);
    layer.cross_norm = {n + "ln_cross_attn", d, eps};
    layer.cross_q = blocks::linear(n + "crossattention.q_attn", d, d, conv1d);
    layer.cross_kv = blocks::linear(n + "crossattention.c_attn", d, 2 * d, conv1d);
    layer.cross_out = blocks::linear(n + "crossattention.c_proj", d, d, conv1d);
    layer.mlp_norm = {n + "ln_2", d, eps};
    layer.fc1 = blocks::linear(n + "mlp.c_fc", d, inner, conv1d);
    layer.fc2 = blocks::linear(n + "mlp.c_proj", inner, d, conv1d);
    layer.activation = c.activation;
    layer.width = d;
    layer.heads = c.n_head;
    float scale = head_scale;
    if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(l + 1);
    layer.self_scale = layer.cross_scale = scale;
    s.layers.push_back(std::move(layer));
  }
  s.final_norm = blocks::NormSpec{t + "ln_f", d, eps};
  // ref: GPT2LMHeadModel ties lm_head to wte when tie_word_embeddings (the default); only an
  // untied decoder reads (and then needs) its own lm_head.weight.
  if (!c.tie_word_embeddings) s.head_weight = prefix + "lm_head.weight";
  return s;
}

}  // namespace xcaption
