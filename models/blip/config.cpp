#include "models/blip/config.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;
namespace fs = std::filesystem;

namespace {

Node optional_sub_object(const Node& n, const char* key, const json& empty) {
  const json* v = n.find(key);
  if (!v || v->is_null()) return Node{&empty, n.file, n.prefix + key + "."};  // class defaults
  if (!v->is_object()) type_error(n, key, "an object", *v);
  return Node{v, n.file, n.prefix + key + "."};
}

void parse_text(const Node& n, BlipTextConfig& t) {
  BertDecoderShape& s = t.shape;
  s.vocab_size = get_int(n, "vocab_size", s.vocab_size);
  s.hidden_size = get_int(n, "hidden_size", s.hidden_size);
  s.intermediate_size = get_int(n, "intermediate_size", s.intermediate_size);
  s.num_hidden_layers = get_int(n, "num_hidden_layers", s.num_hidden_layers);
  s.num_attention_heads = get_int(n, "num_attention_heads", s.num_attention_heads);
  s.max_position_embeddings = get_int(n, "max_position_embeddings", s.max_position_embeddings);
  t.hidden_act = get_string(n, "hidden_act", t.hidden_act);
  s.activation = parse_activation(n, "hidden_act", t.hidden_act);
  s.layer_norm_eps = get_double(n, "layer_norm_eps", s.layer_norm_eps);
  t.bos_token_id = get_int(n, "bos_token_id", t.bos_token_id);
  t.eos_token_id = get_int(n, "eos_token_id", t.eos_token_id);
  t.pad_token_id = get_int(n, "pad_token_id", t.pad_token_id);
  t.sep_token_id = get_int(n, "sep_token_id", t.sep_token_id);
  t.is_decoder = get_bool(n, "is_decoder", t.is_decoder);
  for (const auto& [key, value] : {std::pair{"vocab_size", s.vocab_size}, {"hidden_size", s.hidden_size},
                                   {"intermediate_size", s.intermediate_size}, {"num_hidden_layers", s.num_hidden_layers},
                                   {"num_attention_heads", s.num_attention_heads},
                                   {"max_position_embeddings", s.max_position_embeddings}})
    require_positive(n, key, value);
  require_epsilon(n, "layer_norm_eps", s.layer_norm_eps);
  if (s.hidden_size % s.num_attention_heads != 0)
    throw ShapeError(fmt::format("{}: hidden_size {} is not a multiple of num_attention_heads {}",
                                 n.where("hidden_size"), s.hidden_size, s.num_attention_heads));
  if (!t.is_decoder)
    throw InputError(fmt::format("{}: is false; a BLIP text model without cross-attention cannot caption",
                                 n.where("is_decoder")));
  for (const auto& [key, id] : {std::pair{"bos_token_id", t.bos_token_id}, {"sep_token_id", t.sep_token_id},
                                {"pad_token_id", t.pad_token_id}})
    if (id < 0 || id >= s.vocab_size)
      throw InputError(fmt::format("{}: token id {} is outside the vocabulary [0, {})", n.where(key), id, s.vocab_size));
}

}  // namespace

bool is_blip_config(const json& c) {
  auto it = c.find("model_type");
  if (it == c.end() || !it->is_string() || it->get<std::string>() != "blip") return false;
  auto arch = c.find("architectures");
  if (arch == c.end() || !arch->is_array() || arch->empty()) return true;
  for (const auto& a : *arch)
    if (a.is_string() && a.get<std::string>() == "BlipForConditionalGeneration") return true;
  return false;
}

BlipConfig load_blip_config(const fs::path& dir) {
  BlipConfig c;
  c.dir = dir;
  const fs::path config_path = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config_path, ec))
    throw FormatError(fmt::format("{}: not found (a model folder needs config.json)", config_path.string()));
  const json config = read_json_object(config_path);
  const Node top{&config, config_path.string(), ""};
  require_type(top, "model_type", "blip");
  static const json empty = json::object();
  const Node vision = optional_sub_object(top, "vision_config", empty);
  const Node text = optional_sub_object(top, "text_config", empty);

  // ref: BlipVisionConfig defaults.
  c.vision.image_size = 384;
  c.vision.layer_norm_eps = 1e-5;
  c.vision.num_channels = 3;
  parse_vit(vision, c.vision);
  parse_text(text, c.text);
  // ref: BlipConfig.__init__: the text decoder's cross-attention reads the vision width.
  c.text.shape.encoder_hidden_size = c.vision.hidden_size;

  // ref: BlipForConditionalGeneration.generate -> text_decoder.generate(eos_token_id=sep_token_id,
  // pad_token_id=pad_token_id): the decoder's GenerationConfig comes from text_config.
  json defaults = {{"bos_token_id", c.text.bos_token_id}, {"eos_token_id", c.text.eos_token_id},
                   {"pad_token_id", c.text.pad_token_id}};
  c.generation = parse_generation(GenerationSource::from_model_config(text, text, defaults), c.text.shape.vocab_size);
  c.generation.eos_token_id = {c.text.sep_token_id};
  c.generation.pad_token_id = c.text.pad_token_id;
  c.generation.bos_token_id = c.text.bos_token_id;
  c.has_generation_config_file = fs::is_regular_file(dir / "generation_config.json", ec);

  // ref: BlipImageProcessor defaults: 384x384, bicubic, 1/255, OpenAI CLIP mean/std.
  PreprocessorConfig pre;
  pre.height = pre.width = 384;
  pre.resample = 3;
  pre.image_mean = {0.48145466f, 0.4578275f, 0.40821073f};
  pre.image_std = {0.26862954f, 0.26130258f, 0.27577711f};
  const ProcessorKinds kinds{{"BlipImageProcessor", "BlipImageProcessorFast"},
                             {},
                             "BlipImageProcessor (plain resize to size, rescale, normalize)"};
  c.preprocessor = load_preprocessor_config(dir, kinds, pre, c.vision.image_size, c.vision.image_size,
                                            &c.has_preprocessor_config_file);
  return c;
}

}  // namespace xcaption
