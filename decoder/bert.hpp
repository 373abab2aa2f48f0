// A BERT language-model head used as a captioning decoder (ref: transformers
// models/blip/modeling_blip_text.py, BertLMHeadModel-style): word + absolute position embeddings
// then LayerNorm; post-norm layers (LayerNorm(x + sublayer(x))) with separate query/key/value
// nn.Linear weights, causal self-attention, cross-attention whose key/value read the encoder's
// width, and an FFN; the LM head = dense + activation + LayerNorm, then the vocabulary matrix
// plus a bias.
#pragma once

#include <cstdint>
#include <string>

#include "decoder/text_decoder.hpp"

namespace xcaption {

struct BertDecoderShape {
  std::int64_t vocab_size = 30524;
  std::int64_t hidden_size = 768;
  std::int64_t encoder_hidden_size = 768;  // width of the states cross-attention reads
  std::int64_t intermediate_size = 3072;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t max_position_embeddings = 512;
  Activation activation = Activation::GeluErf;
  double layer_norm_eps = 1e-12;
};

/// The decoder with its checkpoint names: `prefix` + "bert.embeddings...", "bert.encoder.layer.N...",
/// "cls.predictions...". The head's bias is `cls.predictions.bias` or
/// `cls.predictions.decoder.bias` (transformers ties the two; a checkpoint may hold either);
/// `cls.predictions.decoder.weight` is used when stored, else the word embeddings.
TextDecoderSpec bert_decoder_spec(const BertDecoderShape& shape, const std::string& prefix);

}  // namespace xcaption
