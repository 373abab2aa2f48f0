// Florence-2 parity with the independent PyTorch reference (tools/make_florence2_golden.py,
// tools/xcaption_ref/florence2.py) on the tiny random checkpoints in both layouts:
// tests/data/tiny-florence2-remote (the hub's remote-code names, fp16 pytorch_model.bin) and
// tiny-florence2-native (transformers' names, f32 model.safetensors). Checked: the tokenizer with
// the processor's added tokens and every task's prompt ids, generation defaults, pixels, image
// features, BART encoder states over [image tokens; prompt], the first two decoder steps'
// logits, greedy and beam-3 tokens with their post-processed answers through Captioner, and
// post_process_generation of crafted strings for each answer type in both processors' flavours.
#include <catch2/catch.hpp>

#include <cmath>
#include <iostream>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>

#include "decoder/bart.hpp"
#include "encoders/image_processor.hpp"
#include "models/caption_model.hpp"
#include "models/family.hpp"
#include "models/florence2/config.hpp"
#include "models/florence2/tasks.hpp"
#include "src/generate/settings.hpp"
#include "src/io/weights.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "tests/golden/golden_util.hpp"

using namespace xcaption;
using nlohmann::json;

namespace {

using golden::check_close;
using golden::kData;

const json& golden_file() {
  static const json g = golden::load("golden_florence2.json");
  return g;
}

// A full tensor ({"shape", "data"}) or a summary ({"shape", "sum", "abs_sum", "first", "last"}).
void check_tensor(const std::string& what, const float* got, std::size_t n, const json& want, double tol) {
  std::int64_t count = 1;
  for (const auto& s : want.at("shape")) count *= s.get<std::int64_t>();
  REQUIRE(static_cast<std::size_t>(count) == n);
  if (want.contains("data")) {
    check_close(what, got, golden::values(want), tol);
    return;
  }
  double sum = 0, abs_sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sum += got[i];
    abs_sum += std::abs(got[i]);
  }
  const double scale = std::max(1.0, want.at("abs_sum").get<double>());
  INFO(what << ": sum " << sum << " want " << want.at("sum").get<double>() << ", abs_sum " << abs_sum << " want "
            << want.at("abs_sum").get<double>());
  CHECK(std::abs(sum - want.at("sum").get<double>()) <= tol * scale);
  CHECK(std::abs(abs_sum - want.at("abs_sum").get<double>()) <= tol * scale);
  const auto first = want.at("first").get<std::vector<float>>();
  const auto last = want.at("last").get<std::vector<float>>();
  check_close(what + " (first values)", got, first, tol);
  check_close(what + " (last values)", got + n - last.size(), last, tol);
}

struct Loaded {
  std::unique_ptr<Backend> backend = make_onednn_backend();
  WeightStore weights;
  Tokenizer folder_tokenizer;
  std::unique_ptr<CaptionModel> model;
  Tokenizer tokenizer;  // the family's, with the processor's added tokens

  explicit Loaded(const std::filesystem::path& dir)
      : weights(WeightStore::open(dir)), folder_tokenizer(Tokenizer::load(dir)),
        model(load_caption_model(dir, *backend, weights, folder_tokenizer, 4)), tokenizer(taken(*model)) {}
  static Tokenizer taken(CaptionModel& m) {
    std::optional<Tokenizer> t = m.take_tokenizer();
    REQUIRE(t);
    return *t;
  }
};

// The task and its text from the processor's input string (task token first).
std::pair<std::string, std::optional<std::string>> split_input(const std::string& task, const std::string& input) {
  REQUIRE(input.rfind(task, 0) == 0);
  const std::string rest = input.substr(task.size());
  return {task, rest.empty() ? std::nullopt : std::optional(rest)};
}

std::vector<float> pixels_for(const std::string& image, const PreprocessorConfig& pre) {
  std::vector<float> px(static_cast<std::size_t>(3 * pre.height * pre.width));
  preprocess_image(load_image(kData / "golden_images" / image), pre, px.data());
  return px;
}

bool native_layout(const json& m) { return m.at("layout") == "native"; }

// Why the whole-model cases cannot run yet (encoders/davit.cpp still a stub), or nullopt. They
// then print "XCAPTION-SKIPPED: ..." (CTest reports them as skipped) instead of passing.
std::optional<std::string> tower_unavailable() {
  static const std::optional<std::string> why = []() -> std::optional<std::string> {
    try {
      Captioner::load(kData / "tiny-florence2-remote");
      return std::nullopt;
    } catch (const InputError& e) {
      if (std::string(e.what()).find("not implemented yet") != std::string::npos) return std::string(e.what());
      return std::nullopt;  // any other error: let the test show it
    }
  }();
  return why;
}

#define SKIP_WITHOUT_TOWER()                                        \
  if (const auto why = tower_unavailable()) {                       \
    std::cout << "XCAPTION-SKIPPED: " << *why << std::endl;         \
    return;                                                         \
  }

}  // namespace

namespace {
// The decoder alone as a StepModel, for generation over states given from outside.
class DecoderOnly final : public StepModel {
 public:
  explicit DecoderOnly(TextDecoder& d) : d_(d) {}
  std::int64_t vocab_size() const override { return d_.vocab_size(); }
  std::int64_t attention_floats() const override { return 0; }
  void step(std::span<DecoderState* const> groups, const std::int64_t* tokens, float* logits, float*) override {
    std::vector<blocks::KvCache*> caches;
    for (DecoderState* g : groups) caches.push_back(static_cast<blocks::KvCache*>(g));
    d_.step(caches, tokens, logits, nullptr);
  }

 private:
  TextDecoder& d_;
};

BartNames bart_names(bool native) {
  BartNames n;
  const std::string lm = native ? "model.language_model." : "language_model.model.";
  n.encoder = lm + "encoder.";
  n.decoder = lm + "decoder.";
  n.shared = lm + "shared.weight";
  n.head = native ? "lm_head.weight" : "language_model.lm_head.weight";
  if (!native) n.head_bias = "language_model.final_logits_bias";
  return n;
}
}  // namespace

TEST_CASE("golden florence2: BART encoder and decoder on the reference's image features", "[golden][florence2]") {
  // Independent of the vision tower: the first image's full image_features go straight into
  // the text encoder with the <CAPTION> prompt; encoder states, the first two steps' logits and
  // the greedy tokens are compared.
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    SECTION(model_name) {
      const auto dir = kData / model_name;
      const bool native = native_layout(m);
      const json config = read_model_config(dir);
      const Florence2Config c =
          load_florence2_config(dir, config, native ? Florence2Layout::native : Florence2Layout::remote);
      const BartNames names = bart_names(native);
      const TextEncoderSpec es = bart_encoder_spec(c.text, names);
      const TextDecoderSpec ds = bart_decoder_spec(c.text, names);
      const WeightStore weights = WeightStore::open(dir);
      std::vector<ExpectedTensor> table;
      TextDecoder::describe(ds, table);
      TextEncoder::describe(es, true, table);
      weights.validate(table);
      auto backend = make_onednn_backend();
      TextDecoder decoder(ds, weights, *backend, 1, 64);
      TextEncoder encoder(es, weights, *backend, &decoder, 64);
      CHECK(decoder.head_tied());

      const json& img = m.at("images").begin().value();
      const json& features = img.at("image_features");
      REQUIRE(features.contains("data"));
      const std::vector<float> f = golden::values(features);
      const std::int64_t t = features.at("shape")[0].get<std::int64_t>(), d = c.text.d_model;
      const json& task = img.at("tasks").at("<CAPTION>");
      const auto ids = task.at("prompt_ids").get<std::vector<std::int64_t>>();
      const std::int64_t total = t + static_cast<std::int64_t>(ids.size());
      std::vector<float> states(static_cast<std::size_t>(total * d));
      encoder.forward(f.data(), t, ids, states.data());
      check_tensor("encoder_out", states.data(), states.size(), task.at("encoder_out"), 1e-4);

      auto cache = decoder.start(states.data(), total, 1, 8);
      blocks::KvCache* group = cache.get();
      const auto vocab = static_cast<std::size_t>(decoder.vocab_size());
      std::vector<float> logits(2 * vocab);
      for (std::int64_t s = 0; s < 2; ++s) {
        const std::int64_t token = s == 0 ? 2 : 0;
        decoder.step({&group, 1}, &token, logits.data() + s * vocab, nullptr);
      }
      check_tensor("first_step_logits", logits.data(), logits.size(), task.at("first_step_logits"), 1e-4);

      const json& greedy = task.at("cases").at("greedy");
      DecodeSettings settings = resolve_settings(c.generation, golden::options_from(greedy.at("params"), "golden_florence2.json"),
                                                 {c.text.decoder_start_token_id}, c.text.max_position_embeddings);
      auto state = decoder.start(states.data(), total, 1, settings.max_length);
      DecoderOnly model(decoder);
      const DecodeResult r = xcaption::decode(model, *state, settings, false);
      auto want = greedy.at("sequence").get<std::vector<std::int64_t>>();
      want.erase(want.begin());
      CHECK(r.tokens == want);
    }
  }
}

namespace {
// An image tower that hands out given features (the reference's), so the CaptionModel seam can be
// checked without the DaViT tower.
class GivenFeatures final : public ImageEncoder {
 public:
  GivenFeatures(std::vector<float> f, std::int64_t tokens, std::int64_t width, std::int64_t side)
      : f_(std::move(f)), tokens_(tokens), width_(width), side_(side) {}
  std::int64_t image_height() const override { return 8; }
  std::int64_t image_width() const override { return 8; }
  std::int64_t num_tokens() const override { return tokens_; }
  std::int64_t hidden_size() const override { return width_; }
  TokenGrid grid() const override { return {tokens_, 1, side_, side_}; }
  void forward(const float*, std::int64_t batch, float* out) override {
    for (std::int64_t b = 0; b < batch; ++b) std::copy(f_.begin(), f_.end(), out + b * tokens_ * width_);
  }
  double flops() const override { return 0; }
  std::string describe() const override { return "given features"; }
  std::int64_t num_layers() const override { return 0; }
  std::int64_t num_heads() const override { return 0; }
  std::int64_t patch_size() const override { return 1; }

 private:
  std::vector<float> f_;
  std::int64_t tokens_, width_, side_;
};
}  // namespace

TEST_CASE("golden florence2: CaptionModel with a text encoder decodes every task of the reference, two images at once",
          "[golden][florence2]") {
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    SECTION(model_name) {
      const auto dir = kData / model_name;
      const bool native = native_layout(m);
      const json config = read_model_config(dir);
      const Florence2Config c =
          load_florence2_config(dir, config, native ? Florence2Layout::native : Florence2Layout::remote);
      const BartNames names = bart_names(native);
      const WeightStore weights = WeightStore::open(dir);
      auto backend = make_onednn_backend();
      const json& img = m.at("images").begin().value();
      const json& features = img.at("image_features");
      const std::int64_t t = features.at("shape")[0].get<std::int64_t>();
      const auto size = img.at("original_size").get<std::vector<std::int64_t>>();

      CaptionModelParts parts;
      parts.family = "florence2-test";
      parts.generation = c.generation;
      parts.default_length_cap = c.text.max_position_embeddings;
      parts.encoder = std::make_unique<GivenFeatures>(golden::values(features), t, c.text.d_model, 7);
      parts.decoder = std::make_unique<TextDecoder>(bart_decoder_spec(c.text, names), weights, *backend, 3, t + 16);
      parts.text_encoder =
          std::make_unique<TextEncoder>(bart_encoder_spec(c.text, names), weights, *backend, parts.decoder.get(), t + 16);
      parts.tasks.default_task = "<CAPTION>";
      parts.tasks.names = florence2::task_names();
      parts.tasks.encoder_prompt = [native](const Tokenizer& tok, const std::string& task,
                                            const std::optional<std::string>& text) {
        const std::string p = florence2::construct_prompt(task, text, native);
        return native ? tok.encode("<s>" + p + "</s>", false) : tok.encode(p, true);
      };
      parts.prompt = [](const Tokenizer&, const GenerationConfig& g, std::optional<std::string_view>) {
        return std::vector<std::int64_t>{*g.decoder_start_token_id};
      };
      CaptionModel model(std::move(parts), *backend);
      const Tokenizer tok = Tokenizer::load(dir, florence2::added_tokens());
      const florence2::PostProcessFlavor flavor{native, c.banned_grounding_tokens};

      std::vector<float> pixels(2 * 3 * 8 * 8, 0.0f);
      model.encode(pixels.data(), 2);
      for (const auto& [task, tk] : img.at("tasks").items()) {
        const auto [tname, text] = split_input(task, tk.at("input").get<std::string>());
        const std::vector<std::int64_t> ids = model.encoder_prompt(tok, tname, text);
        CHECK(ids == tk.at("prompt_ids").get<std::vector<std::int64_t>>());
        for (const auto& [case_name, cs] : tk.at("cases").items()) {
          INFO(model_name << " " << task << " " << case_name);
          const DecodeSettings s = resolve_settings(model.generation(), golden::options_from(cs.at("params"), "golden_florence2.json"),
                                                    model.decoder_prompt(tok, std::nullopt), model.default_length_cap());
          CHECK(s.max_length == cs.at("resolved").at("max_length").get<std::int64_t>());
          // Two images decoded together (both get the same features): each must give the
          // reference's sequence, with attention over the image and prompt tokens.
          auto a = model.start(0, s.num_beams, s.max_length, ids);
          auto b = model.start(1, s.num_beams, s.max_length, ids);
          CHECK(model.cross_tokens() == t + static_cast<std::int64_t>(ids.size()));
          const std::vector<DecodeJob> jobs{{a.get(), &s, true}, {b.get(), &s, false}};
          const std::vector<DecodeResult> r = decode_together(model, jobs);
          auto want = cs.at("sequence").get<std::vector<std::int64_t>>();
          const std::vector<std::int64_t> all = want;
          want.erase(want.begin());
          CHECK(r[0].tokens == want);
          CHECK(r[1].tokens == want);
          CHECK(r[0].attention.size() == r[0].tokens.size() * static_cast<std::size_t>(model.attention_floats()));
          const double score = cs.at("mode") == "beam" ? cs.at("sequences_scores").get<double>()
                                                       : cs.at("sum_logprobs").get<double>();
          CHECK(r[0].sequence_score == Approx(score).margin(1e-4));
          const std::string decoded = tok.decode(all, false);
          CHECK(decoded == cs.at("text").get<std::string>());
          const TaskResult pr = florence2::post_process(tname, decoded, size[0], size[1], flavor);
          CHECK(json::parse(pr.json) == cs.at("post_processed"));
        }
      }
    }
  }
}

TEST_CASE("golden florence2: the processor's tokens and every task's prompt ids", "[golden][florence2]") {
  SKIP_WITHOUT_TOWER();
  const json& g = golden_file();
  const json& tok = g.at("tokenizer");
  for (const auto& [model_name, m] : g.at("models").items()) {
    SECTION(model_name) {
      Loaded l(kData / model_name);
      CHECK(l.model->family() == "florence2");
      CHECK(l.tokenizer.vocab_size() == m.at("tokenizer_size").get<std::int64_t>());
      CHECK(*l.tokenizer.token_id("<loc_0>") == tok.at("loc_0_id").get<std::int64_t>());
      CHECK(*l.tokenizer.token_id("<loc_999>") == tok.at("loc_999_id").get<std::int64_t>());
      CHECK(*l.tokenizer.token_id("<od>") == tok.at("first_added_id").get<std::int64_t>());
      for (const auto& e : tok.at("encode")) {
        INFO(e.at("text").get<std::string>());
        CHECK(l.tokenizer.encode(e.at("text").get<std::string>(), false) == e.at("ids").get<std::vector<std::int64_t>>());
        CHECK(l.tokenizer.encode(e.at("text").get<std::string>(), true) ==
              e.at("ids_with_specials").get<std::vector<std::int64_t>>());
      }
      const auto ids = tok.at("decode").at("ids").get<std::vector<std::int64_t>>();
      CHECK(l.tokenizer.decode(ids, false) == tok.at("decode").at("text").get<std::string>());
      CHECK(l.tokenizer.decode(ids, true) == tok.at("decode").at("text_skip_special").get<std::string>());
      const bool native = native_layout(m);
      for (const auto& [task, p] : tok.at("task_prompts").items()) {
        INFO(model_name << " " << task);
        const auto [t, text] = split_input(task, p.at("input").get<std::string>());
        CHECK(florence2::construct_prompt(t, text, native) == p.at(native ? "native_prompt" : "prompt").get<std::string>());
        CHECK(l.model->encoder_prompt(l.tokenizer, t, text) ==
              p.at(native ? "native_ids" : "remote_ids").get<std::vector<std::int64_t>>());
      }
    }
  }
}

TEST_CASE("golden florence2: generation defaults as the remote code and transformers resolve them",
          "[golden][florence2]") {
  SKIP_WITHOUT_TOWER();
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    Loaded l(kData / model_name);
    const auto start = l.model->decoder_prompt(l.tokenizer, std::nullopt);
    const json& want = m.at("generation_defaults");
    CHECK(start == std::vector<std::int64_t>{want.at("decoder_start_token_id").get<std::int64_t>()});
    const DecodeSettings s = resolve_settings(l.model->generation(), {}, start, l.model->default_length_cap());
    INFO(model_name);
    CHECK(s.max_length == want.at("max_length").get<std::int64_t>());
    CHECK(s.num_beams == want.at("num_beams").get<std::int64_t>());
    CHECK(s.no_repeat_ngram_size == want.at("no_repeat_ngram_size").get<std::int64_t>());
    CHECK(s.length_penalty == Approx(want.at("length_penalty").get<double>()));
    CHECK(s.early_stopping == (want.at("early_stopping").get<bool>() ? DecodeSettings::EarlyStopping::True
                                                                     : DecodeSettings::EarlyStopping::False));
    CHECK(s.eos_token_ids == want.at("eos_token_ids").get<std::vector<std::int64_t>>());
    REQUIRE(s.forced_bos_token_id);
    CHECK(*s.forced_bos_token_id == want.at("forced_bos_token_id").get<std::int64_t>());
    REQUIRE(s.forced_eos_token_id);
    CHECK(*s.forced_eos_token_id == want.at("forced_eos_token_id").get<std::int64_t>());
    CHECK_THROWS_AS(l.model->decoder_prompt(l.tokenizer, "a prefix"), InputError);
  }
}

TEST_CASE("golden florence2: pixels, image features, encoder states and first logits match the reference",
          "[golden][florence2]") {
  SKIP_WITHOUT_TOWER();
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    Loaded l(kData / model_name);
    CaptionModel& model = *l.model;
    REQUIRE(model.encoder().num_tokens() == m.at("image_tokens").get<std::int64_t>());
    const auto vocab = static_cast<std::size_t>(model.vocab_size());
    const std::int64_t d = m.at("d_model").get<std::int64_t>();
    for (const auto& [image_name, img] : m.at("images").items()) {
      SECTION(model_name + "/" + image_name) {
        const std::vector<float> pixels = pixels_for(image_name, model.preprocessor());
        check_tensor("pixel_values", pixels.data(), pixels.size(), img.at("pixel_values"), 1e-5);
        model.encode(pixels.data(), 1);
        const std::int64_t t = model.encoder().num_tokens();
        check_tensor("image_features", model.encoder_states(0), static_cast<std::size_t>(t * d),
                     img.at("image_features"), 1e-3);
        for (const auto& [task, tk] : img.at("tasks").items()) {
          INFO(task);
          const auto [tname, text] = split_input(task, tk.at("input").get<std::string>());
          const std::vector<std::int64_t> ids = model.encoder_prompt(l.tokenizer, tname, text);
          CHECK(ids == tk.at("prompt_ids").get<std::vector<std::int64_t>>());
          auto state = model.start(0, 1, 8, ids);
          const std::int64_t cross = t + static_cast<std::int64_t>(ids.size());
          REQUIRE(model.cross_tokens() == cross);
          check_tensor("encoder_out", model.cross_states(), static_cast<std::size_t>(cross * d), tk.at("encoder_out"), 1e-3);
          DecoderState* group = state.get();
          std::vector<float> logits(2 * vocab);
          for (std::int64_t s = 0; s < 2; ++s) {
            const std::int64_t token = s == 0 ? 2 : 0;
            model.step({&group, 1}, &token, logits.data() + s * vocab, nullptr);
          }
          const json& want = tk.at("first_step_logits");
          if (want.contains("data")) {
            check_tensor("first_step_logits", logits.data(), 2 * vocab, want, 1e-3);
          } else {
            check_tensor("step0 logits", logits.data(), vocab, want.at("step0"), 1e-3);
            check_tensor("step1 logits", logits.data() + vocab, vocab, want.at("step1"), 1e-3);
          }
        }
      }
    }
  }
}

TEST_CASE("golden florence2: greedy and beam-3 tokens and post-processed answers through Captioner",
          "[golden][florence2]") {
  SKIP_WITHOUT_TOWER();
  for (const auto& [model_name, m] : golden_file().at("models").items()) {
    Captioner captioner = Captioner::load(kData / model_name);
    const ModelInfo info = captioner.info();
    CHECK(info.family == "florence2");
    CHECK(info.default_task == "<CAPTION>");
    for (const auto& [image_name, img] : m.at("images").items()) {
      const RgbImage image = load_image(kData / "golden_images" / image_name);
      for (const auto& [task, tk] : img.at("tasks").items()) {
        for (const auto& [case_name, c] : tk.at("cases").items()) {
          SECTION(model_name + "/" + image_name + "/" + task + "/" + case_name) {
            const auto [tname, text] = split_input(task, tk.at("input").get<std::string>());
            CaptionRequest request;
            request.generation = golden::options_from(c.at("params"), "golden_florence2.json");
            request.task = tname;
            request.task_text = text;
            const CaptionResult r = captioner.caption(image, request);
            auto want = c.at("sequence").get<std::vector<std::int64_t>>();
            CHECK(r.prompt_ids == std::vector<std::int64_t>{want.front()});
            want.erase(want.begin());
            if (!c.value("noise_stable", true)) {
              WARN("reference marks the case as unstable under weight noise: tokens not compared");
              continue;
            }
            CHECK(r.token_ids == want);
            if (r.token_ids != want) continue;
            check_close("token_logprobs", r.logprobs.data(), c.at("token_logprobs").get<std::vector<float>>(), 1e-3);
            const double score = c.at("mode") == "beam" ? c.at("sequences_scores").get<double>()
                                                        : c.at("sum_logprobs").get<double>();
            CHECK(r.sequence_score == Approx(score).margin(1e-3));
            REQUIRE(r.task);
            CHECK(r.task->task == tname);
            CHECK(r.caption == c.at("text_skip_special").get<std::string>());
            CHECK(json::parse(r.task->json) == c.at("post_processed"));
          }
        }
      }
    }
  }
}

TEST_CASE("golden florence2: post_process_generation of crafted strings, both processors", "[golden][florence2]") {
  const Florence2Config native_config = [] {
    const auto dir = kData / "tiny-florence2-native";
    const json config = read_model_config(dir);
    return load_florence2_config(dir, config, Florence2Layout::native);
  }();
  const florence2::PostProcessFlavor remote{false, {}};
  const florence2::PostProcessFlavor native{true, native_config.banned_grounding_tokens};
  CHECK_FALSE(native.banned_grounding_tokens.empty());
  for (const auto& c : golden_file().at("post_processing")) {
    const std::string name = c.at("name").get<std::string>(), task = c.at("task").get<std::string>();
    const std::string text = c.at("text").get<std::string>();
    const auto size = c.at("image_size").get<std::vector<std::int64_t>>();
    INFO(name << ": " << text);
    const TaskResult r = florence2::post_process(task, text, size[0], size[1], remote);
    CHECK(json::parse(r.json) == c.at("remote"));
    const TaskResult n = florence2::post_process(task, text, size[0], size[1], native);
    CHECK(json::parse(n.json) == c.at("native"));
  }
}
