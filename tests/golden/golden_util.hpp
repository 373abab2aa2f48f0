// What the golden tests share: reading a golden file of tests/data, its tensors, the scaled
// closeness check, and generate() parameters as GenerationOptions.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>

namespace golden {

inline const std::filesystem::path kData = XCAPTION_TEST_DATA;

/// The parsed tests/data/`name` (REQUIREs that it opens).
inline nlohmann::json load(const std::string& name) {
  std::ifstream in(kData / name);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

/// The row-major values of a {"shape", "data"} tensor.
inline std::vector<float> values(const nlohmann::json& t) { return t.at("data").get<std::vector<float>>(); }

/// Max |a - b| relative to max(1, |b|); prints the first values and the worst index on failure.
inline void check_close(const std::string& what, const float* got, const std::vector<float>& want, double tol) {
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(double(got[i]) - want[i]) / std::max(1.0, std::abs(double(want[i])));
    if (!(d <= worst)) worst = d, at = i;
  }
  INFO(fmt::format("{}: {} values, max scaled diff {:.3g} at [{}]: got {} want {}; first got [{}, {}, {}] want [{}, {}, {}]",
                   what, want.size(), worst, at, got[at], want[at], got[0], got[1 % want.size()],
                   got[2 % want.size()], want[0], want[1 % want.size()], want[2 % want.size()]));
  CHECK(worst <= tol);
}

/// generate() keyword arguments of a golden case; `file` names the golden file in the failure
/// for a parameter the tests do not know.
inline xcaption::GenerationOptions options_from(const nlohmann::json& params, const std::string& file) {
  xcaption::GenerationOptions o;
  for (const auto& [k, v] : params.items()) {
    if (k == "num_beams") o.num_beams = v.get<std::int64_t>();
    else if (k == "max_new_tokens") o.max_new_tokens = v.get<std::int64_t>();
    else if (k == "max_length") o.max_length = v.get<std::int64_t>();
    else if (k == "min_new_tokens") o.min_new_tokens = v.get<std::int64_t>();
    else if (k == "min_length") o.min_length = v.get<std::int64_t>();
    else if (k == "length_penalty") o.length_penalty = v.get<double>();
    else if (k == "repetition_penalty") o.repetition_penalty = v.get<double>();
    else if (k == "no_repeat_ngram_size") o.no_repeat_ngram_size = v.get<std::int64_t>();
    else if (k == "early_stopping") o.early_stopping = v.is_boolean() ? (v.get<bool>() ? "true" : "false") : v.get<std::string>();
    else FAIL("unhandled generate() parameter in " << file << ": " << k);
  }
  return o;
}

}  // namespace golden
