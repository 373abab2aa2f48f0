// The JSON object of one caption result: what `xcaption caption --json` prints per image and what
// `xcaption serve` answers for `/caption?details=true` (one function, so the two cannot drift).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>

namespace xcaption {

/// {"image", "caption", "prompt_ids", "token_ids", "tokens", "logprobs", "sequence_score",
///  "num_beams", "timings_ms": {"preprocess", "encoder", "cross_kv", "decode"}}.
nlohmann::json caption_result_json(const std::string& image, const CaptionResult& result);

}  // namespace xcaption
