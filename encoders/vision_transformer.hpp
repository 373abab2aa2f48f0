// The ViT image tower shared by ViT (ref: transformers models/vit/modeling_vit.py) and BLIP's
// vision model (models/blip/modeling_blip.py): a patch-embedding convolution, a class token and
// learned absolute positions, pre-norm transformer layers, a final layer norm on every token.
// The families say what their tensors are called (VisionTransformerSpec); the math lives here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "encoders/image_encoder.hpp"
#include "src/blocks/transformer.hpp"

namespace xcaption {

struct VisionTransformerSpec {
  std::string name = "ViT";  // for describe()
  std::int64_t image_size = 224, patch_size = 16, channels = 3, width = 768, heads = 12;
  std::string cls_token;           // (1, 1, width)
  std::string position_embedding;  // (1, 1 + grid * grid, width)
  blocks::LinearSpec patch_embedding;  // Conv2d (width, channels, patch, patch) as a matrix
  std::vector<blocks::EncoderLayerSpec> layers;
  blocks::NormSpec final_norm;
};

class VisionTransformer final : public ImageEncoder {
 public:
  /// Appends every tensor of `spec` to a family's table.
  static void describe(const VisionTransformerSpec& spec, std::vector<ExpectedTensor>& table);
  /// Prepares the layers on `backend` (the weights validated against describe()).
  VisionTransformer(const VisionTransformerSpec& spec, const WeightStore& weights, Backend& backend);

  std::int64_t image_height() const override { return spec_.image_size; }
  std::int64_t image_width() const override { return spec_.image_size; }
  std::int64_t num_tokens() const override { return 1 + grid_ * grid_; }
  std::int64_t hidden_size() const override { return spec_.width; }
  TokenGrid grid() const override { return {num_tokens(), 1, grid_, grid_}; }
  void forward(const float* pixels, std::int64_t batch, float* out) override;
  double flops() const override;
  std::string describe() const override;
  std::int64_t num_layers() const override { return static_cast<std::int64_t>(layers_.size()); }
  std::int64_t num_heads() const override { return spec_.heads; }
  std::int64_t patch_size() const override { return spec_.patch_size; }

 private:
  void reserve(std::int64_t batch);

  VisionTransformerSpec spec_;
  Backend& backend_;
  std::int64_t grid_;
  std::unique_ptr<PreparedLinear> patch_embedding_;
  FloatBuffer cls_token_;            // (width)
  FloatBuffer position_embeddings_;  // (T, width)
  std::vector<blocks::EncoderLayer> layers_;
  ops::LayerNorm final_norm_;
  std::int64_t batch_capacity_ = 0;
  FloatBuffer patches_;   // (B, P, C*p*p)
  FloatBuffer embedded_;  // (B, P, width)
  blocks::EncoderWorkspace ws_;
};

}  // namespace xcaption
