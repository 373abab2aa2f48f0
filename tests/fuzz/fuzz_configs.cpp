// libFuzzer target for the model folder's JSON files: the input is config.json, optionally
// followed by "\n--generation--\n" and generation_config.json and/or "\n--preprocessor--\n" and
// preprocessor_config.json. They are written into a scratch folder and read the way
// Captioner::load reads them: read_model_config (family detection), then the family's own config
// loader (vit-gpt2 or BLIP: every key's type and range, generation and preprocessor settings).
// Only the library's typed errors may come out; anything else (a nlohmann exception, a crash, an
// overflow UBSan sees) is a finding.
#include <cstddef>
#include <cstdint>

#include <xcaption/errors.hpp>

#include "models/blip/config.hpp"
#include "models/family.hpp"
#include "models/vit_gpt2/config.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto [config, rest] = fuzz::split(input, "\n--generation--\n");
  std::string_view generation, preprocessor;
  if (rest.empty()) {
    std::tie(config, preprocessor) = fuzz::split(config, "\n--preprocessor--\n");
  } else {
    std::tie(generation, preprocessor) = fuzz::split(rest, "\n--preprocessor--\n");
  }
  fuzz::write_file("config.json", config);
  if (generation.empty()) fuzz::remove_file("generation_config.json");
  else fuzz::write_file("generation_config.json", generation);
  if (preprocessor.empty()) fuzz::remove_file("preprocessor_config.json");
  else fuzz::write_file("preprocessor_config.json", preprocessor);
  const auto& dir = fuzz::scratch_dir();
  try {
    const nlohmann::json j = read_model_config(dir);
    if (is_vit_gpt2_config(j)) load_vit_gpt2_config(dir);
    if (is_blip_config(j)) load_blip_config(dir);
  } catch (const Error&) {
  }
  // Both loaders also on configs the registry would refuse: their own checks must hold.
  try {
    load_vit_gpt2_config(dir);
  } catch (const Error&) {
  }
  try {
    load_blip_config(dir);
  } catch (const Error&) {
  }
  return 0;
}
