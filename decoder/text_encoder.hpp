// A text encoder whose input may start with states that are not tokens: BART's encoder
// (ref: transformers models/bart/modeling_bart.py BartEncoder) as Florence-2 runs it over
// [image tokens; embedded prompt] (ref: the hub's modeling_florence2.py,
// _merge_input_ids_with_image_features; transformers models/florence2). Learned positions span
// the whole sequence, then layernorm_embedding, then post- or pre-norm layers without a mask.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "decoder/text_decoder.hpp"
#include "src/blocks/transformer.hpp"

namespace xcaption {

struct TextEncoderSpec {
  std::string name = "encoder";  // for describe(): "BART encoder"
  std::int64_t vocab_size = 0, width = 0, heads = 0;
  std::int64_t positions = 0;        // rows of the position table usable (max_position_embeddings)
  std::int64_t position_offset = 0;  // position p reads row p + offset (BART: 2)
  /// (vocab, width). When the decoder passed to the constructor has the same name, the encoder
  /// reads the decoder's copy (TextDecoder::embed, with the decoder's embedding_scale).
  std::string token_embedding;
  float embedding_scale = 1.0f;      // token embeddings (not the prefix states) times this
  std::string position_embedding;    // (positions + offset, width)
  std::optional<blocks::NormSpec> embedding_norm;  // BART layernorm_embedding
  std::vector<blocks::EncoderLayerSpec> layers;
  std::optional<blocks::NormSpec> final_norm;      // none in BART; mBART's layer_norm
};

class TextEncoder {
 public:
  /// Appends every tensor of `spec` (the token embedding only when not shared) to a table.
  static void describe(const TextEncoderSpec& spec, bool shares_decoder_embeddings,
                       std::vector<ExpectedTensor>& table);
  /// `decoder`: when non-null and its spec names the same token embedding, its matrix is used
  /// (it must outlive this encoder). `tokens_hint`: the sequence length mostly seen.
  TextEncoder(const TextEncoderSpec& spec, const WeightStore& weights, Backend& backend,
              TextDecoder* decoder, std::int64_t tokens_hint);

  std::int64_t width() const { return spec_.width; }
  std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  std::int64_t num_heads() const { return spec_.heads; }
  std::int64_t positions() const { return spec_.positions; }
  const TextEncoderSpec& spec() const { return spec_; }

  /// dst (prefix_tokens + ids.size(), width) = the encoder's last hidden states over the
  /// sequence [prefix (prefix_tokens, width) as given; token embeddings of ids]. Throws
  /// InputError when the sequence is empty, longer than the position table, or an id is outside
  /// the vocabulary.
  void forward(const float* prefix, std::int64_t prefix_tokens, std::span<const std::int64_t> ids, float* dst);

  /// FLOPs of one forward over `tokens` tokens.
  double flops(std::int64_t tokens) const;

 private:
  TextEncoderSpec spec_;
  Backend& backend_;
  TextDecoder* shared_ = nullptr;  // reads the embeddings from it
  FloatBuffer token_embedding_;    // (vocab, width) unless shared
  FloatBuffer position_embedding_;
  ops::LayerNorm embedding_norm_, final_norm_;
  std::vector<blocks::EncoderLayer> layers_;
  blocks::EncoderWorkspace ws_;
  std::int64_t ffn_ = 0;
};

}  // namespace xcaption
