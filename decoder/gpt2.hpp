// GPT-2 with cross-attention as a TextDecoderSpec (ref: transformers models/gpt2/
// modeling_gpt2.py, eager attention): pre-norm layers, Conv1D weights stored (in, out), fused
// c_attn = q|k|v, a crossattention block whose c_attn = k|v reads the encoder states, ln_f, an
// LM head tied to wte unless tie_word_embeddings is false.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "decoder/text_decoder.hpp"
#include "src/io/json_config.hpp"

namespace xcaption {

/// ref: transformers GPT2Config.
struct Gpt2Config {
  std::int64_t vocab_size = 50257;
  std::int64_t n_positions = 1024;
  std::int64_t n_embd = 768;
  std::int64_t n_layer = 12;
  std::int64_t n_head = 12;
  std::int64_t n_inner = 0;  // 0 = null in JSON = 4 * n_embd; resolved at parse time
  std::string activation_function = "gelu_new";
  Activation activation = Activation::GeluTanh;  // derived from activation_function
  double layer_norm_epsilon = 1e-5;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool reorder_and_upcast_attn = false;
  bool add_cross_attention = false;
  bool tie_word_embeddings = true;
  std::optional<std::int64_t> cross_attention_hidden_size;
};

/// Reads a GPT2Config object (attribute_map aliases included) and checks sizes.
void parse_gpt2(const config::Node& n, Gpt2Config& c);

/// The decoder with its checkpoint names under `prefix` ("decoder."). Cross-attention reads
/// states of n_embd features (VisionEncoderDecoder projects the encoder's first when needed).
TextDecoderSpec gpt2_decoder_spec(const Gpt2Config& c, const std::string& prefix);

}  // namespace xcaption
