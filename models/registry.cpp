// The one list of model families. Adding a family: a folder models/<family>/ that defines its
// ModelFamily, and one line here (docs/architecture.md, "Adding a family").
#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "models/family.hpp"
#include "src/io/json_config.hpp"

namespace xcaption {

const ModelFamily& vit_gpt2_family();
const ModelFamily& blip_family();
const ModelFamily& florence2_family();

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = {
      vit_gpt2_family(),
      blip_family(),
      florence2_family(),
  };
  return families;
}

const ModelFamily& find_family(const std::filesystem::path& config_file, const nlohmann::json& config) {
  for (const auto& f : model_families())
    if (f.accepts(config)) return f;
  std::string type = "no model_type";
  if (auto it = config.find("model_type"); it != config.end()) type = "model_type " + it->dump();
  std::string supported;
  for (const auto& f : model_families()) supported += fmt::format("{}{} ({})", supported.empty() ? "" : "; ", f.name, f.description);
  throw InputError(fmt::format("{}: {} is not a model family xcaption supports (supported: {})",
                               config_file.string(), type, supported));
}

nlohmann::json read_model_config(const std::filesystem::path& dir) {
  const std::filesystem::path config_path = dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec))
    throw FormatError(fmt::format("{}: not found (a model folder needs config.json)", config_path.string()));
  nlohmann::json config = config::read_json_object(config_path);
  find_family(config_path, config);
  return config;
}

std::unique_ptr<CaptionModel> load_caption_model(const std::filesystem::path& dir, Backend& backend,
                                                 const WeightStore& weights, const Tokenizer& tokenizer,
                                                 std::int64_t rows_hint) {
  const nlohmann::json config = read_model_config(dir);
  return find_family(dir / "config.json", config).load({dir, config, backend, weights, tokenizer, rows_hint});
}

}  // namespace xcaption
