// ViT image encoder (ref: transformers models/vit/modeling_vit.py, eager attention).
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

class VitEncoder {
 public:
  /// Expected checkpoint tensors under `prefix` (e.g. "encoder."), for WeightStore::validate.
  static void append_expected(const VitConfig& config, const std::string& prefix,
                              std::vector<ExpectedTensor>& table);

  /// Copies the weights into the backend's layout. `weights` was validated with append_expected.
  VitEncoder(const VitConfig& config, Backend& backend, const WeightStore& weights,
             const std::string& prefix);

  std::int64_t grid_rows() const { return config_.image_size / config_.patch_size; }
  std::int64_t grid_cols() const { return grid_rows(); }
  std::int64_t num_tokens() const { return 1 + grid_rows() * grid_cols(); }  // CLS + patches
  std::int64_t hidden_size() const { return config_.hidden_size; }
  const VitConfig& config() const { return config_; }

  /// pixels: (batch, 3, image_size, image_size) preprocessed; out: (batch, num_tokens,
  /// hidden_size), the final layernorm applied to every token (last_hidden_state). The linear
  /// layers run once for the whole batch (M = batch * num_tokens); attention runs per image.
  /// Workspaces grow to the largest batch seen.
  void forward(const float* pixels, float* out, std::int64_t batch = 1);

 private:
  struct Layer {
    ops::LayerNorm layernorm_before, layernorm_after;
    std::unique_ptr<PreparedLinear> qkv;     // query|key|value fused: (D) -> (3D)
    std::unique_ptr<PreparedLinear> output;  // attention.output.dense
    std::unique_ptr<PreparedLinear> intermediate, mlp_output;
  };

  VitConfig config_;
  Backend& backend_;
  Precision attention_precision_;  // the backend's precision when the encoder was built (its linears' too)
  std::unique_ptr<PreparedLinear> patch_embedding_;  // conv kernel = stride = patch, as a matmul
  FloatBuffer cls_token_;                            // (D)
  FloatBuffer position_embeddings_;                  // (T, D)
  std::vector<Layer> layers_;
  ops::LayerNorm final_layernorm_;

  void reserve(std::int64_t batch);
  float scale_ = 1.0f;  // what remains of head_dim^-0.5 after folding into the query weights
  std::int64_t batch_capacity_ = 0;

  // Workspace, sized for batch_capacity_ images.
  FloatBuffer patches_;  // (B, P, C*p*p)
  FloatBuffer embedded_; // (B, P, D)
  FloatBuffer normed_;   // (B, T, D)
  FloatBuffer qkv_;      // (B, T, 3D)
  FloatBuffer context_;  // (B, T, D)
  FloatBuffer scores_;   // (H, T, T), one image at a time
  FloatBuffer mlp_;      // (B, T, I)
};

/// Loads a torch LayerNorm `<name>.weight` / `<name>.bias` of size n.
ops::LayerNorm load_layer_norm(const WeightStore& weights, const std::string& name, float eps);
void append_layer_norm(const std::string& name, std::int64_t n, std::vector<ExpectedTensor>& table);

}  // namespace xcaption
