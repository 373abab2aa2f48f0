// Turning a model folder's generation defaults plus a caller's overrides into DecodeSettings.
#pragma once

#include <xcaption/captioner.hpp>

#include "src/generate/generate.hpp"
#include "src/io/generation_config.hpp"

namespace xcaption {

/// The decoder start token: decoder_start_token_id, else bos_token_id (ref:
/// GenerationMixin._get_decoder_start_token_id). Throws InputError when neither is set.
std::int64_t decoder_start_token(const GenerationConfig& config);

/// `prompt` is the decoder input before the first generated token (start token first); empty
/// means the start token alone. Lengths follow HF: max_new_tokens counts after the prompt, an
/// untouched max_length of 20 means 20 new tokens (capped at `max_positions` when given, as
/// transformers caps it at max_position_embeddings), an explicit max_length counts the prompt.
/// Throws InputError for values out of range or a missing start token.
DecodeSettings resolve_settings(const GenerationConfig& config, const GenerationOptions& options,
                                std::vector<std::int64_t> prompt = {},
                                std::optional<std::int64_t> max_positions = std::nullopt);

}  // namespace xcaption
