// Reading Hugging Face JSON configuration files: typed getters that name the file and the full
// key path in every message ("<dir>/config.json: key 'text_config.hidden_size': expected an
// integer, got string "768""). Shared by every family's config parser.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "src/backend/backend.hpp"

namespace xcaption::config {

using json = nlohmann::json;

/// Limits on the JSON files of a model folder (README "Untrusted input"): config.json,
/// generation_config.json, preprocessor_config.json, the shard indexes and tokenizer_config.json
/// hold at most kMaxConfigJsonBytes, tokenizer.json at most kMaxTokenizerJsonBytes (the largest
/// real ones are a few tens of MB), and no JSON nests deeper than kMaxJsonDepth.
inline constexpr std::int64_t kMaxConfigJsonBytes = std::int64_t{64} << 20;
inline constexpr std::int64_t kMaxTokenizerJsonBytes = std::int64_t{512} << 20;
inline constexpr int kMaxJsonDepth = 512;

/// The whole file, refused (FormatError naming it) when it cannot be opened or holds more than
/// `max_bytes` (checked before reading).
std::string read_text_file(const std::filesystem::path& path, std::int64_t max_bytes);

/// Thrown by parse_json for input nested deeper than kMaxJsonDepth (a nlohmann::json::parse_error
/// for anything else that is not JSON).
struct JsonTooDeep : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// nlohmann's parse with the depth limit. Throws JsonTooDeep or the parser's json::exception
/// (parse_error, or out_of_range for a number that overflows a double, e.g. 1e999).
template <class Json>
Json parse_json(std::string_view text) {
  return Json::parse(text, [](int depth, typename Json::parse_event_t, Json&) {
    if (depth > kMaxJsonDepth)
      throw JsonTooDeep("arrays or objects nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return true;
  });
}

/// "integer 5", "string \"x\"", "null", ... for messages.
std::string describe(const json& v);

/// Reads and parses a JSON file whose root must be an object. Throws FormatError naming the file
/// (unreadable, not JSON, not an object).
json read_json_object(const std::filesystem::path& path);

/// A JSON object and where it lives, so that every message names the file and the key path.
struct Node {
  const json* obj = nullptr;
  std::string file;
  std::string prefix;  // "" or "encoder." / "text_config."

  const json* find(std::string_view key) const {
    if (!obj) return nullptr;
    auto it = obj->find(key);
    return it == obj->end() ? nullptr : &*it;
  }
  std::string where(std::string_view key) const {
    return std::string(file) + ": key '" + prefix + std::string(key) + "'";
  }
};

[[noreturn]] void type_error(const Node& n, std::string_view key, const char* expected, const json& got);

std::int64_t to_int(const Node& n, std::string_view key, const json& v);
double to_double(const Node& n, std::string_view key, const json& v);
bool to_bool(const Node& n, std::string_view key, const json& v);
std::string to_string(const Node& n, std::string_view key, const json& v);

// Getters for model fields: absent -> `def`; null is a type error (transformers would store None
// and fail later).
std::int64_t get_int(const Node& n, std::string_view key, std::int64_t def);
double get_double(const Node& n, std::string_view key, double def);
bool get_bool(const Node& n, std::string_view key, bool def);
std::string get_string(const Node& n, std::string_view key, std::string def);
/// Absent or null -> nullopt.
std::optional<std::int64_t> get_opt_int(const Node& n, std::string_view key);
/// An attribute_map alias (GPT2Config's "hidden_size" for "n_embd") is written through after the
/// constructor assigned the canonical key, so the alias wins when both are present.
std::int64_t get_int_aliased(const Node& n, std::string_view key, std::string_view alias,
                             std::int64_t def);
/// An int, or a list [a, a] (transformers accepts (height, width) for image_size / patch_size);
/// non-square sizes are InputError.
std::int64_t get_square(const Node& n, std::string_view key, std::int64_t def);

/// The largest size a config key may hold (2^24): far above any real model dimension (vocabularies,
/// widths, positions, layer counts), and small enough that products of three sizes fit an int64.
inline constexpr std::int64_t kMaxConfigSize = std::int64_t{1} << 24;
/// ShapeError unless 0 < value <= kMaxConfigSize.
void require_positive(const Node& n, std::string_view key, std::int64_t value);
/// InputError unless the epsilon is finite and >= 0.
void require_epsilon(const Node& n, std::string_view key, double value);
/// ref: transformers activations.py ACT2FN: the names xcaption computes. InputError otherwise.
Activation parse_activation(const Node& n, std::string_view key, const std::string& name);
/// InputError unless n[key] is the string `expected`.
void require_type(const Node& n, std::string_view key, const char* expected);
/// The sub-object n[key] (FormatError when absent or not an object).
Node sub_object(const Node& n, const char* key);

}  // namespace xcaption::config
