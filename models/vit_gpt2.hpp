// The ViT -> GPT-2 vision-encoder-decoder family (ref: transformers
// models/vision_encoder_decoder/modeling_vision_encoder_decoder.py): tensor table and wiring.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "decoder/gpt2.hpp"
#include "encoders/vit.hpp"
#include "src/generate/generate.hpp"

namespace xcaption {

class VitGpt2Model : public StepModel {
 public:
  /// Every tensor the family reads, with HF names and shapes derived from the config.
  static std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

  /// Validates `weights` against expected_tensors() and prepares every layer on `backend`.
  VitGpt2Model(const ModelConfig& config, Backend& backend, const WeightStore& weights,
               std::int64_t max_beams);

  std::int64_t encoder_tokens() const { return encoder_.num_tokens(); }
  const VitEncoder& encoder() const { return encoder_; }
  const Gpt2Decoder& decoder() const { return decoder_; }
  bool has_projection() const { return projection_ != nullptr; }

  /// pixels (batch, 3, H, W) -> encoder last_hidden_state (batch, T, encoder hidden), kept
  /// inside; the encoder's linear layers run once for the whole batch.
  void encode(const float* pixels, std::int64_t batch = 1);
  /// For image `image` of the last encode(): projects its encoder states to the decoder width
  /// when needed and computes the cross K/V that the following decoding steps read.
  void prepare_cross_attention(std::int64_t max_rows, std::int64_t max_length, std::int64_t image = 0);
  /// Encoder states of image `image` of the last encode(): (T, encoder hidden).
  const float* encoder_states(std::int64_t image = 0) const;

  // StepModel
  std::int64_t vocab_size() const override { return decoder_.vocab_size(); }
  std::int64_t attention_floats() const override;
  void begin(std::int64_t rows) override { decoder_.reset(rows); }
  void step(const std::int64_t* tokens, float* logits, float* attention) override {
    decoder_.step(tokens, logits, attention);
  }
  void reorder(const std::int64_t* src) override { decoder_.reorder(src); }
  void log_softmax(const float* logits, std::int64_t rows, float* dst) override {
    ops::log_softmax(backend_, logits, dst, rows, decoder_.vocab_size());
  }

 private:
  Backend& backend_;
  VitEncoder encoder_;
  std::unique_ptr<PreparedLinear> projection_;  // enc_to_dec_proj (nn.Linear)
  Gpt2Decoder decoder_;
  FloatBuffer encoder_states_;  // (batch, T, enc hidden)
  std::int64_t batch_ = 0;      // images in encoder_states_
  FloatBuffer projected_;       // (T, dec hidden) when projecting
};

}  // namespace xcaption
