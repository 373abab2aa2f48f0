// Florence-2's image tower: a DaViT backbone (dual attention: windowed spatial attention and
// channel-group attention, each with depthwise-convolution position encodings) followed by the
// projector that turns the last stage's grid into the tokens the BART encoder reads.
// ref: hub remote code modeling_florence2.py (DaViT, Florence2ForConditionalGeneration._encode_image)
//      and transformers models/florence2/modeling_florence2.py (Florence2VisionBackbone,
//      Florence2MultiModalProjector); tensor names of both layouts in florence2_vision_spec.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "encoders/image_encoder.hpp"
#include "src/blocks/linear.hpp"
#include "src/io/json_config.hpp"

namespace xcaption {

/// Hub remote-code names (microsoft/Florence-2-*, pytorch_model.bin) or transformers-native names
/// (florence-community/Florence-2-*, model.safetensors).
enum class Florence2Layout { remote, native };

/// A torch Conv2d: `<name>.weight` (out, in / groups, kernel, kernel), `<name>.bias` (out).
struct Conv2dSpec {
  std::string name;
  std::int64_t in = 0, out = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
};

/// One mixer of a DaViT block (spatial or channel): x += dwconv1(x); x += attn(norm1(x));
/// x += dwconv2(x); x += mlp(norm2(x)).
struct Florence2MixerSpec {
  Conv2dSpec conv1, conv2;  // depthwise 3x3, padding 1
  blocks::NormSpec norm1, norm2;
  blocks::LinearSpec qkv;   // (dim) -> q | k | v
  blocks::LinearSpec proj;  // (dim) -> dim
  blocks::LinearSpec fc1, fc2;
};

struct Florence2StageSpec {
  std::int64_t dim = 0;     // embed_dim / dim_embed[i]
  std::int64_t heads = 0;   // num_heads[i]: window attention heads
  std::int64_t groups = 0;  // num_groups[i]: channel attention groups
  Conv2dSpec embed;         // the stage's patch embedding (stem or downsample)
  bool prenorm = false;     // patch_prenorm[i]: LayerNorm before the conv (else after it)
  blocks::NormSpec embed_norm;  // (in) when prenorm, else (dim)
  std::vector<Florence2MixerSpec> spatial, channel;  // depths[i] blocks: spatial[j] then channel[j]
};

/// What the projector concatenates (image_feature_source), in order; one frame: the spatial
/// average is one token (the mean of the grid), the temporal average and the last frame are the
/// grid itself.
enum class Florence2FeatureSource { spatial_avg_pool, temporal_avg_pool, last_frame };

struct Florence2VisionSpec {
  Florence2Layout layout = Florence2Layout::remote;
  std::int64_t image_size = 768;  // square input; the family sets it from preprocessor_config.json
  std::int64_t window_size = 12;
  std::vector<Florence2StageSpec> stages;
  float eps = 1e-5f;  // every LayerNorm of the tower and the projector (torch's default)
  Activation activation = Activation::GeluErf;  // the MLPs' (nn.GELU / activation_function "gelu")

  // Projector.
  std::int64_t projection_dim = 0;
  std::string row_embeddings, column_embeddings;  // (max_pos, D/2) and (max_pos, D - D/2); empty: none
  std::int64_t max_pos_embeddings = 0;
  bool temporal_embedding = false;     // add the cosine row of frame 0 (0, 1, 0, 1, ...)
  std::string temporal_table;          // its stored table (optional in the checkpoint), (max_temporal, D)
  std::int64_t max_temporal_embeddings = 0;
  std::vector<Florence2FeatureSource> feature_sources;
  blocks::LinearSpec projection;       // (D) -> projection_dim, no bias
  blocks::NormSpec projection_norm;    // (projection_dim)

  /// Side of the last stage's grid for image_size (24 for 768 with the default strides).
  std::int64_t grid() const;
  std::int64_t num_tokens() const;
  /// Side of each stage's output grid for image_size.
  std::vector<std::int64_t> stage_sides() const;
};

/// Reads `vision_config` (and the top-level projector keys of the remote layout) of a Florence-2
/// config.json. `config` is the whole file; `file` names it in messages. Throws FormatError,
/// InputError or ShapeError naming the file and key (missing or zero sizes, lists of different
/// lengths, dims not divisible by heads or groups, unsupported embeddings or feature sources).
/// With `backing`, each stage's depth is checked against the checkpoint's tensor count
/// (WeightStore::require_layers) before a table entry is built per block.
Florence2VisionSpec florence2_vision_spec(const config::Node& config, Florence2Layout layout,
                                          const WeightStore* backing = nullptr);
Florence2VisionSpec florence2_vision_spec(const nlohmann::json& config, Florence2Layout layout,
                                          const std::string& file = "config.json", const WeightStore* backing = nullptr);

/// Every tensor of the tower and the projector, for WeightStore::validate and `info`.
std::vector<ExpectedTensor> describe(const Florence2VisionSpec& spec);
void describe(const Florence2VisionSpec& spec, std::vector<ExpectedTensor>& table);

/// DaViT + projector as one ImageEncoder: forward(pixels (B, 3, S, S)) -> (B, num_tokens,
/// projection_dim) after the projector's LayerNorm. Linear layers take the backend's precision
/// at construction (bf16 weights under --dtype bf16, as VisionTransformer's do); convolutions,
/// norms and the attention softmax run in float32.
class Florence2VisionTower final : public ImageEncoder {
 public:
  /// Prepares every layer on `backend`; the weights were validated against describe(spec).
  Florence2VisionTower(const Florence2VisionSpec& spec, const WeightStore& weights, Backend& backend);
  ~Florence2VisionTower() override;

  std::int64_t image_height() const override { return spec_.image_size; }
  std::int64_t image_width() const override { return spec_.image_size; }
  std::int64_t num_tokens() const override { return spec_.num_tokens(); }
  std::int64_t hidden_size() const override { return spec_.projection_dim; }
  TokenGrid grid() const override;
  void forward(const float* pixels, std::int64_t batch, float* out) override;
  double flops() const override;
  std::string describe() const override;
  std::int64_t num_layers() const override;
  std::int64_t num_heads() const override;
  std::int64_t patch_size() const override;

  /// The backbone's state after each stage for one image, (side_i * side_i, dim_i) row-major over
  /// the stage's grid: for tests against the reference's states. Runs the backbone once.
  std::vector<FloatBuffer> stage_outputs(const float* pixels);

 private:
  struct Impl;
  Florence2VisionSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xcaption
