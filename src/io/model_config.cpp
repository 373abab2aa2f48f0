#include "src/io/model_config.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <xcaption/errors.hpp>

namespace xcaption {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string describe(const json& v) {
  if (v.is_number_float()) return fmt::format("number {}", v.dump());
  if (v.is_number()) return fmt::format("integer {}", v.dump());
  if (v.is_string()) return fmt::format("string {}", v.dump());
  if (v.is_boolean()) return fmt::format("boolean {}", v.dump());
  return v.type_name();  // null, array, object
}

json read_json_object(const fs::path& path) {
  const std::string file = path.string();
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) throw FormatError(fmt::format("{}: cannot open: {}", file, std::strerror(errno)));
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  }
  if (!root.is_object())
    throw FormatError(fmt::format("{}: expected a JSON object, got {}", file, describe(root)));
  return root;
}

// A JSON object and where it lives, so that every message names the file and the full key path
// ("<dir>/config.json: key 'decoder.n_embd': ...").
struct Node {
  const json* obj = nullptr;
  std::string file;
  std::string prefix;  // "" or "encoder." / "decoder."

  const json* find(std::string_view key) const {
    if (!obj) return nullptr;
    auto it = obj->find(key);
    return it == obj->end() ? nullptr : &*it;
  }
  std::string where(std::string_view key) const {
    return fmt::format("{}: key '{}{}'", file, prefix, key);
  }
};

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

void parse_vit(const Node& n, VitConfig& c) {
  c.hidden_size = get_int(n, "hidden_size", c.hidden_size);
  c.num_hidden_layers = get_int(n, "num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = get_int(n, "num_attention_heads", c.num_attention_heads);
  c.intermediate_size = get_int(n, "intermediate_size", c.intermediate_size);
  c.hidden_act = get_string(n, "hidden_act", c.hidden_act);
  c.activation = parse_activation(n, "hidden_act", c.hidden_act);
  c.layer_norm_eps = get_double(n, "layer_norm_eps", c.layer_norm_eps);
  c.image_size = get_square(n, "image_size", c.image_size);
  c.patch_size = get_square(n, "patch_size", c.patch_size);
  c.num_channels = get_int(n, "num_channels", c.num_channels);
  c.qkv_bias = get_bool(n, "qkv_bias", c.qkv_bias);

  require_positive(n, "hidden_size", c.hidden_size);
  require_positive(n, "num_hidden_layers", c.num_hidden_layers);
  require_positive(n, "num_attention_heads", c.num_attention_heads);
  require_positive(n, "intermediate_size", c.intermediate_size);
  require_positive(n, "image_size", c.image_size);
  require_positive(n, "patch_size", c.patch_size);
  if (c.num_channels != 3)
    throw InputError(fmt::format("{}: {} channels is unsupported (xcaption feeds RGB images: 3)",
                                 n.where("num_channels"), c.num_channels));
  if (!(c.layer_norm_eps >= 0.0) || !std::isfinite(c.layer_norm_eps))
    throw InputError(fmt::format("{}: expected a finite value >= 0, got {}",
                                 n.where("layer_norm_eps"), c.layer_norm_eps));
  if (c.hidden_size % c.num_attention_heads != 0)
    throw ShapeError(fmt::format("{}: hidden_size {} is not a multiple of num_attention_heads {}",
                                 n.where("hidden_size"), c.hidden_size, c.num_attention_heads));
  if (c.image_size % c.patch_size != 0)
    throw ShapeError(fmt::format("{}: image_size {} is not a multiple of patch_size {}",
                                 n.where("image_size"), c.image_size, c.patch_size));
}

void parse_gpt2(const Node& n, Gpt2Config& c) {
  c.vocab_size = get_int(n, "vocab_size", c.vocab_size);
  c.n_positions = get_int_aliased(n, "n_positions", "max_position_embeddings", c.n_positions);
  c.n_embd = get_int_aliased(n, "n_embd", "hidden_size", c.n_embd);
  c.n_layer = get_int_aliased(n, "n_layer", "num_hidden_layers", c.n_layer);
  c.n_head = get_int_aliased(n, "n_head", "num_attention_heads", c.n_head);
  const auto n_inner = get_opt_int(n, "n_inner");
  c.n_inner = n_inner ? *n_inner : 4 * c.n_embd;  // ref: GPT2MLP inner_dim
  c.activation_function = get_string(n, "activation_function", c.activation_function);
  c.activation = parse_activation(n, "activation_function", c.activation_function);
  c.layer_norm_epsilon = get_double(n, "layer_norm_epsilon", c.layer_norm_epsilon);
  c.scale_attn_weights = get_bool(n, "scale_attn_weights", c.scale_attn_weights);
  c.scale_attn_by_inverse_layer_idx =
      get_bool(n, "scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  c.reorder_and_upcast_attn = get_bool(n, "reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  c.add_cross_attention = get_bool(n, "add_cross_attention", c.add_cross_attention);
  c.tie_word_embeddings = get_bool(n, "tie_word_embeddings", c.tie_word_embeddings);
  c.cross_attention_hidden_size = get_opt_int(n, "cross_attention_hidden_size");

  require_positive(n, "vocab_size", c.vocab_size);
  require_positive(n, "n_positions", c.n_positions);
  require_positive(n, "n_embd", c.n_embd);
  require_positive(n, "n_layer", c.n_layer);
  require_positive(n, "n_head", c.n_head);
  require_positive(n, "n_inner", c.n_inner);
  if (!(c.layer_norm_epsilon >= 0.0) || !std::isfinite(c.layer_norm_epsilon))
    throw InputError(fmt::format("{}: expected a finite value >= 0, got {}",
                                 n.where("layer_norm_epsilon"), c.layer_norm_epsilon));
  if (c.n_embd % c.n_head != 0)
    throw ShapeError(fmt::format("{}: n_embd {} is not a multiple of n_head {}", n.where("n_embd"),
                                 c.n_embd, c.n_head));
}

// ---------------------------------------------------------------------------------------------
// Generation settings

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
      {"forced_bos_token_id", nullptr},
      {"forced_eos_token_id", nullptr},
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

// Where generation values come from: generation_config.json alone, or config.json resolved the
// way GenerationConfig.from_model_config does it.
class GenerationSource {
 public:
  static GenerationSource from_file(Node file) {
    GenerationSource s;
    s.primary_ = std::move(file);
    return s;
  }
  static GenerationSource from_model_config(Node top, Node decoder) {
    GenerationSource s;
    s.primary_ = std::move(top);
    s.decoder_ = std::move(decoder);
    s.from_model_config_ = true;
    return s;
  }

  // The effective value of `key` (nullptr: the default applies) and the node it came from.
  const json* get(std::string_view key, const json& def, const Node** origin) const {
    *origin = &primary_;
    const json* v = primary_.find(key);
    if (v && v->is_null()) v = nullptr;  // None means "not set"
    if (!from_model_config_) return v;

    // ref: GenerationConfig.from_model_config. None values of the top level are dropped, then
    // every attribute still equal to its GenerationConfig default (a value comparison: an
    // explicit top-level default counts as unset) is taken from the decoder config's to_dict(),
    // which holds GPT2Config's defaults too (bos_token_id = eos_token_id = 50256).
    const bool unset = !v || *v == def;
    if (!unset) return v;
    if (const json* d = decoder_.find(key)) {
      *origin = &decoder_;
      return d->is_null() ? nullptr : d;
    }
    if (key == "bos_token_id" || key == "eos_token_id") {
      *origin = &decoder_;
      return &gpt2_special_token();
    }
    return v;
  }

 private:
  static const json& gpt2_special_token() {
    static const json id = 50256;  // ref: GPT2Config bos_token_id / eos_token_id defaults
    return id;
  }
  Node primary_;
  Node decoder_;
  bool from_model_config_ = false;
};

std::string origin_label(const Node& origin, std::string_view key, const json& value) {
  return fmt::format("{}{}={} ({})", origin.prefix, key, value.dump(),
                     fs::path(origin.file).filename().string());
}

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

// ---------------------------------------------------------------------------------------------
// Image processor

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

// ref: transformers ViTImageProcessor (and get_size_dict(size, default_to_square=True)).
PreprocessorConfig parse_preprocessor(const Node& n) {
  PreprocessorConfig p;
  if (const json* t = n.find("image_processor_type"); t && !t->is_null()) {
    const std::string type = to_string(n, "image_processor_type", *t);
    if (type != "ViTImageProcessor" && type != "ViTImageProcessorFast")
      throw InputError(fmt::format(
          "{}: image processor '{}' is not supported; xcaption implements ViTImageProcessor (plain "
          "resize to size, rescale, normalize) and accepts image_processor_type ViTImageProcessor "
          "or "
          "ViTImageProcessorFast, or feature_extractor_type ViTFeatureExtractor",
          n.where("image_processor_type"), type));
  }
  if (const json* t = n.find("feature_extractor_type"); t && !t->is_null()) {
    const std::string type = to_string(n, "feature_extractor_type", *t);
    if (type != "ViTFeatureExtractor")
      throw InputError(fmt::format(
          "{}: feature extractor '{}' is not supported; xcaption implements ViTImageProcessor and "
          "accepts feature_extractor_type ViTFeatureExtractor",
          n.where("feature_extractor_type"), type));
  }

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

}  // namespace

ModelConfig load_model_config(const fs::path& dir) {
  ModelConfig mc;
  mc.dir = dir;

  const fs::path config_path = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config_path, ec))
    throw FormatError(
        fmt::format("{}: not found (a model folder needs config.json)", config_path.string()));
  const json config = read_json_object(config_path);
  const Node top{&config, config_path.string(), ""};

  require_type(top, "model_type", "vision-encoder-decoder");
  const Node enc = sub_object(top, "encoder");
  const Node dec = sub_object(top, "decoder");
  require_type(enc, "model_type", "vit");
  require_type(dec, "model_type", "gpt2");
  mc.model_type = "vision-encoder-decoder";
  mc.encoder_model_type = "vit";
  mc.decoder_model_type = "gpt2";

  parse_vit(enc, mc.encoder);
  parse_gpt2(dec, mc.decoder);
  if (!mc.decoder.add_cross_attention)
    throw InputError(fmt::format(
        "{}: is false (or absent); a GPT-2 decoder without cross-attention cannot read the image",
        dec.where("add_cross_attention")));
  // ref: VisionEncoderDecoderModel.__init__
  if (mc.decoder.cross_attention_hidden_size &&
      *mc.decoder.cross_attention_hidden_size != mc.encoder.hidden_size)
    throw ShapeError(fmt::format("{}: {} does not match the encoder's hidden_size {}",
                                 dec.where("cross_attention_hidden_size"),
                                 *mc.decoder.cross_attention_hidden_size, mc.encoder.hidden_size));
  mc.enc_to_dec_proj =
      mc.encoder.hidden_size != mc.decoder.n_embd && !mc.decoder.cross_attention_hidden_size;

  const fs::path gen_path = dir / "generation_config.json";
  json gen_json;
  if (fs::is_regular_file(gen_path, ec)) {
    gen_json = read_json_object(gen_path);
    mc.has_generation_config_file = true;
    mc.generation = parse_generation(
        GenerationSource::from_file(Node{&gen_json, gen_path.string(), ""}), mc.decoder.vocab_size);
  } else {
    mc.generation =
        parse_generation(GenerationSource::from_model_config(top, dec), mc.decoder.vocab_size);
  }

  const fs::path pre_path = dir / "preprocessor_config.json";
  if (fs::is_regular_file(pre_path, ec)) {
    const json pre = read_json_object(pre_path);
    mc.has_preprocessor_config_file = true;
    const Node pn{&pre, pre_path.string(), ""};
    mc.preprocessor = parse_preprocessor(pn);
    // ViTEmbeddings refuses any other input size (no interpolate_pos_encoding in generate()).
    if (mc.preprocessor.do_resize && (mc.preprocessor.height != mc.encoder.image_size ||
                                      mc.preprocessor.width != mc.encoder.image_size))
      throw ShapeError(fmt::format("{}: resizes to {}x{}, but the encoder's image_size is {} ({})",
                                   pn.where("size"), mc.preprocessor.height, mc.preprocessor.width,
                                   mc.encoder.image_size, config_path.string()));
  } else {
    mc.preprocessor.height = mc.preprocessor.width = mc.encoder.image_size;
  }
  return mc;
}

}  // namespace xcaption
