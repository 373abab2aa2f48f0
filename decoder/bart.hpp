// BART's encoder and decoder as a TextEncoderSpec and a TextDecoderSpec (ref: transformers
// models/bart/modeling_bart.py; the hub's modeling_florence2.py carries a copy, Florence2Encoder /
// Florence2Decoder, and transformers' models/florence2 loads a BartModel): post-norm layers
// (LayerNorm(x + sublayer(x)), nn.LayerNorm's eps 1e-5), separate q/k/v/out projections with
// the query scaled by head_dim^-0.5, learned positions read at position + 2, layernorm_embedding
// after the embeddings, token embeddings `shared` (times sqrt(d_model) when scale_embedding),
// the decoder cross-attending to the encoder's last states and an LM head tied to `shared`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "decoder/text_decoder.hpp"
#include "decoder/text_encoder.hpp"
#include "src/io/json_config.hpp"

namespace xcaption {

/// ref: transformers BartConfig (and the hub's Florence2LanguageConfig, the same keys with
/// Florence-2's defaults: vocab 51289, d_model 1024, 12 + 12 layers, 16 heads, ffn 4096).
struct BartConfig {
  std::int64_t vocab_size = 51289;
  std::int64_t d_model = 1024;
  std::int64_t encoder_layers = 12, decoder_layers = 12;
  std::int64_t encoder_attention_heads = 16, decoder_attention_heads = 16;
  std::int64_t encoder_ffn_dim = 4096, decoder_ffn_dim = 4096;
  std::int64_t max_position_embeddings = 1024;
  std::string activation_function = "gelu";
  Activation activation = Activation::GeluErf;
  bool scale_embedding = false;
  std::int64_t pad_token_id = 1, bos_token_id = 0, eos_token_id = 2, decoder_start_token_id = 2;
};

/// Reads a BartConfig / Florence2LanguageConfig object over the defaults already in `c`
/// (hidden_size and num_attention_heads are attribute_map aliases of d_model and
/// encoder_attention_heads). Throws FormatError / InputError / ShapeError naming file and key.
void parse_bart(const config::Node& n, BartConfig& c);

/// Checkpoint names of one BART model.
struct BartNames {
  std::string encoder;     // prefix of encoder.*: "language_model.model.encoder."
  std::string decoder;     // prefix of decoder.*
  std::string shared;      // the token embedding matrix, e.g. "language_model.model.shared.weight"
  std::string head;        // the LM head matrix when stored (tied: equal to `shared`); may be absent
  std::string head_bias;   // final_logits_bias (1, vocab), optional; empty: no bias
};

TextEncoderSpec bart_encoder_spec(const BartConfig& c, const BartNames& names);
TextDecoderSpec bart_decoder_spec(const BartConfig& c, const BartNames& names);

}  // namespace xcaption
