// The shipped model (models/shapes-small) against the forward pass of the code that trained it
// (tests/data/shapes-small-parity.json, written by tools/make_shapes_fixture.py from
// tools/xcaption_ref/modeling.py on the exported F16 weights): first-step and teacher-forced logits,
// greedy tokens, log-probs, caption, and the cross-attention argmax the overlays show.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>

#include "encoders/image_processor.hpp"
#include "models/family.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "models/vit_gpt2/config.hpp"
#include "src/io/weights.hpp"

using namespace xcaption;
using nlohmann::json;

namespace {

const std::filesystem::path kRoot = XCAPTION_SOURCE_DIR;

const json& parity() {
  static const json j = [] {
    std::ifstream in(std::filesystem::path(XCAPTION_TEST_DATA) / "shapes-small-parity.json");
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

// Largest |got - want|; on failure prints where and the first values.
void check_abs(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, double tol) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(double(got[i]) - want[i]);
    if (!(d <= worst)) worst = d, at = i;
  }
  INFO(fmt::format("{}: {} values, max |diff| {:.3g} at [{}]: got {} want {}; first got [{}, {}] want [{}, {}]", what,
                   want.size(), worst, at, got[at], want[at], got[0], got[1 % got.size()], want[0],
                   want[1 % want.size()]));
  CHECK(worst <= tol);
}

}  // namespace

TEST_CASE("shapes-small: engine logits match the training code's forward pass", "[golden]") {
  const json& p = parity();
  const auto dir = kRoot / p.at("model").get<std::string>();
  const VitGpt2Config config = load_vit_gpt2_config(dir);
  auto backend = make_onednn_backend();
  WeightStore weights = WeightStore::open(dir);
  const Tokenizer tokenizer = Tokenizer::load(dir);
  auto model = load_caption_model(dir, *backend, weights, tokenizer, 1);
  const std::int64_t vocab = p.at("vocab_size").get<std::int64_t>();
  REQUIRE(config.decoder.vocab_size == vocab);
  const std::int64_t size = config.encoder.image_size;
  std::vector<float> pixels(static_cast<std::size_t>(3 * size * size));
  std::vector<float> logits(static_cast<std::size_t>(vocab));

  REQUIRE(p.at("images").size() >= 2);
  for (const auto& [image_name, img] : p.at("images").items()) {
    SECTION(image_name) {
      preprocess_image(load_image(kRoot / image_name), config.preprocessor, pixels.data());
      model->encode(pixels.data(), 1);
      const auto ids = img.at("token_ids").get<std::vector<std::int64_t>>();
      auto state = model->start(0, 1, static_cast<std::int64_t>(ids.size()) + 1);
      DecoderState* group = state.get();
      std::int64_t token = p.at("decoder_start_token_id").get<std::int64_t>();
      model->step({&group, 1}, &token, logits.data(), nullptr);
      check_abs("first_step_logits", logits, img.at("first_step_logits").get<std::vector<float>>(), 1e-4);

      // teacher forcing on the reference's greedy tokens: every step's logits
      const auto want_rows = img.at("teacher_forced_logits").get<std::vector<std::vector<float>>>();
      REQUIRE(want_rows.size() == ids.size());
      for (std::size_t s = 0; s < ids.size(); ++s) {
        if (s > 0) {
          token = ids[s - 1];
          model->step({&group, 1}, &token, logits.data(), nullptr);
        }
        check_abs(fmt::format("teacher_forced_logits[{}]", s), logits, want_rows[s], 1e-4);
      }
    }
  }
}

TEST_CASE("shapes-small: greedy captions, log-probs and attention peaks match the training code", "[golden]") {
  const json& p = parity();
  Captioner captioner = Captioner::load(kRoot / p.at("model").get<std::string>());
  const auto grid = p.at("grid").get<std::vector<std::int64_t>>();
  for (const auto& [image_name, img] : p.at("images").items()) {
    SECTION(image_name) {
      CaptionRequest request;
      request.capture_cross_attention = true;
      const CaptionResult r = captioner.caption_file(kRoot / image_name, request);
      const auto want_ids = img.at("token_ids").get<std::vector<std::int64_t>>();
      CHECK(r.token_ids == want_ids);
      REQUIRE(r.token_ids.size() == want_ids.size());
      // the engine joins word-level tokens with spaces ("circle , a"); the reference applies
      // transformers' clean_up_tokenization ("circle, a"), as tokenizer_config.json asks
      std::string caption = r.caption;
      for (std::size_t at; (at = caption.find(" ,")) != std::string::npos;) caption.erase(at, 1);
      CHECK(caption == img.at("caption").get<std::string>());
      check_abs("token_logprobs", r.logprobs, img.at("token_logprobs").get<std::vector<float>>(), 1e-4);

      const CrossAttention& a = r.cross_attention;
      REQUIRE(a.steps == static_cast<std::int64_t>(want_ids.size()));
      REQUIRE(a.grid_rows == grid[0]);
      REQUIRE(a.grid_cols == grid[1]);
      const auto want_argmax = img.at("attention_argmax").get<std::vector<std::int64_t>>();
      const auto margin = img.at("attention_margin").get<std::vector<double>>();
      const std::int64_t patches = a.grid_rows * a.grid_cols;
      for (std::int64_t s = 0; s < a.steps; ++s) {
        if (margin[static_cast<std::size_t>(s)] < 1e-4) continue;  // a near tie: the argmax is not stable
        std::vector<double> mean(static_cast<std::size_t>(patches), 0.0);
        for (std::int64_t l = 0; l < a.layers; ++l)
          for (std::int64_t h = 0; h < a.heads; ++h) {
            const auto w = a.at(s, l, h);
            for (std::int64_t j = 0; j < patches; ++j) mean[static_cast<std::size_t>(j)] += w[static_cast<std::size_t>(1 + j)];
          }
        const auto best = std::max_element(mean.begin(), mean.end()) - mean.begin();
        INFO("step " << s);
        CHECK(best == want_argmax[static_cast<std::size_t>(s)]);
      }
    }
  }
}
