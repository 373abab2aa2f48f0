// The configuration of a BlipForConditionalGeneration folder (config.json with vision_config and
// text_config, preprocessor_config.json; ref: transformers models/blip/configuration_blip.py,
// image_processing_blip.py). Defaults are the config classes' for absent keys.
#pragma once

#include <cstdint>
#include <filesystem>

#include "decoder/bert.hpp"
#include "encoders/vit_config.hpp"
#include "src/io/generation_config.hpp"
#include "src/io/preprocessor_config.hpp"

namespace xcaption {

/// ref: BlipTextConfig (its class defaults: 8 heads, whereas the checkpoints say 12).
struct BlipTextConfig {
  BertDecoderShape shape;  // vocab_size ... layer_norm_eps
  std::string hidden_act = "gelu";
  std::int64_t bos_token_id = 30522;  // "[DEC]"
  std::int64_t eos_token_id = 2;
  std::int64_t pad_token_id = 0;
  std::int64_t sep_token_id = 102;    // what generate() stops at
  bool is_decoder = true;
};

struct BlipConfig {
  std::filesystem::path dir;
  VitConfig vision;  // BlipVisionConfig: 384 px, patch 16, eps 1e-5
  BlipTextConfig text;
  GenerationConfig generation;
  PreprocessorConfig preprocessor;
  bool has_preprocessor_config_file = false;
  bool has_generation_config_file = false;  // read only to warn: BLIP's generate() ignores it
};

/// True for config.json of model_type "blip" (BlipForConditionalGeneration or no architectures).
bool is_blip_config(const config::json& config);

/// Reads the folder's config files. Generation settings are those transformers'
/// BlipForConditionalGeneration.generate() uses: the text decoder's own GenerationConfig, made
/// from text_config (GenerationConfig.from_model_config), with eos = text_config.sep_token_id and
/// pad = text_config.pad_token_id passed explicitly. Throws FormatError / InputError / ShapeError
/// naming the file and key.
BlipConfig load_blip_config(const std::filesystem::path& dir);

}  // namespace xcaption
