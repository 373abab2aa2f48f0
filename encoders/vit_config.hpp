// The vision-transformer configuration keys shared by ViTConfig and BlipVisionConfig
// (ref: transformers models/vit/configuration_vit.py, models/blip/configuration_blip.py).
#pragma once

#include <cstdint>
#include <string>

#include "src/backend/backend.hpp"
#include "src/io/json_config.hpp"

namespace xcaption {

/// ref: transformers ViTConfig (the defaults); other families start from their class's defaults.
struct VitConfig {
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  Activation activation = Activation::GeluErf;  // derived from hidden_act
  double layer_norm_eps = 1e-12;
  std::int64_t image_size = 224;
  std::int64_t patch_size = 16;
  std::int64_t num_channels = 3;
  bool qkv_bias = true;
};

/// Reads the keys of `n` over the defaults in `c` and checks them: positive sizes, 3 channels,
/// a finite epsilon, hidden_size divisible by the heads, image_size by the patch. Throws
/// FormatError / InputError / ShapeError naming the file and key.
void parse_vit(const config::Node& n, VitConfig& c);

}  // namespace xcaption
