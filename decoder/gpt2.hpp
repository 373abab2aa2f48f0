// GPT-2 text decoder with cross-attention, run one token at a time with a KV cache
// (ref: transformers models/gpt2/modeling_gpt2.py, eager attention).
//
// Rows: the decoder advances `rows` sequences in lock step (beam hypotheses); every linear layer
// runs once with M = rows. All rows attend to the same encoder states, whose cross-attention keys
// and values are computed once per image (set_encoder_states) and reused at every step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/backend/backend.hpp"
#include "src/io/model_config.hpp"
#include "src/io/weights.hpp"
#include "src/ops/ops.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {

class Gpt2Decoder {
 public:
  /// Expected checkpoint tensors under `prefix` (e.g. "decoder."). lm_head.weight only when the
  /// decoder is untied (tie_word_embeddings false); a tied head is wte.
  static void append_expected(const Gpt2Config& config, const std::string& prefix,
                              std::vector<ExpectedTensor>& table);

  Gpt2Decoder(const Gpt2Config& config, Backend& backend, const WeightStore& weights,
              const std::string& prefix, std::int64_t rows_hint,
              std::int64_t encoder_tokens_hint);

  const Gpt2Config& config() const { return config_; }
  std::int64_t vocab_size() const { return config_.vocab_size; }
  std::int64_t num_layers() const { return config_.n_layer; }
  std::int64_t num_heads() const { return config_.n_head; }
  /// Whether the LM head computes in float32 (always with F32 layers; with BF16 layers when the
  /// head is at most kSmallHeadShare of the weights a step reads).
  bool head_f32() const { return head_f32_; }
  static constexpr double kSmallHeadShare = 0.1;

  /// Sizes caches and workspaces; the step loop then allocates nothing. Grows only.
  void reserve(std::int64_t max_rows, std::int64_t max_positions, std::int64_t encoder_tokens);

  /// Cross-attention keys/values of every layer from encoder states (tokens, n_embd).
  /// Precondition: reserve() with encoder_tokens >= tokens.
  void set_encoder_states(const float* states, std::int64_t tokens);

  /// Empties the self-attention caches and sets the number of rows (<= reserved max_rows).
  void reset(std::int64_t rows);

  /// Feeds one token per row at the next position. logits: (rows, vocab). When `cross_attention`
  /// is not null it receives the cross-attention probabilities (rows, layers, heads, tokens).
  void step(const std::int64_t* tokens, float* logits, float* cross_attention);

  /// Row i takes over the cache of row src[i] (beam reordering).
  void reorder(const std::int64_t* src);

  std::int64_t position() const { return position_; }
  std::int64_t encoder_tokens() const { return encoder_tokens_; }
  /// Cross-attention keys | values of `layer`: (encoder_tokens, 2 * n_embd). For tests.
  const float* cross_kv(std::int64_t layer) const { return layers_.at(layer).cross_kv.data(); }

 private:
  struct Layer {
    ops::LayerNorm ln_1, ln_cross_attn, ln_2;
    std::unique_ptr<PreparedLinear> c_attn, c_proj;        // self-attention
    std::unique_ptr<PreparedLinear> q_attn, cross_c_attn, cross_c_proj;
    std::unique_ptr<PreparedLinear> c_fc, mlp_c_proj;
    float self_scale = 1.0f, cross_scale = 1.0f;
    FloatBuffer cross_kv;         // (S, 2D): keys | values, computed once per image
    FloatBuffer cross_k, cross_v; // (H, S, hd): the same, head-major, what each step reads
    std::vector<std::uint16_t> cross_k16, cross_v16;  // the same in bf16 when cross_kv_bf16_
    FloatBuffer k_cache, v_cache; // (max_rows, max_positions, D)
    FloatBuffer k_spare, v_spare; // reorder targets, swapped in
  };

  Gpt2Config config_;
  Backend& backend_;
  FloatBuffer wte_;  // (V, D) of an untied decoder; a tied one reads lm_head_'s columns
  FloatBuffer wpe_;  // (n_positions, D)
  std::unique_ptr<PreparedLinear> lm_head_;
  bool head_f32_ = true;
  // Under bf16 layers the steps read the cross-attention keys/values as bf16 (half the bytes;
  // the products over them stay float32).
  bool cross_kv_bf16_ = false;
  ops::LayerNorm ln_f_;
  std::vector<Layer> layers_;

  std::int64_t max_rows_ = 0, max_positions_ = 0, max_encoder_tokens_ = 0;
  std::int64_t rows_ = 0, position_ = 0, encoder_tokens_ = 0;

  FloatBuffer x_, normed_, qkv_, q_, context_, mlp_, scores_;
};

}  // namespace xcaption
