#include "models/florence2/config.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;
namespace fs = std::filesystem;

bool is_florence2_config(const json& c) {
  auto it = c.find("model_type");
  return it != c.end() && it->is_string() && it->get<std::string>() == "florence2";
}

Florence2Config load_florence2_config(const fs::path& dir, const json& config, Florence2Layout layout) {
  Florence2Config c;
  c.dir = dir;
  c.layout = layout;
  const fs::path config_path = dir / "config.json";
  const Node top{&config, config_path.string(), ""};
  require_type(top, "model_type", "florence2");
  const Node text = sub_object(top, "text_config");
  // Both config classes default to Florence-2-large's BART (BartConfig: vocab 50265 otherwise
  // the same sizes); the checkpoints spell every size out.
  if (layout == Florence2Layout::native) c.text.vocab_size = 50265;
  parse_bart(text, c.text);
  if (layout == Florence2Layout::native) {
    if (auto id = get_opt_int(top, "image_token_id")) c.image_token_id = *id;
  }

  // Class defaults every to_dict() holds (Florence2LanguageConfig and BartConfig agree).
  json defaults = {{"bos_token_id", c.text.bos_token_id},           {"eos_token_id", c.text.eos_token_id},
                   {"pad_token_id", c.text.pad_token_id},           {"decoder_start_token_id", c.text.decoder_start_token_id},
                   {"forced_eos_token_id", c.text.eos_token_id}};
  const GenerationSource from_text = GenerationSource::from_model_config(text, text, defaults);
  std::error_code ec;
  c.has_generation_config_file = fs::is_regular_file(dir / "generation_config.json", ec);
  if (layout == Florence2Layout::remote) {
    // ref: the hub's Florence2ForConditionalGeneration.generate -> self.language_model.generate:
    // the language model's generation_config was made from text_config at construction.
    c.generation = parse_generation(from_text, c.text.vocab_size);
  } else {
    c.generation = load_generation_config(dir, GenerationSource::from_model_config(top, text, defaults), c.text.vocab_size);
  }
  if (!c.generation.decoder_start_token_id) c.generation.decoder_start_token_id = c.text.decoder_start_token_id;

  // ref: CLIPImageProcessor as Florence-2's preprocessor_config.json sets it: 768x768, bicubic,
  // 1/255, ImageNet mean/std; do_center_crop false.
  PreprocessorConfig pre;
  pre.height = pre.width = 768;
  pre.resample = 3;
  pre.image_mean = {0.485f, 0.456f, 0.406f};
  pre.image_std = {0.229f, 0.224f, 0.225f};
  const fs::path pre_path = dir / "preprocessor_config.json";
  std::int64_t size = 768;
  if (fs::is_regular_file(pre_path, ec)) {
    const json p = read_json_object(pre_path);
    const Node pn{&p, pre_path.string(), ""};
    if (get_bool(pn, "do_center_crop", false))
      throw InputError(fmt::format("{}: do_center_crop is true; xcaption implements Florence-2's plain resize only",
                                   pn.where("do_center_crop")));
    if (const json* s = pn.find("size"); s && s->is_object()) {
      const Node sn{s, pre_path.string(), "size."};
      size = get_int(sn, "height", size);
      if (get_int(sn, "width", size) != size)
        throw ShapeError(fmt::format("{}: a {}x{} input; Florence-2's tower takes a square image", pn.where("size"),
                                     get_int(sn, "width", size), size));
    }
  }
  const ProcessorKinds kinds{{"CLIPImageProcessor", "CLIPImageProcessorFast", "Florence2ImageProcessor",
                              "Florence2ImageProcessorFast"},
                             {"CLIPFeatureExtractor"},
                             "Florence-2's CLIPImageProcessor (plain resize to size, rescale, normalize, no crop)"};
  c.preprocessor = load_preprocessor_config(dir, kinds, pre, size, size, &c.has_preprocessor_config_file);
  c.image_size = size;

  // ref: transformers Florence2Processor(post_processor_config=...): the phrase-grounding ban list.
  const fs::path proc_path = dir / "processor_config.json";
  if (layout == Florence2Layout::native && fs::is_regular_file(proc_path, ec)) {
    const json p = read_json_object(proc_path);
    const json* list = nullptr;
    if (auto a = p.find("post_processor_config"); a != p.end() && a->is_object())
      if (auto b = a->find("phrase_grounding"); b != a->end() && b->is_object())
        if (auto t = b->find("banned_grounding_tokens"); t != b->end()) list = &*t;
    if (list) {
      if (!list->is_array())
        throw FormatError(fmt::format("{}: post_processor_config.phrase_grounding.banned_grounding_tokens: expected a list",
                                      proc_path.string()));
      for (const auto& t : *list) {
        if (!t.is_string())
          throw FormatError(fmt::format("{}: banned_grounding_tokens: expected strings, got {}", proc_path.string(), t.dump()));
        c.banned_grounding_tokens.push_back(t.get<std::string>());
      }
    }
  }
  return c;
}

}  // namespace xcaption
