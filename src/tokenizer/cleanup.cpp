#include "src/tokenizer/cleanup.hpp"

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/io/json_config.hpp"

namespace xcaption {

namespace {
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  while (true) {
    const std::size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}
}  // namespace

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) replace_all(text, from, to);
  return text;
}

bool clean_up_tokenization_spaces(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return false;
  in.close();
  nlohmann::json j;
  try {
    j = config::parse_json<nlohmann::json>(config::read_text_file(path, config::kMaxConfigJsonBytes));
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  } catch (const config::JsonTooDeep& e) {
    throw FormatError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
  if (!j.is_object() || !j.contains("clean_up_tokenization_spaces")) return false;
  const auto& v = j["clean_up_tokenization_spaces"];
  if (!v.is_boolean())
    throw FormatError(fmt::format("{}: key 'clean_up_tokenization_spaces': expected a boolean, got {}",
                                  path.string(), v.type_name()));
  return v.get<bool>();
}

}  // namespace xcaption
