// BLIP parity with the independent PyTorch reference (tools/make_blip_golden.py,
// tools/xcaption_ref/blip.py): preprocessing, vision states, cross K/V, logits, and greedy /
// beam results with and without a decoder prompt, for the tiny random checkpoints
// tests/data/tiny-blip and tiny-blip-b (tests/data/README.md describes golden_blip.json).
//
// The model-level cases feed the prompt as ids (golden "prompt_ids"), so they run whatever the
// tokenizer can do. The Captioner cases (prompt as text, caption text) need the folder's
// WordPiece tokenizer.json; until the C++ tokenizer reads it they print "XCAPTION-SKIPPED: ..."
// (CTest reports them as skipped, tests/CMakeLists.txt) instead of passing.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>

#include "encoders/image_processor.hpp"
#include "tests/golden/golden_util.hpp"
#include "models/blip/config.hpp"
#include "models/family.hpp"
#include "src/generate/settings.hpp"
#include "src/io/weights.hpp"
#include "src/tokenizer/tokenizer.hpp"

using namespace xcaption;
using nlohmann::json;

namespace {

using golden::check_close;
using golden::kData;
using golden::values;

const json& golden_file() {
  static const json g = golden::load("golden_blip.json");
  return g;
}

GenerationOptions options_from(const json& params) { return golden::options_from(params, "golden_blip.json"); }

std::string early_stopping_name(DecodeSettings::EarlyStopping e) {
  switch (e) {
    case DecodeSettings::EarlyStopping::True: return "true";
    case DecodeSettings::EarlyStopping::Never: return "never";
    default: return "false";
  }
}

std::string early_stopping_name(const json& v) {
  return v.is_boolean() ? (v.get<bool>() ? "true" : "false") : v.get<std::string>();
}

// The model-level tests do not use a tokenizer (prompts come as ids), but the family loader takes
// one: the folder's when the C++ tokenizer reads it, else any loadable stand-in.
Tokenizer model_tokenizer(const std::filesystem::path& dir) {
  try {
    return Tokenizer::load(dir);
  } catch (const FormatError&) {
    return Tokenizer::load(kData / "tiny-vit-gpt2");
  }
}

// Why the Captioner (text) cases cannot run yet, or nullopt when they can.
std::optional<std::string> tokenizer_unavailable(const std::filesystem::path& dir) {
  try {
    Tokenizer::load(dir);
    return std::nullopt;
  } catch (const FormatError& e) {
    return std::string(e.what());
  }
}

struct Loaded {
  std::unique_ptr<Backend> backend = make_onednn_backend();
  WeightStore weights;
  Tokenizer tokenizer;
  std::unique_ptr<CaptionModel> model;

  explicit Loaded(const std::filesystem::path& dir)
      : weights(WeightStore::open(dir)), tokenizer(model_tokenizer(dir)) {
    model = load_caption_model(dir, *backend, weights, tokenizer, 4);
  }
};

std::vector<float> pixels_for(const std::filesystem::path& image, const PreprocessorConfig& pre) {
  std::vector<float> px(static_cast<std::size_t>(3 * pre.height * pre.width));
  preprocess_image(load_image(image), pre, px.data());
  return px;
}

}  // namespace

TEST_CASE("golden blip: preprocessing, vision states, cross K/V and first-step logits match the reference",
          "[golden][blip]") {
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    const auto dir = kData / model_name;
    const BlipConfig config = load_blip_config(dir);
    Loaded l(dir);
    CaptionModel& model = *l.model;
    REQUIRE(model.family() == "blip");
    REQUIRE(model.encoder().num_tokens() == m.at("encoder_tokens").get<std::int64_t>());
    REQUIRE(model.vocab_size() == m.at("vocab_size").get<std::int64_t>());
    const auto& pre = config.preprocessor;
    std::vector<float> logits(static_cast<std::size_t>(model.vocab_size()));

    for (const auto& [image_name, img] : m.at("images").items()) {
      SECTION(model_name + "/" + image_name) {
        const RgbImage image = load_image(kData / "golden_images" / image_name);
        const RgbImage resized = pil_resize(image, static_cast<int>(pre.width), static_cast<int>(pre.height), pre.resample);
        const auto want_u8 = img.at("resized_u8").at("data").get<std::vector<int>>();
        REQUIRE(resized.data.size() == want_u8.size());
        std::size_t mismatches = 0;
        for (std::size_t i = 0; i < want_u8.size(); ++i) mismatches += resized.data[i] != want_u8[i];
        CHECK(mismatches == 0);

        const std::vector<float> pixels = pixels_for(kData / "golden_images" / image_name, pre);
        if (img.contains("pixel_values")) check_close("pixel_values", pixels.data(), values(img.at("pixel_values")), 1e-6);

        model.encode(pixels.data(), 1);
        if (img.contains("encoder_last_hidden_state"))
          check_close("encoder_last_hidden_state", model.encoder_states(0), values(img.at("encoder_last_hidden_state")), 1e-4);
        auto state = model.start(0, 1, 8);
        if (img.contains("cross_k_layer0")) {
          REQUIRE(state->cross_k(0));  // (heads, N, head_dim), the reference's layout
          check_close("cross_k_layer0", state->cross_k(0), values(img.at("cross_k_layer0")), 1e-4);
          check_close("cross_v_layer0", state->cross_v(0), values(img.at("cross_v_layer0")), 1e-4);
        }
        const std::int64_t bos = m.at("bos_token_id").get<std::int64_t>();
        DecoderState* group = state.get();
        model.step({&group, 1}, &bos, logits.data(), nullptr);
        check_close("first_step_logits", logits.data(), values(img.at("first_step_logits")), 1e-4);
      }
    }
  }
}

TEST_CASE("golden blip: generation settings and the prompt rule follow BLIP's generate()", "[golden][blip]") {
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    const auto dir = kData / model_name;
    Loaded l(dir);
    // No prompt: the decoder input is [bos] ([DEC]); generation stops at sep_token_id, not at
    // text_config.eos_token_id.
    const auto start = l.model->decoder_prompt(l.tokenizer, std::nullopt);
    CHECK(start == std::vector<std::int64_t>{m.at("bos_token_id").get<std::int64_t>()});
    const DecodeSettings s = resolve_settings(l.model->generation(), {}, start, l.model->default_length_cap());
    const json& want = m.at("generation_defaults");
    CHECK(s.max_length == want.at("max_length").get<std::int64_t>());
    CHECK(s.min_length == want.at("min_length").get<std::int64_t>());
    CHECK(s.num_beams == want.at("num_beams").get<std::int64_t>());
    CHECK(s.length_penalty == Approx(want.at("length_penalty").get<double>()));
    CHECK(s.no_repeat_ngram_size == want.at("no_repeat_ngram_size").get<std::int64_t>());
    CHECK(s.repetition_penalty == Approx(want.at("repetition_penalty").get<double>()));
    CHECK(early_stopping_name(s.early_stopping) == early_stopping_name(want.at("early_stopping")));
    CHECK(s.eos_token_ids == want.at("eos_token_ids").get<std::vector<std::int64_t>>());
    CHECK(s.eos_token_ids != std::vector<std::int64_t>{m.at("eos_token_id").get<std::int64_t>()});
  }
}

TEST_CASE("golden blip: greedy and beam search reproduce the reference (prompts as ids)", "[golden][blip]") {
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    const auto dir = kData / model_name;
    const BlipConfig config = load_blip_config(dir);
    Loaded l(dir);
    CaptionModel& model = *l.model;
    const auto vocab = static_cast<std::size_t>(model.vocab_size());
    for (const auto& [image_name, img] : m.at("images").items()) {
      const std::vector<float> pixels = pixels_for(kData / "golden_images" / image_name, config.preprocessor);
      for (const auto& [case_name, c] : img.at("cases").items()) {
        SECTION(model_name + "/" + image_name + "/" + case_name) {
          const auto prompt = c.at("prompt_ids").get<std::vector<std::int64_t>>();
          const DecodeSettings s = resolve_settings(model.generation(), options_from(c.at("params")), prompt,
                                                    model.default_length_cap());
          const json& r = c.at("resolved");
          CHECK(s.max_length == r.at("max_length").get<std::int64_t>());
          CHECK(s.min_length == r.at("min_length").get<std::int64_t>());
          CHECK(s.num_beams == r.at("num_beams").get<std::int64_t>());
          CHECK(s.eos_token_ids == r.at("eos_token_ids").get<std::vector<std::int64_t>>());

          model.encode(pixels.data(), 1);
          auto state = model.start(0, s.num_beams, s.max_length);
          const bool attention = c.contains("cross_attentions");
          const DecodeResult d = decode(model, *state, s, attention);
          auto want = c.at("sequence").get<std::vector<std::int64_t>>();
          REQUIRE(want.size() >= prompt.size());
          want.erase(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(prompt.size()));
          CHECK(d.tokens == want);
          if (d.tokens != want) continue;
          check_close("token_logprobs", d.logprobs.data(), c.at("token_logprobs").get<std::vector<float>>(), 1e-4);
          const double score = c.at("mode") == "beam" ? c.at("sequences_scores").get<double>()
                                                      : c.at("sum_logprobs").get<double>();
          CHECK(d.sequence_score == Approx(score).margin(1e-4));

          if (attention) {
            // (generated, layers, heads, N): the step that produced each token, prompt steps excluded
            const auto shape = c.at("cross_attentions").at("shape").get<std::vector<std::int64_t>>();
            REQUIRE(shape.size() == 4);
            CHECK(shape[0] == static_cast<std::int64_t>(d.tokens.size()));
            CHECK(shape[1] * shape[2] * shape[3] == model.attention_floats());
            REQUIRE(d.attention.size() == static_cast<std::size_t>(shape[0] * model.attention_floats()));
            check_close("cross_attentions", d.attention.data(), values(c.at("cross_attentions")), 1e-4);
          }
          if (c.contains("step_logits")) {
            // Teacher-forced: feed prompt + generated tokens one at a time, compare the logits of
            // every step that produced a generated token.
            const std::vector<float> want_logits = values(c.at("step_logits"));
            const auto full = c.at("sequence").get<std::vector<std::int64_t>>();
            auto forced = model.start(0, 1, static_cast<std::int64_t>(full.size()));
            DecoderState* group = forced.get();
            std::vector<float> logits(vocab);
            for (std::size_t t = 0; t + 1 < full.size(); ++t) {
              model.step({&group, 1}, &full[t], logits.data(), nullptr);
              if (t + 1 < prompt.size()) continue;
              const std::size_t k = t + 1 - prompt.size();
              const std::vector<float> row(want_logits.begin() + static_cast<std::ptrdiff_t>(k * vocab),
                                           want_logits.begin() + static_cast<std::ptrdiff_t>((k + 1) * vocab));
              check_close(fmt::format("step_logits[{}]", k), logits.data(), row, 1e-4);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("golden blip: the Captioner reproduces the reference's captions, prompts given as text", "[golden][blip]") {
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    const auto dir = kData / model_name;
    if (const auto why = tokenizer_unavailable(dir)) {
      // Catch2 v2 has no SKIP: say so on stdout, which CTest turns into a skipped test.
      std::cout << "XCAPTION-SKIPPED: " << model_name << ": the C++ tokenizer cannot read its WordPiece "
                << "tokenizer.json yet (" << *why << "); prompt-as-text and caption-text checks not run\n";
      WARN("skipped: no WordPiece tokenizer (" << *why << ")");
      return;
    }
    Captioner captioner = Captioner::load(dir);
    const json& p = m.at("prompt");
    // The prompt's WordPiece ids: the processor's ids without [CLS] and [SEP].
    auto processor_ids = p.at("processor_ids").get<std::vector<std::int64_t>>();
    CHECK(captioner.encode_text(p.at("text").get<std::string>()) ==
          std::vector<std::int64_t>(processor_ids.begin() + 1, processor_ids.end() - 1));
    for (const auto& [image_name, img] : m.at("images").items()) {
      for (const auto& [case_name, c] : img.at("cases").items()) {
        SECTION(model_name + "/" + image_name + "/" + case_name) {
          CaptionRequest request;
          request.generation = options_from(c.at("params"));
          if (c.contains("prompt")) request.prompt = c.at("prompt").get<std::string>();
          const CaptionResult r = captioner.caption_file(kData / "golden_images" / image_name, request);
          const auto prompt = c.at("prompt_ids").get<std::vector<std::int64_t>>();
          CHECK(r.prompt_ids == prompt);
          auto want = c.at("sequence").get<std::vector<std::int64_t>>();
          want.erase(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(prompt.size()));
          CHECK(r.token_ids == want);
          CHECK(r.caption == c.at("text").get<std::string>());
          if (r.token_ids != want) continue;
          check_close("token_logprobs", r.logprobs.data(), c.at("token_logprobs").get<std::vector<float>>(), 1e-4);
        }
      }
    }
  }
}
