// The text decoder shared by GPT-2 (ref: transformers models/gpt2/modeling_gpt2.py), BLIP's
// BERT decoder (models/blip/modeling_blip_text.py) and, later, BART: token + learned position
// embeddings, N decoder layers (self-attention with a cache, cross-attention to the image,
// feed-forward; pre- or post-norm), an optional final norm, and an LM head (optionally a
// dense + activation + norm transform first; tied to the token embeddings or not; optional
// bias). Run one token per row at a time; the rows of several images advance in one step, each
// image's rows reading their own KvCache.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/blocks/kv_cache.hpp"
#include "src/blocks/transformer.hpp"

namespace xcaption {

struct TextDecoderSpec {
  std::string name = "decoder";  // for describe(): "GPT-2", "BERT"
  std::int64_t vocab_size = 0, width = 0, heads = 0;
  std::int64_t positions = 0;        // rows of the position table usable (n_positions)
  std::int64_t position_offset = 0;  // position p reads row p + offset (BART: 2)
  std::string token_embedding;       // (vocab, width)
  float embedding_scale = 1.0f;      // token embeddings times this (BART scale_embedding: sqrt(width))
  std::string position_embedding;    // (positions + offset, width)
  std::optional<blocks::NormSpec> embedding_norm;  // BERT: LayerNorm(tokens + positions)
  std::vector<blocks::DecoderLayerSpec> layers;
  std::optional<blocks::NormSpec> final_norm;      // GPT-2 ln_f
  // LM head.
  std::optional<blocks::LinearSpec> head_transform;  // BERT: dense (width -> width) ...
  Activation head_transform_activation = Activation::None;
  std::optional<blocks::NormSpec> head_transform_norm;  // ... then its LayerNorm
  /// The output matrix (vocab, width) as an nn.Linear weight name; nullopt: tied to the token
  /// embeddings. When `head_weight_optional`, an absent head falls back to the tied one.
  std::optional<std::string> head_weight;
  bool head_weight_optional = false;
  /// The head's bias (vocab): the first name present in the checkpoint; empty: no bias.
  std::vector<std::string> head_bias;
  /// Its stored shape when not (vocab), e.g. BART's final_logits_bias buffer (1, vocab).
  std::vector<std::int64_t> head_bias_shape;
  /// An absent bias is zero (final_logits_bias is a buffer transformers may not have saved).
  bool head_bias_optional = false;
  std::int64_t cross_width = 0;  // width of the encoder states the cross K/V read
};

class TextDecoder {
 public:
  static void describe(const TextDecoderSpec& spec, std::vector<ExpectedTensor>& table);
  /// `rows_hint`: the rows a step mostly has (beams); `encoder_tokens_hint`: the image's tokens.
  /// Throws FormatError when none of the head's bias names is present.
  TextDecoder(const TextDecoderSpec& spec, const WeightStore& weights, Backend& backend,
              std::int64_t rows_hint, std::int64_t encoder_tokens_hint);

  std::int64_t vocab_size() const { return spec_.vocab_size; }
  std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  std::int64_t num_heads() const { return spec_.heads; }
  std::int64_t width() const { return spec_.width; }
  std::int64_t positions() const { return spec_.positions; }
  const TextDecoderSpec& spec() const { return spec_; }
  /// Whether the LM head computes in float32: always with F32 layers; with BF16 layers when the
  /// head is at most kSmallHeadShare of the weights a step reads (small vocabularies, where
  /// rounding it changed captions for no measurable speed).
  bool head_f32() const { return head_f32_; }
  static constexpr double kSmallHeadShare = 0.1;
  /// Whether the head reads the token embedding matrix (tied, or stored with the same values).
  bool head_tied() const { return tied_; }

  /// dst row r (width values, stride dst_ld) = the token embedding of ids[r] times
  /// embedding_scale: what step() feeds its first layer before positions. An encoder that shares
  /// the matrix (BART's `shared`) reads it here, so it is held once. Throws InputError for an id
  /// outside the vocabulary.
  void embed(const std::int64_t* ids, std::int64_t rows, float* dst, std::int64_t dst_ld);

  /// A new decoding state for `rows` rows of up to `max_positions` tokens, with the cross
  /// attention keys/values of every layer computed from `encoder_states` (tokens, cross_width).
  /// Throws InputError when the max_positions - 1 tokens ever fed exceed the position table.
  std::unique_ptr<blocks::KvCache> start(const float* encoder_states, std::int64_t tokens,
                                         std::int64_t rows, std::int64_t max_positions);

  /// Feeds tokens[r] to row r at its group's next position (rows of groups[g] follow those of
  /// groups[g-1]); logits (rows, vocab); attention, when set, (rows, layers, heads, tokens).
  /// Throws InputError for a token outside the vocabulary or a full cache.
  void step(std::span<blocks::KvCache* const> groups, const std::int64_t* tokens, float* logits,
            float* attention);

  /// Work of one step for one row: the FLOPs of its matrix products and the bytes of weights it
  /// reads (matrices in the compute dtype, biases and norms in float32), for roofline estimates.
  double step_flops() const;
  double step_weight_bytes(bool bf16) const;
  /// FLOPs of the cross-attention keys/values of one image with `tokens` tokens.
  double cross_flops(std::int64_t tokens) const;

 private:
  TextDecoderSpec spec_;
  Backend& backend_;
  bool cross_bf16_ = false;
  bool head_f32_ = true;
  bool tied_ = false;
  FloatBuffer token_embedding_;  // (vocab, width) unless tied_ (then read from the head)
  FloatBuffer position_embedding_;
  ops::LayerNorm embedding_norm_, final_norm_, head_transform_norm_;
  std::unique_ptr<PreparedLinear> head_transform_, head_;
  std::vector<blocks::DecoderLayer> layers_;
  blocks::DecoderWorkspace ws_;
  FloatBuffer x_, transformed_;
  std::int64_t ffn_ = 0;
};

}  // namespace xcaption
