// Shared building blocks, layer 2: one transformer encoder layer and one decoder layer, each with
// a pre-norm / post-norm switch (ref: CTranslate2 TransformerDecoderLayer(pre_norm=...)):
//   pre-norm  (ViT, GPT-2):  x += sublayer(norm(x))
//   post-norm (BERT, BART):  x  = norm(x + sublayer(x))
// The families describe names and sizes (the specs); the blocks do the math through ops.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "src/blocks/kv_cache.hpp"
#include "src/blocks/linear.hpp"

namespace xcaption::blocks {

/// Attention scale handling shared by both layers: `scale` multiplies Q·Kᵀ (head_dim^-0.5, times
/// 1/(layer+1) for GPT-2's scale_attn_by_inverse_layer_idx). Its exact part is folded into the
/// query projection; the rest multiplies the scores.
struct AttentionScale {
  float folded = 1.0f;     // applied to the query weights
  float remaining = 1.0f;  // applied to the scores
  static AttentionScale of(float scale);
};

struct EncoderLayerSpec {
  bool norm_first = true;
  NormSpec attention_norm;  // pre-norm: before attention; post-norm: after its residual add
  LinearSpec qkv;           // (width) -> q | k | v, 3 * width features
  LinearSpec attention_out;
  NormSpec mlp_norm;
  LinearSpec fc1, fc2;
  Activation activation = Activation::GeluErf;
  std::int64_t width = 0, heads = 0;
  float attention_scale = 1.0f;
};

/// Workspace of an encoder stack, sized by the owner for its largest batch.
struct EncoderWorkspace {
  FloatBuffer normed;   // (B*T, width)
  FloatBuffer qkv;      // (B*T, 3 width)
  FloatBuffer context;  // (B*T, width)
  FloatBuffer scores;   // (heads, T, T)
  FloatBuffer mlp;      // (B*T, ffn)
  void reserve(std::int64_t rows, std::int64_t tokens, std::int64_t width, std::int64_t heads, std::int64_t ffn);
};

class EncoderLayer {
 public:
  static void describe(const EncoderLayerSpec& spec, std::vector<ExpectedTensor>& table);
  /// `tokens_hint`: the row count its linear layers mostly see. Attention of bf16 layers runs in
  /// bf16 when the backend's precision is BF16 at construction.
  EncoderLayer(const EncoderLayerSpec& spec, const WeightStore& weights, Backend& backend,
               std::int64_t tokens_hint);
  /// x: (batch, tokens, width), updated in place. Every image attends only to its own tokens.
  void forward(Backend& backend, float* x, std::int64_t batch, std::int64_t tokens, EncoderWorkspace& ws) const;
  std::int64_t ffn() const { return fc1_->out_features(); }
  /// Multiply-adds of one forward over `tokens` tokens, times 2 (FLOPs).
  double flops(std::int64_t tokens) const;

 private:
  bool norm_first_;
  std::int64_t width_, heads_;
  Activation activation_;
  float scale_;
  Precision attention_precision_;
  ops::LayerNorm attention_norm_, mlp_norm_;
  std::unique_ptr<PreparedLinear> qkv_, attention_out_, fc1_, fc2_;
};

struct DecoderLayerSpec {
  bool norm_first = true;
  NormSpec self_norm, cross_norm, mlp_norm;
  LinearSpec self_qkv;   // (width) -> q | k | v
  LinearSpec self_out;
  LinearSpec cross_q;    // (width) -> width
  LinearSpec cross_kv;   // (encoder width) -> k | v, computed once per image
  LinearSpec cross_out;
  LinearSpec fc1, fc2;
  Activation activation = Activation::GeluErf;
  std::int64_t width = 0, heads = 0;
  float self_scale = 1.0f, cross_scale = 1.0f;
};

/// Workspace of a decoder stack, sized for the rows of one step and the encoder tokens.
struct DecoderWorkspace {
  FloatBuffer normed, qkv, q, context, mlp, scores, cross_kv;
  std::int64_t rows = 0, tokens = 0;
  void reserve(std::int64_t rows, std::int64_t positions, std::int64_t encoder_tokens,
               std::int64_t width, std::int64_t heads, std::int64_t ffn);
};

class DecoderLayer {
 public:
  static void describe(const DecoderLayerSpec& spec, std::vector<ExpectedTensor>& table);
  DecoderLayer(const DecoderLayerSpec& spec, const WeightStore& weights, Backend& backend,
               std::int64_t rows_hint, std::int64_t encoder_tokens_hint);

  /// Cross-attention keys/values of this layer (its index `layer`) from encoder states
  /// (tokens, encoder width) into `cache`. ws.cross_kv must hold tokens * 2 * width floats.
  void prepare_cross(Backend& backend, std::int64_t layer, const float* encoder_states,
                     std::int64_t tokens, KvCache& cache, DecoderWorkspace& ws) const;

  /// One step of every row: x (rows, width) in place, where the rows of groups[g] follow those
  /// of groups[g-1]; each group attends to its own caches (appending this step's keys/values at
  /// its position()). When `attention` is set, the cross-attention probabilities of row r go to
  /// attention + r * attention_ld + layer * heads * tokens.
  void step(Backend& backend, std::int64_t layer, float* x, std::int64_t rows,
            std::span<KvCache* const> groups, DecoderWorkspace& ws, float* attention,
            std::int64_t attention_ld) const;

  std::int64_t ffn() const { return fc1_->out_features(); }
  std::int64_t cross_in() const { return cross_kv_->in_features(); }
  /// Weights one step reads per token (the matrices, not the cross K/V projection).
  double step_weights() const;
  double cross_weights() const { return static_cast<double>(cross_kv_->in_features()) * cross_kv_->out_features(); }

 private:
  bool norm_first_;
  std::int64_t width_, heads_;
  Activation activation_;
  float self_scale_, cross_scale_;
  ops::LayerNorm self_norm_, cross_norm_, mlp_norm_;
  std::unique_ptr<PreparedLinear> self_qkv_, self_out_, cross_q_, cross_kv_, cross_out_, fc1_, fc2_;
};

}  // namespace xcaption::blocks
