#include "src/io/generation_config.hpp"

#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;
namespace fs = std::filesystem;

namespace {

// GenerationConfig defaults of the keys xcaption reads (ref: GenerationConfig.__init__).
const std::vector<std::pair<const char*, json>>& generation_keys() {
  static const std::vector<std::pair<const char*, json>> keys = {
      {"max_length", 20},
      {"max_new_tokens", nullptr},
      {"min_length", 0},
      {"min_new_tokens", nullptr},
      {"num_beams", 1},
      {"length_penalty", 1.0},
      {"early_stopping", false},
      {"no_repeat_ngram_size", 0},
      {"repetition_penalty", 1.0},
      {"do_sample", false},
      {"temperature", 1.0},
      {"top_k", 50},
      {"top_p", 1.0},
      {"bos_token_id", nullptr},
      {"eos_token_id", nullptr},
      {"pad_token_id", nullptr},
      {"decoder_start_token_id", nullptr},
      {"forced_bos_token_id", nullptr},
      {"forced_eos_token_id", nullptr},
  };
  return keys;
}

// Keys whose non-default values change greedy or beam output and that xcaption does not
// implement; reported in GenerationConfig::unsupported.
const std::vector<std::pair<const char*, json>>& unsupported_generation_keys() {
  static const std::vector<std::pair<const char*, json>> keys = {
      {"num_beam_groups", 1},
      {"diversity_penalty", 0.0},
      {"num_return_sequences", 1},
      {"bad_words_ids", nullptr},
      {"force_words_ids", nullptr},
      {"constraints", nullptr},
      {"suppress_tokens", nullptr},
      {"begin_suppress_tokens", nullptr},
      {"sequence_bias", nullptr},
      {"exponential_decay_length_penalty", nullptr},
      {"encoder_repetition_penalty", 1.0},
      {"encoder_no_repeat_ngram_size", 0},
      {"renormalize_logits", false},
      {"penalty_alpha", nullptr},
      {"guidance_scale", nullptr},
      {"dola_layers", nullptr},
      {"max_time", nullptr},
      {"stop_strings", nullptr},
  };
  return keys;
}

}  // namespace

const json* GenerationSource::get(std::string_view key, const json& def, const Node** origin) const {
  *origin = &primary_;
  const json* v = primary_.find(key);
  if (v && v->is_null()) v = nullptr;  // None means "not set"
  if (!from_model_config_) return v;

  // ref: GenerationConfig.from_model_config. None values of the top level are dropped, then
  // every attribute still equal to its GenerationConfig default (a value comparison: an explicit
  // top-level default counts as unset) is taken from the decoder config's to_dict(), which holds
  // the decoder config class's own defaults too (GPT2Config: bos_token_id = eos_token_id = 50256).
  const bool unset = !v || *v == def;
  if (!unset) return v;
  if (const json* d = decoder_.find(key)) {
    *origin = &decoder_;
    return d->is_null() ? nullptr : d;
  }
  if (auto it = class_defaults_.find(key); it != class_defaults_.end()) {
    *origin = &decoder_;
    return &*it;
  }
  return v;
}

namespace {

std::string origin_label(const Node& origin, std::string_view key, const json& value) {
  return fmt::format("{}{}={} ({})", origin.prefix, key, value.dump(),
                     fs::path(origin.file).filename().string());
}

}  // namespace

GenerationConfig parse_generation(const GenerationSource& src, std::int64_t vocab_size) {
  GenerationConfig g;
  const Node* origin = nullptr;
  auto value = [&](const char* key) -> const json* {
    for (const auto& [k, def] : generation_keys())
      if (std::string_view(k) == key) return src.get(key, def, &origin);
    return nullptr;  // not reached: every key read below is in the table
  };
  auto int_or = [&](const char* key, std::int64_t def) {
    const json* v = value(key);
    return v ? to_int(*origin, key, *v) : def;
  };
  auto double_or = [&](const char* key, double def) {
    const json* v = value(key);
    return v ? to_double(*origin, key, *v) : def;
  };
  auto opt_int = [&](const char* key) -> std::optional<std::int64_t> {
    const json* v = value(key);
    if (!v) return std::nullopt;
    return to_int(*origin, key, *v);
  };
  auto range_error = [&](const char* key, const std::string& what) {
    return InputError(fmt::format("{}: {}", origin->where(key), what));
  };

  if (const json* v = value("max_length")) {
    g.max_length = to_int(*origin, "max_length", *v);
    if (g.max_length < 1)
      throw range_error("max_length", fmt::format("expected >= 1, got {}", g.max_length));
    g.max_length_set = g.max_length != 20;
  }
  g.max_new_tokens = opt_int("max_new_tokens");
  if (g.max_new_tokens && *g.max_new_tokens < 1)
    throw range_error("max_new_tokens", fmt::format("expected >= 1, got {}", *g.max_new_tokens));
  g.min_length = int_or("min_length", 0);
  if (g.min_length < 0)
    throw range_error("min_length", fmt::format("expected >= 0, got {}", g.min_length));
  g.min_new_tokens = opt_int("min_new_tokens");
  if (g.min_new_tokens && *g.min_new_tokens < 0)
    throw range_error("min_new_tokens", fmt::format("expected >= 0, got {}", *g.min_new_tokens));
  g.num_beams = int_or("num_beams", 1);
  if (g.num_beams < 1)
    throw range_error("num_beams", fmt::format("expected >= 1, got {}", g.num_beams));
  g.length_penalty = double_or("length_penalty", 1.0);
  if (const json* v = value("early_stopping")) {
    if (v->is_boolean()) {
      g.early_stopping = v->get<bool>() ? GenerationConfig::EarlyStopping::True
                                        : GenerationConfig::EarlyStopping::False;
    } else if (v->is_string()) {
      if (v->get<std::string>() != "never")
        throw range_error("early_stopping",
                          fmt::format("expected true, false or \"never\", got {}", v->dump()));
      g.early_stopping = GenerationConfig::EarlyStopping::Never;
    } else {
      type_error(*origin, "early_stopping", "a boolean or \"never\"", *v);
    }
  }
  g.no_repeat_ngram_size = int_or("no_repeat_ngram_size", 0);
  if (g.no_repeat_ngram_size < 0)
    throw range_error("no_repeat_ngram_size",
                      fmt::format("expected >= 0, got {}", g.no_repeat_ngram_size));
  g.repetition_penalty = double_or("repetition_penalty", 1.0);
  if (!(g.repetition_penalty > 0.0))  // ref: RepetitionPenaltyLogitsProcessor
    throw range_error("repetition_penalty",
                      fmt::format("expected > 0, got {}", g.repetition_penalty));
  if (const json* v = value("do_sample")) g.do_sample = to_bool(*origin, "do_sample", *v);
  g.temperature = double_or("temperature", 1.0);
  g.top_k = int_or("top_k", 50);
  g.top_p = double_or("top_p", 1.0);

  auto token = [&](const char* key, bool in_vocab) -> std::optional<std::int64_t> {
    const json* v = value(key);
    if (!v) return std::nullopt;
    if (v->is_array())
      throw InputError(fmt::format("{}: a list of ids is not supported here, got {}",
                                   origin->where(key), v->dump()));
    const std::int64_t id = to_int(*origin, key, *v);
    if (id < 0) throw range_error(key, fmt::format("token id {} is negative", id));
    if (in_vocab && id >= vocab_size)
      throw range_error(
          key, fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab_size));
    return id;
  };
  // Only the start token is embedded, so only it must lie in the vocabulary; transformers does
  // not check bos/eos/pad either (GPT2Config's default 50256 may exceed a small test vocabulary).
  g.bos_token_id = token("bos_token_id", false);
  g.pad_token_id = token("pad_token_id", false);
  g.decoder_start_token_id = token("decoder_start_token_id", true);
  // ref: ForcedBOSTokenLogitsProcessor / ForcedEOSTokenLogitsProcessor: they index the scores,
  // so the ids must lie in the vocabulary.
  g.forced_bos_token_id = token("forced_bos_token_id", true);
  g.forced_eos_token_id = token("forced_eos_token_id", true);
  if (const json* v = value("eos_token_id")) {
    auto add = [&](const json& item) {
      const std::int64_t id = to_int(*origin, "eos_token_id", item);
      if (id < 0) throw range_error("eos_token_id", fmt::format("token id {} is negative", id));
      g.eos_token_id.push_back(id);
    };
    if (v->is_array()) {
      for (const auto& item : *v) {
        if (!item.is_number_integer())
          type_error(*origin, "eos_token_id", "an integer or a list of integers", *v);
        add(item);
      }
    } else if (v->is_number_integer()) {
      add(*v);
    } else {
      type_error(*origin, "eos_token_id", "an integer or a list of integers", *v);
    }
  }

  for (const auto& [key, def] : unsupported_generation_keys()) {
    if (const json* v = src.get(key, def, &origin); v && *v != def)
      g.unsupported.push_back(origin_label(*origin, key, *v));
  }
  return g;
}

GenerationConfig load_generation_config(const fs::path& dir, const GenerationSource& model_config,
                                        std::int64_t vocab_size, bool* from_file) {
  const fs::path path = dir / "generation_config.json";
  std::error_code ec;
  const bool exists = fs::is_regular_file(path, ec);
  if (from_file) *from_file = exists;
  if (!exists) return parse_generation(model_config, vocab_size);
  const json file = read_json_object(path);
  return parse_generation(GenerationSource::from_file(Node{&file, path.string(), ""}), vocab_size);
}

}  // namespace xcaption
