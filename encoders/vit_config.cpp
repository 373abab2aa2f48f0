#include "encoders/vit_config.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;

void parse_vit(const Node& n, VitConfig& c) {
  c.hidden_size = get_int(n, "hidden_size", c.hidden_size);
  c.num_hidden_layers = get_int(n, "num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = get_int(n, "num_attention_heads", c.num_attention_heads);
  c.intermediate_size = get_int(n, "intermediate_size", c.intermediate_size);
  c.hidden_act = get_string(n, "hidden_act", c.hidden_act);
  c.activation = parse_activation(n, "hidden_act", c.hidden_act);
  c.layer_norm_eps = get_double(n, "layer_norm_eps", c.layer_norm_eps);
  c.image_size = get_square(n, "image_size", c.image_size);
  c.patch_size = get_square(n, "patch_size", c.patch_size);
  c.num_channels = get_int(n, "num_channels", c.num_channels);
  c.qkv_bias = get_bool(n, "qkv_bias", c.qkv_bias);

  require_positive(n, "hidden_size", c.hidden_size);
  require_positive(n, "num_hidden_layers", c.num_hidden_layers);
  require_positive(n, "num_attention_heads", c.num_attention_heads);
  require_positive(n, "intermediate_size", c.intermediate_size);
  require_positive(n, "image_size", c.image_size);
  require_positive(n, "patch_size", c.patch_size);
  if (c.num_channels != 3)
    throw InputError(fmt::format("{}: {} channels is unsupported (xcaption feeds RGB images: 3)",
                                 n.where("num_channels"), c.num_channels));
  require_epsilon(n, "layer_norm_eps", c.layer_norm_eps);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw ShapeError(fmt::format("{}: hidden_size {} is not a multiple of num_attention_heads {}",
                                 n.where("hidden_size"), c.hidden_size, c.num_attention_heads));
  if (c.image_size % c.patch_size != 0)
    throw ShapeError(fmt::format("{}: image_size {} is not a multiple of patch_size {}",
                                 n.where("image_size"), c.image_size, c.patch_size));
}

}  // namespace xcaption
