#include "src/generate/settings.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

std::int64_t decoder_start_token(const GenerationConfig& g) {
  const auto start = g.decoder_start_token_id ? g.decoder_start_token_id : g.bos_token_id;
  if (!start)
    throw InputError("the model folder sets neither decoder_start_token_id nor bos_token_id "
                     "(config.json or generation_config.json)");
  return *start;
}

/// ref: GenerationMixin._prepare_generated_length: max_new_tokens wins over max_length wherever it
/// comes from; an untouched max_length of 20 (the library default) means 20 new tokens.
DecodeSettings resolve_settings(const GenerationConfig& g, const GenerationOptions& o,
                                std::vector<std::int64_t> prompt_ids,
                                std::optional<std::int64_t> max_positions) {
  if (prompt_ids.empty()) prompt_ids.push_back(decoder_start_token(g));
  const auto prompt = static_cast<std::int64_t>(prompt_ids.size());
  DecodeSettings s;
  s.prompt = std::move(prompt_ids);
  s.num_beams = o.num_beams.value_or(g.num_beams);
  const auto max_new = o.max_new_tokens ? o.max_new_tokens : g.max_new_tokens;
  if (max_new) {
    if (*max_new < 1) throw InputError(fmt::format("max_new_tokens must be at least 1, got {}", *max_new));
    s.max_length = *max_new + prompt;
  } else if (o.max_length) {
    s.max_length = *o.max_length;
  } else {
    s.max_length = g.max_length == 20 ? g.max_length + prompt : g.max_length;
    if (g.max_length == 20 && max_positions) s.max_length = std::min(s.max_length, *max_positions);
  }
  const auto min_new = o.min_new_tokens ? o.min_new_tokens : g.min_new_tokens;
  s.min_length = min_new ? *min_new + prompt : o.min_length.value_or(g.min_length);
  s.no_repeat_ngram_size = o.no_repeat_ngram_size.value_or(g.no_repeat_ngram_size);
  s.repetition_penalty = static_cast<float>(o.repetition_penalty.value_or(g.repetition_penalty));
  s.length_penalty = o.length_penalty.value_or(g.length_penalty);
  using ES = DecodeSettings::EarlyStopping;
  s.early_stopping = g.early_stopping == GenerationConfig::EarlyStopping::True    ? ES::True
                     : g.early_stopping == GenerationConfig::EarlyStopping::Never ? ES::Never
                                                                                  : ES::False;
  if (o.early_stopping) {
    if (*o.early_stopping == "true") s.early_stopping = ES::True;
    else if (*o.early_stopping == "false") s.early_stopping = ES::False;
    else if (*o.early_stopping == "never") s.early_stopping = ES::Never;
    else throw InputError(fmt::format("early_stopping must be true, false or never, got '{}'", *o.early_stopping));
  }
  s.eos_token_ids = g.eos_token_id;
  s.forced_bos_token_id = g.forced_bos_token_id;
  s.forced_eos_token_id = g.forced_eos_token_id;
  if (s.num_beams < 1) throw InputError(fmt::format("num_beams must be at least 1, got {}", s.num_beams));
  if (s.repetition_penalty <= 0)
    throw InputError(fmt::format("repetition_penalty must be positive, got {}", s.repetition_penalty));
  if (s.no_repeat_ngram_size < 0)
    throw InputError(fmt::format("no_repeat_ngram_size must be >= 0, got {}", s.no_repeat_ngram_size));
  return s;
}

}  // namespace xcaption
