// Turning a model folder's generation defaults plus a caller's overrides into DecodeSettings.
#pragma once

#include <xcaption/captioner.hpp>

#include "src/generate/generate.hpp"
#include "src/io/model_config.hpp"

namespace xcaption {

/// Throws InputError for values out of range or a missing decoder_start_token_id.
DecodeSettings resolve_settings(const GenerationConfig& config, const GenerationOptions& options);

}  // namespace xcaption
