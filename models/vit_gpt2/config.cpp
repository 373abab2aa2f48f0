#include "models/vit_gpt2/config.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

using namespace config;
namespace fs = std::filesystem;

namespace {
constexpr std::int64_t kGpt2Special = 50256;  // ref: GPT2Config bos_token_id / eos_token_id defaults
}  // namespace

bool is_vit_gpt2_config(const json& c) {
  auto type = [](const json& o) {
    auto it = o.find("model_type");
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (type(c) != "vision-encoder-decoder") return false;
  auto enc = c.find("encoder"), dec = c.find("decoder");
  return enc != c.end() && dec != c.end() && enc->is_object() && dec->is_object() && type(*enc) == "vit" &&
         type(*dec) == "gpt2";
}

VitGpt2Config load_vit_gpt2_config(const fs::path& dir) {
  VitGpt2Config mc;
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

  mc.generation = load_generation_config(
      dir, GenerationSource::from_model_config(top, dec, {{"bos_token_id", kGpt2Special}, {"eos_token_id", kGpt2Special}}),
      mc.decoder.vocab_size, &mc.has_generation_config_file);
  const ProcessorKinds kinds{{"ViTImageProcessor", "ViTImageProcessorFast"},
                             {"ViTFeatureExtractor"},
                             "ViTImageProcessor (plain resize to size, rescale, normalize)"};
  mc.preprocessor = load_preprocessor_config(dir, kinds, PreprocessorConfig{}, mc.encoder.image_size,
                                             mc.encoder.image_size, &mc.has_preprocessor_config_file);
  return mc;
}

}  // namespace xcaption
