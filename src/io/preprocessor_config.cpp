#include "src/io/preprocessor_config.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;

namespace {
std::vector<float> parse_mean_std(const Node& n, std::string_view key, std::vector<float> def) {
  const json* v = n.find(key);
  if (!v) return def;
  if (v->is_number()) return std::vector<float>(3, static_cast<float>(v->get<double>()));
  if (!v->is_array() || v->size() != 3) type_error(n, key, "a number or a list of 3 numbers", *v);
  std::vector<float> out;
  for (const auto& x : *v) {
    if (!x.is_number()) type_error(n, key, "a number or a list of 3 numbers", *v);
    out.push_back(static_cast<float>(x.get<double>()));
  }
  return out;
}

}  // namespace

PreprocessorConfig parse_preprocessor(const Node& n, const ProcessorKinds& kinds,
                                      PreprocessorConfig p) {
  auto check = [&](const char* key, const char* what, const std::vector<std::string>& accepted) {
    const json* t = n.find(key);
    if (!t || t->is_null()) return;
    const std::string type = to_string(n, key, *t);
    if (std::find(accepted.begin(), accepted.end(), type) != accepted.end()) return;
    auto list = [](const std::vector<std::string>& names) {
      std::string out;
      for (std::size_t i = 0; i < names.size(); ++i) out += (i ? (i + 1 == names.size() ? " or " : ", ") : "") + names[i];
      return out;
    };
    std::string accepts = "image_processor_type " + list(kinds.image_processor_types);
    if (!kinds.feature_extractor_types.empty())
      accepts += ", or feature_extractor_type " + list(kinds.feature_extractor_types);
    throw InputError(fmt::format("{}: {} '{}' is not supported; xcaption implements {} and accepts {}",
                                 n.where(key), what, type, kinds.implemented, accepts));
  };
  check("image_processor_type", "image processor", kinds.image_processor_types);
  check("feature_extractor_type", "feature extractor", kinds.feature_extractor_types);

  p.do_resize = get_bool(n, "do_resize", p.do_resize);
  if (const json* s = n.find("size"); s && !s->is_null()) {
    if (s->is_number_integer()) {  // old form: a square edge
      p.height = p.width = to_int(n, "size", *s);
    } else if (s->is_array() && s->size() == 2) {  // (height, width)
      p.height = to_int(n, "size", (*s)[0]);
      p.width = to_int(n, "size", (*s)[1]);
    } else if (s->is_object()) {
      const Node sn{s, n.file, n.prefix + "size."};
      if (sn.find("height") && sn.find("width")) {
        p.height = get_int(sn, "height", 0);
        p.width = get_int(sn, "width", 0);
      } else {
        // ViTImageProcessor.resize requires both keys; shortest_edge (aspect-preserving) belongs
        // to other processors.
        throw InputError(fmt::format(
            "{}: {} is not supported: ViTImageProcessor resizes to an exact {{\"height\", "
            "\"width\"}} (or an integer)",
            n.where("size"), s->dump()));
      }
    } else {
      type_error(n, "size", "an integer, [height, width] or {\"height\", \"width\"}", *s);
    }
    if (p.height <= 0 || p.width <= 0)
      throw ShapeError(fmt::format("{}: expected a positive size, got {}x{}", n.where("size"),
                                   p.height, p.width));
  }
  p.resample = static_cast<int>(get_int(n, "resample", p.resample));
  if (p.resample < 0 || p.resample > 5)
    throw InputError(fmt::format("{}: PIL resample filter {} is unknown (0..5)",
                                 n.where("resample"), p.resample));
  p.do_rescale = get_bool(n, "do_rescale", p.do_rescale);
  p.rescale_factor = get_double(n, "rescale_factor", p.rescale_factor);
  p.do_normalize = get_bool(n, "do_normalize", p.do_normalize);
  p.image_mean = parse_mean_std(n, "image_mean", p.image_mean);
  p.image_std = parse_mean_std(n, "image_std", p.image_std);
  for (float s : p.image_std)
    if (p.do_normalize && s == 0.0f)
      throw InputError(fmt::format("{}: a standard deviation of 0", n.where("image_std")));
  return p;
}

PreprocessorConfig load_preprocessor_config(const std::filesystem::path& dir, const ProcessorKinds& kinds,
                                            PreprocessorConfig defaults, std::int64_t height, std::int64_t width,
                                            bool* from_file) {
  namespace fs = std::filesystem;
  const fs::path path = dir / "preprocessor_config.json";
  std::error_code ec;
  const bool exists = fs::is_regular_file(path, ec);
  if (from_file) *from_file = exists;
  if (!exists) {
    defaults.height = height;
    defaults.width = width;
    return defaults;
  }
  const json file = read_json_object(path);
  const Node n{&file, path.string(), ""};
  PreprocessorConfig p = parse_preprocessor(n, kinds, std::move(defaults));
  if (p.do_resize && (p.height != height || p.width != width))
    throw ShapeError(fmt::format("{}: resizes to {}x{}, but the encoder's image_size is {} ({})", n.where("size"),
                                 p.height, p.width,
                                 height == width ? fmt::format("{}", height) : fmt::format("{}x{}", height, width),
                                 (dir / "config.json").string()));
  return p;
}

}  // namespace xcaption
