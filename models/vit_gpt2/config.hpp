// The configuration of a ViT -> GPT-2 VisionEncoderDecoderModel folder (config.json with
// `encoder` and `decoder` sub-configs, generation_config.json, preprocessor_config.json).
// Field names follow the JSON keys so a grep connects code and config.json; defaults are those
// of transformers' config classes for keys that are absent.
#pragma once

#include <filesystem>
#include <string>

#include "decoder/gpt2.hpp"
#include "encoders/vit_config.hpp"
#include "src/io/generation_config.hpp"
#include "src/io/preprocessor_config.hpp"

namespace xcaption {

struct VitGpt2Config {
  std::filesystem::path dir;
  VitConfig encoder;
  Gpt2Config decoder;
  GenerationConfig generation;  // generation_config.json, else config.json keys, else defaults
  PreprocessorConfig preprocessor;
  bool has_generation_config_file = false;
  bool has_preprocessor_config_file = false;
  // ref: VisionEncoderDecoderModel.__init__: the Linear `enc_to_dec_proj` (encoder hidden size ->
  // decoder n_embd) exists when the sizes differ and decoder.cross_attention_hidden_size is null.
  bool enc_to_dec_proj = false;
};

/// True for config.json of model_type "vision-encoder-decoder" with a "vit" encoder and a "gpt2"
/// decoder.
bool is_vit_gpt2_config(const config::json& config);

/// Reads config.json, generation_config.json (optional) and preprocessor_config.json (optional:
/// defaults sized to the encoder's image_size when absent) from `dir`.
/// Generation settings follow transformers: generation_config.json alone when present (absent keys
/// take GenerationConfig defaults); otherwise GenerationConfig.from_model_config(config.json): the
/// top-level value when set and not equal to the default, else the decoder sub-config's value
/// (GPT2Config's own defaults included: bos = eos = 50256), else the default.
/// Accepted preprocessors: image_processor_type ViTImageProcessor / ViTImageProcessorFast (read
/// with the slow path's semantics) or feature_extractor_type ViTFeatureExtractor, or no type.
/// Throws FormatError (missing/malformed file, wrong JSON type for a key, naming file and key),
/// InputError (unsupported model_type, activation, processor or option value) or ShapeError
/// (inconsistent sizes: n_embd % n_head, hidden_size % num_attention_heads,
/// image_size % patch_size, a resize target different from image_size, non-positive sizes).
VitGpt2Config load_vit_gpt2_config(const std::filesystem::path& dir);

}  // namespace xcaption
