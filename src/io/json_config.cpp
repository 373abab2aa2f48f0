#include "src/io/json_config.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::config {

namespace fs = std::filesystem;

std::string describe(const json& v) {
  if (v.is_number_float()) return fmt::format("number {}", v.dump());
  if (v.is_number()) return fmt::format("integer {}", v.dump());
  if (v.is_string()) return fmt::format("string {}", v.dump());
  if (v.is_boolean()) return fmt::format("boolean {}", v.dump());
  return v.type_name();  // null, array, object
}

std::string read_text_file(const fs::path& path, std::int64_t max_bytes) {
  const std::string file = path.string();
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) throw FormatError(fmt::format("{}: cannot open: {}", file, std::strerror(errno)));
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    // Counted while reading: a FIFO or a file that grows has no size to check first.
    if (static_cast<std::int64_t>(text.size() + n) > max_bytes) {
      std::fclose(f);
      throw FormatError(fmt::format("{}: larger than the limit of {} MiB for this file", file, max_bytes >> 20));
    }
    text.append(buf, n);
  }
  std::fclose(f);
  return text;
}

json read_json_object(const fs::path& path) {
  const std::string file = path.string();
  const std::string text = read_text_file(path, kMaxConfigJsonBytes);
  json root;
  try {
    root = parse_json<json>(text);
  } catch (const json::exception& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  } catch (const JsonTooDeep& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  }
  if (!root.is_object())
    throw FormatError(fmt::format("{}: expected a JSON object, got {}", file, describe(root)));
  return root;
}

[[noreturn]] void type_error(const Node& n, std::string_view key, const char* expected,
                             const json& got) {
  throw FormatError(fmt::format("{}: expected {}, got {}", n.where(key), expected, describe(got)));
}

std::int64_t to_int(const Node& n, std::string_view key, const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<std::int64_t>();
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return static_cast<std::int64_t>(u);
  }
  type_error(n, key, "an integer", v);
}

double to_double(const Node& n, std::string_view key, const json& v) {
  if (!v.is_number()) type_error(n, key, "a number", v);
  return v.get<double>();
}

bool to_bool(const Node& n, std::string_view key, const json& v) {
  if (!v.is_boolean()) type_error(n, key, "a boolean", v);
  return v.get<bool>();
}

std::string to_string(const Node& n, std::string_view key, const json& v) {
  if (!v.is_string()) type_error(n, key, "a string", v);
  return v.get<std::string>();
}

// Getters for model fields: absent -> `def`; null is a type error (transformers would store None
// and fail later).
std::int64_t get_int(const Node& n, std::string_view key, std::int64_t def) {
  const json* v = n.find(key);
  return v ? to_int(n, key, *v) : def;
}
double get_double(const Node& n, std::string_view key, double def) {
  const json* v = n.find(key);
  return v ? to_double(n, key, *v) : def;
}
bool get_bool(const Node& n, std::string_view key, bool def) {
  const json* v = n.find(key);
  return v ? to_bool(n, key, *v) : def;
}
std::string get_string(const Node& n, std::string_view key, std::string def) {
  const json* v = n.find(key);
  return v ? to_string(n, key, *v) : std::move(def);
}
// Absent or null -> nullopt.
std::optional<std::int64_t> get_opt_int(const Node& n, std::string_view key) {
  const json* v = n.find(key);
  if (!v || v->is_null()) return std::nullopt;
  return to_int(n, key, *v);
}

// GPT2Config.attribute_map: an alias such as "hidden_size" is written through to "n_embd" after
// the constructor assigned the canonical key, so the alias wins when both are present.
std::int64_t get_int_aliased(const Node& n, std::string_view key, std::string_view alias,
                             std::int64_t def) {
  if (n.find(alias)) return get_int(n, alias, def);
  return get_int(n, key, def);
}

// An int, or a list [a, a] (transformers accepts an iterable (height, width) for ViT's
// image_size / patch_size); xcaption handles square sizes only.
std::int64_t get_square(const Node& n, std::string_view key, std::int64_t def) {
  const json* v = n.find(key);
  if (!v) return def;
  if (v->is_array()) {
    if (v->size() != 2) type_error(n, key, "an integer or a list [height, width]", *v);
    const std::int64_t h = to_int(n, key, (*v)[0]);
    const std::int64_t w = to_int(n, key, (*v)[1]);
    if (h != w)
      throw InputError(
          fmt::format("{}: non-square size [{}, {}] is not supported", n.where(key), h, w));
    return h;
  }
  if (!v->is_number_integer()) type_error(n, key, "an integer or a list [height, width]", *v);
  return to_int(n, key, *v);
}

void require_positive(const Node& n, std::string_view key, std::int64_t value) {
  if (value <= 0)
    throw ShapeError(fmt::format("{}: expected a positive size, got {}", n.where(key), value));
  if (value > kMaxConfigSize)
    throw ShapeError(fmt::format("{}: {} is larger than any model dimension xcaption accepts (at most {})",
                                 n.where(key), value, kMaxConfigSize));
}

// ref: transformers activations.py ACT2FN.
Activation parse_activation(const Node& n, std::string_view key, const std::string& name) {
  if (name == "gelu" || name == "gelu_python") return Activation::GeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" ||
      name == "gelu_accurate")
    return Activation::GeluTanh;
  throw InputError(fmt::format(
      "{}: activation '{}' is unsupported (supported: gelu, gelu_python = exact erf GELU; "
      "gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate = tanh approximation)",
      n.where(key), name));
}

void require_type(const Node& n, std::string_view key, const char* expected) {
  const json* v = n.find(key);
  if (!v) throw InputError(fmt::format("{}: missing; expected \"{}\"", n.where(key), expected));
  const std::string got = to_string(n, key, *v);
  if (got != expected)
    throw InputError(fmt::format("{}: model type \"{}\" is unsupported; expected \"{}\"",
                                 n.where(key), got, expected));
}

Node sub_object(const Node& n, const char* key) {
  const json* v = n.find(key);
  if (!v) throw FormatError(fmt::format("{}: missing (the {} sub-config)", n.where(key), key));
  if (!v->is_object()) type_error(n, key, "an object", *v);
  return Node{v, n.file, n.prefix + key + "."};
}

void require_epsilon(const Node& n, std::string_view key, double value) {
  if (!(value >= 0.0) || !std::isfinite(value))
    throw InputError(fmt::format("{}: expected a finite value >= 0, got {}", n.where(key), value));
}

}  // namespace xcaption::config
