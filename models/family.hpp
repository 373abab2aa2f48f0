// The model-family registry: every family xcaption can load, in one explicit list
// (models/registry.cpp; ref: CTranslate2 src/models/model_factory.cc). A family recognises its
// config.json, parses its own config files, lists its tensors (one name table for validation and
// loading) and builds a CaptionModel from shared blocks. docs/architecture.md has the checklist
// for adding one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/caption_model.hpp"
#include "src/io/weights.hpp"

namespace xcaption {

struct FamilyLoad {
  const std::filesystem::path& dir;
  const nlohmann::json& config;  // config.json, already parsed (an object)
  Backend& backend;              // its precision is the compute dtype the layers are prepared in
  const WeightStore& weights;
  const Tokenizer& tokenizer;
  std::int64_t rows_hint;        // beams the decoder's buffers are first sized for
};

struct ModelFamily {
  const char* name;         // "vit-gpt2"
  const char* description;  // for error messages and --help: what config.json it reads
  /// True when config.json describes a model of this family.
  bool (*accepts)(const nlohmann::json& config);
  /// Parses the folder's config files, validates `weights` against the family's tensor table and
  /// prepares every layer. Throws FormatError / ShapeError / InputError naming file and key.
  std::unique_ptr<CaptionModel> (*load)(const FamilyLoad& load);
};

/// Every registered family, in the order they are tried.
const std::vector<ModelFamily>& model_families();

/// The family whose accepts() takes `config`. Throws InputError naming the file and listing the
/// supported families when none does.
const ModelFamily& find_family(const std::filesystem::path& config_file, const nlohmann::json& config);

/// `dir`/config.json, checked to be an object some family accepts (FormatError when missing or
/// malformed, InputError for an unsupported model).
nlohmann::json read_model_config(const std::filesystem::path& dir);

/// Reads `dir`/config.json, picks its family and loads the model (the tokenizer is the folder's,
/// already loaded). What Captioner::load does before it adds the tokenizer and ModelInfo; tests
/// use it to reach the model's parts.
std::unique_ptr<CaptionModel> load_caption_model(const std::filesystem::path& dir, Backend& backend,
                                                 const WeightStore& weights, const Tokenizer& tokenizer,
                                                 std::int64_t rows_hint);

}  // namespace xcaption
