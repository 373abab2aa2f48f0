// The configuration of a Florence-2 folder in either checkpoint layout (ref: the hub's
// configuration_florence2.py for microsoft/Florence-2-*, transformers models/florence2/
// configuration_florence2.py for florence-community/Florence-2-*): config.json with
// vision_config (read by encoders/davit) and text_config (a BART), preprocessor_config.json
// (CLIPImageProcessor: squash to 768x768, bicubic, ImageNet mean/std, no crop).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "decoder/bart.hpp"
#include "encoders/davit.hpp"
#include "src/io/generation_config.hpp"
#include "src/io/preprocessor_config.hpp"

namespace xcaption {

struct Florence2Config {
  std::filesystem::path dir;
  Florence2Layout layout = Florence2Layout::remote;
  BartConfig text;  // text_config over Florence2LanguageConfig's (remote) or BartConfig's (native) defaults
  std::optional<std::int64_t> image_token_id;  // native: the <image> placeholder
  GenerationConfig generation;
  PreprocessorConfig preprocessor;
  bool has_preprocessor_config_file = false;
  bool has_generation_config_file = false;
  std::int64_t image_size = 768;  // preprocessor size; the vision tower's input
  /// native: processor_config.json post_processor_config.phrase_grounding.banned_grounding_tokens.
  std::vector<std::string> banned_grounding_tokens;
};

/// True for config.json of model_type "florence2".
bool is_florence2_config(const config::json& config);

/// Reads the folder's config files for `layout` (the family picks it from the tensor names).
/// Generation settings: the remote code's Florence2ForConditionalGeneration.generate() hands
/// over to its BART's own generate(), whose GenerationConfig comes from text_config
/// (GenerationConfig.from_model_config); generation_config.json is not read. The native model's
/// generate() reads generation_config.json when present, else config.json. Throws FormatError /
/// InputError / ShapeError naming the file and key.
Florence2Config load_florence2_config(const std::filesystem::path& dir, const config::json& config,
                                      Florence2Layout layout);

}  // namespace xcaption
