// generation_config.json, or the generation keys of config.json, parsed the way transformers'
// GenerationConfig resolves them (ref: transformers generation/configuration_utils.py).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/io/json_config.hpp"

namespace xcaption {

/// ref: transformers GenerationConfig. Optional fields are "not set" in the files.
struct GenerationConfig {
  std::int64_t max_length = 20;
  std::optional<std::int64_t> max_new_tokens;
  std::int64_t min_length = 0;
  std::optional<std::int64_t> min_new_tokens;
  std::int64_t num_beams = 1;
  double length_penalty = 1.0;
  // HF's early_stopping is true, false or "never".
  enum class EarlyStopping { False, True, Never } early_stopping = EarlyStopping::False;
  std::int64_t no_repeat_ngram_size = 0;
  double repetition_penalty = 1.0;
  bool do_sample = false;
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_id;  // empty = none
  std::optional<std::int64_t> pad_token_id;
  std::optional<std::int64_t> decoder_start_token_id;  // unset: generate() falls back to bos
  std::optional<std::int64_t> forced_bos_token_id;  // the only token allowed at the first step
  std::optional<std::int64_t> forced_eos_token_id;  // the only token allowed at the last step
  // True when the files set max_length to something other than GenerationConfig's default 20.
  // This is HF's own test (`_prepare_generated_length` compares the value with 20), so an explicit
  // "max_length": 20 — which every config.json written by transformers 4.x carries in its decoder
  // sub-config — still means "untouched": 20 new tokens.
  bool max_length_set = false;
  // Sampling parameters (used only when do_sample).
  double temperature = 1.0;
  std::int64_t top_k = 50;
  double top_p = 1.0;
  // Settings that change greedy/beam output but that xcaption does not implement, found with a
  // non-default value, as "key=value (file)", e.g. "forced_eos_token_id=50256 (config.json)".
  // The caller decides whether to refuse or warn.
  std::vector<std::string> unsupported;
};

/// Where generation values come from: generation_config.json alone, or a config.json resolved the
/// way GenerationConfig.from_model_config does it (the top level, then the decoder sub-config,
/// then the decoder config class's defaults for keys its to_dict() always holds).
class GenerationSource {
 public:
  static GenerationSource from_file(config::Node file) {
    GenerationSource s;
    s.primary_ = std::move(file);
    return s;
  }
  /// `class_defaults`: values of the decoder config class for keys absent from the file, e.g.
  /// {"bos_token_id": 50256, "eos_token_id": 50256} for GPT2Config.
  static GenerationSource from_model_config(config::Node top, config::Node decoder,
                                            config::json class_defaults = config::json::object()) {
    GenerationSource s;
    s.primary_ = std::move(top);
    s.decoder_ = std::move(decoder);
    s.class_defaults_ = std::move(class_defaults);
    s.from_model_config_ = true;
    return s;
  }

  /// The effective value of `key` (nullptr: the default `def` applies) and the node it came from.
  const config::json* get(std::string_view key, const config::json& def, const config::Node** origin) const;

 private:
  config::Node primary_;
  config::Node decoder_;
  config::json class_defaults_ = config::json::object();
  bool from_model_config_ = false;
};

/// Parses the settings of `src`. Only the start token must lie in [0, vocab_size).
/// Throws FormatError (wrong JSON type) or InputError (value out of range), naming file and key.
GenerationConfig parse_generation(const GenerationSource& src, std::int64_t vocab_size);

/// The folder's generation settings: `dir`/generation_config.json alone when present (absent keys
/// take GenerationConfig defaults; ref: GenerationConfig.from_pretrained), else `model_config`
/// (a from_model_config source over config.json). `from_file` (optional) tells which.
GenerationConfig load_generation_config(const std::filesystem::path& dir, const GenerationSource& model_config,
                                        std::int64_t vocab_size, bool* from_file = nullptr);

}  // namespace xcaption
