// Florence-2 (ref: the hub's modeling_florence2.py Florence2ForConditionalGeneration for
// microsoft/Florence-2-*; transformers models/florence2/modeling_florence2.py for
// florence-community/Florence-2-*): the DaViT tower and projector (encoders/davit) give 577
// tokens, a BART encoder (decoder/text_encoder, decoder/bart) runs over [those tokens; the task
// prompt's ids], and a BART decoder cross-attends to its last states. The decoder input is the
// decoder start token alone (2); the task ("<CAPTION>", "<OD>", ...) becomes the encoder-side
// prompt "<s>What does the image describe?</s>" (models/florence2/tasks). generate() settings:
// the remote code's inner BART generate() reads text_config (num_beams 3, no_repeat_ngram_size
// 3, forced BOS 0 and EOS 2, early stopping), never generation_config.json; the native model
// reads generation_config.json first. The caption keeps what skip_special_tokens drops out;
// the task result parses the text decoded with special tokens kept, as the model card does.
#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "decoder/bart.hpp"
#include "decoder/text_encoder.hpp"
#include "encoders/davit.hpp"
#include "models/family.hpp"
#include "models/florence2/config.hpp"
#include "models/florence2/tasks.hpp"

namespace xcaption {

namespace {

struct LayoutNames {
  Florence2Layout layout;
  BartNames bart;
};

// The layout the checkpoint's tensor names are in, and the BART names under it. The shared
// embedding matrix is saved under whichever of its tied names transformers kept.
LayoutNames layout_names(const WeightStore& w) {
  for (const Florence2Layout layout : {Florence2Layout::remote, Florence2Layout::native}) {
    const bool remote = layout == Florence2Layout::remote;
    const std::string lm = remote ? "language_model.model." : "model.language_model.";
    if (!w.has(lm + "encoder.layernorm_embedding.weight")) continue;
    LayoutNames n{layout, {}};
    n.bart.encoder = lm + "encoder.";
    n.bart.decoder = lm + "decoder.";
    n.bart.head = remote ? "language_model.lm_head.weight" : "lm_head.weight";
    if (remote) n.bart.head_bias = "language_model.final_logits_bias";
    n.bart.shared = lm + "shared.weight";
    for (const std::string& name : {lm + "shared.weight", lm + "encoder.embed_tokens.weight",
                                    lm + "decoder.embed_tokens.weight", n.bart.head})
      if (w.has(name)) {
        n.bart.shared = name;
        break;
      }
    return n;
  }
  throw FormatError(fmt::format("{}: neither Florence-2 layout: no 'language_model.model.encoder.layernorm_embedding.weight' "
                                "(the hub's remote code) nor 'model.language_model.encoder.layernorm_embedding.weight' "
                                "(transformers' florence2)",
                                w.description()));
}

// The config's sizes against the checkpoint, before any table is built from them (as the other
// families do): layer counts against the tensor count, the largest matrices against the bytes.
void check_backed(const Florence2Config& c, const WeightStore& w) {
  const std::string file = (c.dir / "config.json").string();
  auto key = [&](const char* k) { return fmt::format("{}: key '{}'", file, k); };
  const BartConfig& t = c.text;
  w.require_layers(key("text_config.encoder_layers"), t.encoder_layers);
  w.require_layers(key("text_config.decoder_layers"), t.decoder_layers);
  w.require_elements(key("text_config.vocab_size"), "the token embeddings", 1.0 * t.vocab_size * t.d_model);
  w.require_elements(key("text_config.max_position_embeddings"), "the position embeddings",
                     1.0 * (t.max_position_embeddings + 2) * t.d_model);
  w.require_elements(key("text_config.encoder_ffn_dim"), "an MLP weight", 1.0 * t.encoder_ffn_dim * t.d_model);
  w.require_elements(key("text_config.decoder_ffn_dim"), "an MLP weight", 1.0 * t.decoder_ffn_dim * t.d_model);
}

std::unique_ptr<CaptionModel> load(const FamilyLoad& f) {
  const LayoutNames names = layout_names(f.weights);
  const bool native = names.layout == Florence2Layout::native;
  const Florence2Config c = load_florence2_config(f.dir, f.config, names.layout);
  check_backed(c, f.weights);
  Florence2VisionSpec vision = florence2_vision_spec(f.config, names.layout, (f.dir / "config.json").string(), &f.weights);
  vision.image_size = c.image_size;
  const TextEncoderSpec encoder = bart_encoder_spec(c.text, names.bart);
  const TextDecoderSpec decoder = bart_decoder_spec(c.text, names.bart);

  CaptionModelParts parts;
  xcaption::describe(vision, parts.tensors);
  TextDecoder::describe(decoder, parts.tensors);
  TextEncoder::describe(encoder, /*shares_decoder_embeddings=*/true, parts.tensors);
  f.weights.validate(parts.tensors);

  parts.family = "florence2";
  parts.architecture = "Florence2ForConditionalGeneration";
  parts.prompt_rule = "the decoder starts from decoder_start_token_id alone; --task (and --text) become the "
                      "encoder prompt <s>task prompt</s> after the image tokens (577 for Florence-2)";
  parts.preprocessor = c.preprocessor;
  parts.generation = c.generation;
  parts.default_length_cap = c.text.max_position_embeddings;
  auto tower = std::make_unique<Florence2VisionTower>(vision, f.weights, f.backend);
  const std::int64_t tokens = tower->num_tokens();
  parts.encoder = std::move(tower);
  parts.decoder = std::make_unique<TextDecoder>(decoder, f.weights, f.backend, f.rows_hint, tokens + 16);
  parts.text_encoder = std::make_unique<TextEncoder>(encoder, f.weights, f.backend, parts.decoder.get(), tokens + 16);
  // ref: Florence2Processor.__init__ adds its tokens to the tokenizer it loads.
  parts.tokenizer = Tokenizer::load(f.dir, florence2::added_tokens());

  parts.tasks.default_task = "<CAPTION>";
  parts.tasks.names = florence2::task_names();
  parts.tasks.encoder_prompt = [native](const Tokenizer& tokenizer, const std::string& task,
                                        const std::optional<std::string>& text) {
    const std::string prompt = florence2::construct_prompt(task, text, native);
    // ref: remote: tokenizer(prompt) adds <s> ... </s>; native: the processor writes them out
    // (after the <image> placeholders, which the image features replace) and adds none.
    return native ? tokenizer.encode("<s>" + prompt + "</s>", false) : tokenizer.encode(prompt, true);
  };
  florence2::PostProcessFlavor flavor;
  flavor.native = native;
  if (native) flavor.banned_grounding_tokens = c.banned_grounding_tokens;
  parts.tasks.post_process = [flavor](const std::string& task, const std::string& text, std::int64_t w,
                                      std::int64_t h) { return florence2::post_process(task, text, w, h, flavor); };
  parts.prompt = [](const Tokenizer&, const GenerationConfig& g, std::optional<std::string_view> prompt) {
    if (prompt)
      throw InputError("Florence-2 takes no --prompt: choose a --task (and its --text); the decoder starts from "
                       "its start token");
    return std::vector<std::int64_t>{*g.decoder_start_token_id};
  };
  if (!native && c.has_generation_config_file)
    parts.warnings.push_back("generation_config.json is not read: the remote code's generate() takes its settings "
                             "from text_config in config.json");
  return std::make_unique<CaptionModel>(std::move(parts), f.backend);
}

}  // namespace

const ModelFamily& florence2_family() {
  static const ModelFamily family{
      "florence2",
      "config.json model_type \"florence2\" (Florence2ForConditionalGeneration), e.g. microsoft/Florence-2-base "
      "or florence-community/Florence-2-base",
      is_florence2_config, load};
  return family;
}

}  // namespace xcaption
