// Tests of the evaluation metrics: BLEU, CIDEr-D, structure aggregation and the attention pointing
// game (tag [eval]).
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/eval/metrics.hpp"
#include "src/eval/pointing.hpp"
#include "src/eval/summary.hpp"

namespace ev = xcaption::eval;
namespace sc = xcaption::scenes;

namespace {

using Refs = std::vector<std::vector<std::string>>;

sc::SceneObject object(const char* shape, const char* color, const char* size, std::array<int, 4> bbox) {
  sc::SceneObject o;
  o.shape = shape;
  o.color = color;
  o.size = size;
  o.bbox = bbox;
  o.center = {(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0};
  return o;
}

sc::Scene scene_of(std::vector<sc::SceneObject> objects, int width = 300, int height = 200) {
  sc::Scene s;
  s.file = "synthetic.png";
  s.width = width;
  s.height = height;
  s.objects = std::move(objects);
  s.captions = sc::captions_for(s.objects);
  return s;
}

// Attention with every weight `base`; set(...) overrides one (step, layer, head, patch) weight.
struct SyntheticAttention {
  xcaption::CrossAttention a;
  SyntheticAttention(std::int64_t steps, std::int64_t layers, std::int64_t heads, std::int64_t rows, std::int64_t cols,
                     float base = 0.01f) {
    a.steps = steps;
    a.layers = layers;
    a.heads = heads;
    a.grid_rows = rows;
    a.grid_cols = cols;
    a.encoder_tokens = 1 + rows * cols;
    a.weights.assign(static_cast<std::size_t>(steps * layers * heads * a.encoder_tokens), base);
    // CLS always carries the largest weight: the argmax must ignore it.
    for (std::int64_t s = 0; s < steps; ++s)
      for (std::int64_t l = 0; l < layers; ++l)
        for (std::int64_t h = 0; h < heads; ++h) weight(s, l, h, -1) = 0.9f;
  }
  // patch = -1 is CLS.
  float& weight(std::int64_t step, std::int64_t layer, std::int64_t head, std::int64_t patch) {
    return a.weights[static_cast<std::size_t>(((step * a.layers + layer) * a.heads + head) * a.encoder_tokens + 1 + patch)];
  }
  void set_cell(std::int64_t step, std::int64_t layer, std::int64_t head, std::int64_t r, std::int64_t c, float v) {
    weight(step, layer, head, r * a.grid_cols + c) = v;
  }
};

}  // namespace

TEST_CASE("tokenize lower-cases, splits off commas and drops periods", "[eval]") {
  CHECK(ev::tokenize("A Red circle, a blue  square.") ==
        std::vector<std::string>{"a", "red", "circle", ",", "a", "blue", "square"});
  CHECK(ev::tokenize("circle , a") == std::vector<std::string>{"circle", ",", "a"});
  CHECK(ev::tokenize("  ").empty());
}

TEST_CASE("BLEU of captions equal to a reference is 1", "[eval]") {
  const std::vector<std::string> cands = {"a large red circle", "a small blue square to the left of a large green star"};
  const Refs refs = {{"a large red circle"},
                     {"a large green star to the right of a small blue square",
                      "a small blue square to the left of a large green star"}};
  const auto b = ev::corpus_bleu(cands, refs);
  for (double v : b.bleu) CHECK(v == Approx(1.0).epsilon(1e-8));
  // coco-caption's guard terms make c == r give a ratio just below 1 (penalty 1 - 6e-11).
  CHECK(b.brevity_penalty == Approx(1.0).epsilon(1e-9));
  CHECK(b.candidate_length == 4 + 12);
  CHECK(b.reference_length == 4 + 12);
  CHECK(b.guess == std::array<std::int64_t, 4>{16, 14, 12, 10});
  CHECK(b.correct == b.guess);
}

TEST_CASE("BLEU by hand: clipping, closest reference length and brevity penalty", "[eval]") {
  SECTION("n-gram precisions") {
    // "a red circle" vs {"a red square", "a blue circle"}: unigrams 3/3, bigrams 1/2 ("a red"),
    // trigrams 0/1, no 4-gram. BLEU-2 = sqrt(1 * 1/2); BLEU-3 and -4 collapse to ~0.
    const auto b = ev::corpus_bleu({"a red circle"}, {{"a red square", "a blue circle"}});
    CHECK(b.correct == std::array<std::int64_t, 4>{3, 1, 0, 0});
    CHECK(b.guess == std::array<std::int64_t, 4>{3, 2, 1, 0});
    CHECK(b.bleu[0] == Approx(1.0));
    CHECK(b.bleu[1] == Approx(std::sqrt(0.5)));
    CHECK(b.bleu[2] < 1e-4);
    CHECK(b.bleu[3] < 1e-4);
  }
  SECTION("clipping by the largest count in one reference") {
    // "a a a a": "a" occurs at most twice in one reference, so 2 of 4 unigrams count.
    const auto b = ev::corpus_bleu({"a a a a"}, {{"a red circle", "a a blue"}});
    CHECK(b.correct[0] == 2);
    CHECK(b.bleu[0] == Approx(0.5));
    CHECK(b.reference_length == 3);
  }
  SECTION("brevity penalty with the closest reference") {
    // c = 3, references of 4 and 12 words: r = 4, BP = exp(1 - 4/3).
    const auto b = ev::corpus_bleu({"a red circle"},
                                   {{"a large red circle", "a large red circle to the left of a small red square"}});
    CHECK(b.reference_length == 4);
    CHECK(b.brevity_penalty == Approx(std::exp(1.0 - 4.0 / 3.0)));
    CHECK(b.bleu[0] == Approx(std::exp(-1.0 / 3.0)));
  }
  SECTION("a tie in closeness picks the shorter reference") {
    // c = 4, references of 3 and 5 words: r = 3 (no penalty); r = 5 would give exp(1 - 5/4).
    const auto b = ev::corpus_bleu({"a large red circle"}, {{"a red circle", "the big large red circle"}});
    CHECK(b.reference_length == 3);
    CHECK(b.brevity_penalty == 1.0);
    CHECK(b.bleu[0] == Approx(1.0));
  }
  SECTION("corpus level: counts are pooled before the geometric mean") {
    // Image 1 exact (4 words), image 2 "a blue star" vs "a green star": 2 of 3 unigrams, 0 of 2
    // bigrams. Pooled: unigrams 6/7, bigrams 3/5, so BLEU-2 = sqrt(6/7 * 3/5); the mean of
    // per-image BLEU-2 would be (1 + 0) / 2.
    const auto b = ev::corpus_bleu({"a large red circle", "a blue star"}, {{"a large red circle"}, {"a green star"}});
    CHECK(b.correct[0] == 6);
    CHECK(b.guess[0] == 7);
    CHECK(b.correct[1] == 3);
    CHECK(b.guess[1] == 5);
    CHECK(b.bleu[1] == Approx(std::sqrt(6.0 / 7.0 * 3.0 / 5.0)));
  }
  SECTION("bad input") {
    CHECK_THROWS_AS(ev::corpus_bleu({"a"}, {}), xcaption::InputError);
    CHECK_THROWS_AS(ev::corpus_bleu({"a"}, {{}}), xcaption::InputError);
    const auto b = ev::corpus_bleu({}, {});
    CHECK(b.bleu[3] == 0.0);
  }
}

TEST_CASE("CIDEr-D by hand", "[eval]") {
  // Two images, so idf = log(2) - log(df) = log(2) for n-grams of one image's references (and for
  // n-grams in no reference). Image A: candidate equals the reference: cosine 1 for n = 1, 2 and no
  // 3/4-grams: 10 * (1 + 1) / 4 = 5. Image B: "c e" vs "c d": unigram cosine 1/2 ("c" shared),
  // bigrams disjoint: 10 * 0.5 / 4 = 1.25.
  const auto c = ev::cider_d({"a b", "c e"}, {{"a b"}, {"c d"}});
  REQUIRE(c.per_image.size() == 2);
  CHECK(c.per_image[0] == Approx(5.0));
  CHECK(c.per_image[1] == Approx(1.25));
  CHECK(c.mean == Approx(3.125));

  // Length penalty and clipping: "a b b" vs "a b". Unigram weights (L = log 2) cand {a: L, b: 2L},
  // ref {a: L, b: L}: clipped dot = L*L + min(2L, L)*L = 2L^2, norms sqrt(5) L and sqrt(2) L ->
  // 2 / sqrt(10). Bigrams cand {ab: L, bb: L}, ref {ab: L}: 1 / sqrt(2). Lengths (bigram counts)
  // 2 and 1: penalty exp(-1 / 72).
  const auto d = ev::cider_d({"a b b", "c d"}, {{"a b"}, {"c d"}});
  const double expected = 10.0 * (2.0 / std::sqrt(10.0) + 1.0 / std::sqrt(2.0)) * std::exp(-1.0 / 72.0) / 4.0;
  CHECK(d.per_image[0] == Approx(expected));

  // Averaging over references: the candidate equals one of two references.
  const auto e = ev::cider_d({"a b", "c d"}, {{"a b", "x y"}, {"c d"}});
  // Ref "x y" shares nothing: image A = (5 + 0) / 2.
  CHECK(e.per_image[0] == Approx(2.5));

  // A single image: every reference n-gram has idf log(1) - log(1) = 0, so scores are 0 (coco-caption
  // would divide 0 by 0).
  const auto single = ev::cider_d({"a red circle"}, {{"a red circle"}});
  CHECK(single.mean == 0.0);
  CHECK_THROWS_AS(ev::cider_d({"a", "b"}, {{"a"}}), xcaption::InputError);
}

TEST_CASE("CIDEr-D ranks a caption equal to all references above a partial match", "[eval]") {
  const Refs refs = {{"a large red circle"}, {"a small blue square"}, {"a large green star"}};
  const auto exact = ev::cider_d({"a large red circle", "a small blue square", "a large green star"}, refs);
  const auto partial = ev::cider_d({"a large red circle", "a small blue star", "a large green star"}, refs);
  CHECK(exact.per_image[1] > 0);
  CHECK(partial.per_image[1] > 0);
  CHECK(exact.per_image[1] > partial.per_image[1]);
  CHECK(exact.mean > partial.mean);
  CHECK(exact.per_image[1] == Approx(10.0));  // equal to its only reference
}

TEST_CASE("BLEU and CIDEr-D agree with the Python reference", "[eval]") {
  std::ifstream in(std::string(XCAPTION_TEST_DATA) + "/eval/metrics_reference.json");
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  for (const auto& c : fixture.at("cases")) {
    INFO("case: " << c.at("name").get<std::string>());
    const auto cands = c.at("candidates").get<std::vector<std::string>>();
    const auto refs = c.at("references").get<Refs>();
    const auto b = ev::corpus_bleu(cands, refs);
    const auto& jb = c.at("bleu");
    for (int n = 0; n < 4; ++n) {
      INFO("BLEU-" << n + 1);
      CHECK(b.bleu[n] == Approx(jb.at("bleu")[n].get<double>()).epsilon(1e-9).margin(1e-18));
      CHECK(b.correct[n] == jb.at("correct")[n].get<std::int64_t>());
      CHECK(b.guess[n] == jb.at("guess")[n].get<std::int64_t>());
    }
    CHECK(b.candidate_length == jb.at("candidate_length").get<std::int64_t>());
    CHECK(b.reference_length == jb.at("reference_length").get<std::int64_t>());
    const auto cd = ev::cider_d(cands, refs);
    const auto expected = c.at("cider_d").at("per_image").get<std::vector<double>>();
    REQUIRE(cd.per_image.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      INFO("image " << i);
      CHECK(cd.per_image[i] == Approx(expected[i]).epsilon(1e-9).margin(1e-12));
    }
    CHECK(cd.mean == Approx(c.at("cider_d").at("mean").get<double>()).epsilon(1e-9).margin(1e-12));
  }
}

TEST_CASE("score_caption reports its object matching", "[eval]") {
  const sc::Scene two = scene_of({object("star", "green", "large", {200, 60, 260, 120}),
                                  object("square", "blue", "small", {20, 70, 60, 110})});
  auto s = sc::score_caption(two, "a small blue square to the left of a large green star");
  CHECK(s.matching == std::vector<int>{1, 0});
  s = sc::score_caption(two, "a small red square to the left of a large green star");  // red: unmatched
  CHECK(s.matching == std::vector<int>{-1, 0});
  s = sc::score_caption(two, "a large green star");
  CHECK(s.matching == std::vector<int>{0});
  s = sc::score_caption(two, "green star");
  CHECK(s.matching.empty());
}

TEST_CASE("attention argmax ignores CLS, averages heads and layers", "[eval]") {
  SyntheticAttention att(/*steps=*/2, /*layers=*/2, /*heads=*/2, /*rows=*/2, /*cols=*/3);
  // Step 0, layer 0: head 0 peaks at (0, 0) with 0.6 but head 1 gives it 0.1 (mean 0.35); (1, 2)
  // gets 0.3 and 0.5 (mean 0.4, the head-averaged maximum though no single head peaks there).
  att.set_cell(0, 0, 0, 0, 0, 0.6f);
  att.set_cell(0, 0, 1, 0, 0, 0.1f);
  att.set_cell(0, 0, 0, 1, 2, 0.3f);
  att.set_cell(0, 0, 1, 1, 2, 0.5f);
  // Step 0, layer 1: a strong peak at (0, 1) in both heads (mean 0.7).
  att.set_cell(0, 1, 0, 0, 1, 0.7f);
  att.set_cell(0, 1, 1, 0, 1, 0.7f);
  CHECK(ev::attention_argmax(att.a, 0, 0) == ev::Cell{1, 2});
  CHECK(ev::attention_argmax(att.a, 0, 1) == ev::Cell{0, 1});
  // Over layers: (0, 1) sums 1.4 + 0.02, (1, 2) 0.8 + 0.02.
  CHECK(ev::attention_argmax(att.a, 0, std::nullopt) == ev::Cell{0, 1});
  // Step 1 is flat: the first cell wins the tie.
  CHECK(ev::attention_argmax(att.a, 1, std::nullopt) == ev::Cell{0, 0});

  CHECK_THROWS_AS(ev::attention_argmax(att.a, 2, 0), xcaption::InputError);
  CHECK_THROWS_AS(ev::attention_argmax(att.a, 0, 2), xcaption::InputError);
  auto bad = att.a;
  bad.encoder_tokens = 6;
  CHECK_THROWS_AS(ev::attention_argmax(bad, 0, 0), xcaption::ShapeError);
  bad = att.a;
  bad.weights.pop_back();
  CHECK_THROWS_AS(ev::attention_argmax(bad, 0, 0), xcaption::ShapeError);
}

TEST_CASE("pointing game geometry on non-square images and the half-cell tolerance", "[eval]") {
  // 300x200 image, 2x3 grid: cells are 100x100; cell (1, 2) is centred at (250, 150).
  auto c = ev::cell_centre({1, 2}, 2, 3, 300, 200);
  CHECK(c[0] == Approx(250.0));
  CHECK(c[1] == Approx(150.0));
  // 400x100 image, 2x2 grid: cells are 200x50; cell (0, 1) is centred at (300, 25).
  c = ev::cell_centre({0, 1}, 2, 2, 400, 100);
  CHECK(c[0] == Approx(300.0));
  CHECK(c[1] == Approx(25.0));

  SyntheticAttention att(1, 1, 1, 2, 2);
  att.set_cell(0, 0, 0, 0, 1, 0.5f);
  // Half a cell = 100 px in x, 25 px in y. The box [150, 200] reaches x = 300 with the tolerance:
  // exactly on the edge is a hit; one pixel less is a miss.
  auto r = ev::point_at(att.a, 0, 0, 400, 100, {150, 0, 200, 10});
  CHECK(r.cell == ev::Cell{0, 1});
  CHECK(r.x == Approx(300.0));
  CHECK(r.y == Approx(25.0));
  CHECK(r.hit);
  CHECK_FALSE(ev::point_at(att.a, 0, 0, 400, 100, {150, 0, 199, 10}).hit);
  // y: the box must come within 25 px of y = 25, i.e. start at y0 <= 50.
  CHECK(ev::point_at(att.a, 0, 0, 400, 100, {250, 50, 260, 60}).hit);
  CHECK_FALSE(ev::point_at(att.a, 0, 0, 400, 100, {250, 51, 260, 60}).hit);
  // Swapping the axes would put the point at (50, 75): this box around (300, 25) only fits the right one.
  CHECK(ev::point_at(att.a, 0, 0, 400, 100, {290, 20, 310, 30}).hit);
  CHECK_FALSE(ev::point_at(att.a, 0, 0, 400, 100, {40, 65, 60, 85}).hit);

  CHECK(ev::point_in_box(10, 10, {10, 10, 20, 20}, 0, 0));
  CHECK(ev::point_in_box(20, 20, {10, 10, 20, 20}, 0, 0));
  CHECK_FALSE(ev::point_in_box(9.99, 15, {10, 10, 20, 20}, 0, 0));
  CHECK(ev::point_in_box(9.99, 15, {10, 10, 20, 20}, 0.01, 0));
}

TEST_CASE("layer choice parsing", "[eval]") {
  CHECK_FALSE(ev::parse_layer_choice("mean").has_value());
  CHECK(ev::parse_layer_choice("3") == std::optional<std::int64_t>(3));
  CHECK(ev::layer_choice_name(std::nullopt) == "mean");
  CHECK(ev::layer_choice_name(2) == "2");
  CHECK_THROWS_AS(ev::parse_layer_choice("-1"), xcaption::InputError);
  CHECK_THROWS_AS(ev::parse_layer_choice("1x"), xcaption::InputError);
  CHECK_THROWS_AS(ev::parse_layer_choice(""), xcaption::InputError);
  CHECK_THROWS_AS(ev::parse_layer_choice("last"), xcaption::InputError);
}

TEST_CASE("align_words finds the step that emitted each word", "[eval]") {
  SECTION("word-level tokens joined by spaces, comma re-attached on decoding") {
    const std::string caption = "a red circle, a blue square";
    const std::vector<std::string> prefixes = {"a",           "a red",          "a red circle",
                                               "a red circle,", "a red circle, a", "a red circle, a blue",
                                               caption,       caption /* end-of-text */};
    const auto words = ev::align_words(caption, prefixes);
    REQUIRE(words.size() == 7);
    const std::vector<std::string> expected_words = {"a", "red", "circle", ",", "a", "blue", "square"};
    for (std::size_t i = 0; i < words.size(); ++i) {
      CHECK(words[i].word == expected_words[i]);
      CHECK(words[i].step == static_cast<std::int64_t>(i));
    }
    CHECK(words[2].begin == 6);
    CHECK(words[2].end == 12);
  }
  SECTION("sub-word tokens: a word belongs to the token of its first character") {
    const std::string caption = "A red circle.";
    const auto words = ev::align_words(caption, {"A", "A red", "A red cir", "A red circle", "A red circle."});
    REQUIRE(words.size() == 3);
    CHECK(words[0].word == "a");
    CHECK(words[2].word == "circle");
    CHECK(words[2].step == 2);
  }
  SECTION("a decoder that re-spaces earlier text") {
    // The prefix "a red circle ," is cleaned to "a red circle," only once more text follows.
    const std::string caption = "a red circle, a star";
    const auto words =
        ev::align_words(caption, {"a", "a red", "a red circle", "a red circle ,", "a red circle, a", caption});
    REQUIRE(words.size() == 6);
    CHECK(words[3].word == ",");
    CHECK(words[3].step == 4);  // the first prefix that agrees up to the comma
    CHECK(words[4].step == 4);
    CHECK(words[5].step == 5);
  }
  SECTION("words with no producing step") {
    const auto words = ev::align_words("a red circle", {"a"});
    REQUIRE(words.size() == 3);
    CHECK(words[0].step == 0);
    CHECK(words[1].step == -1);
  }
}

TEST_CASE("pointing targets pair shape words with matched scene objects", "[eval]") {
  const sc::Scene two = scene_of({object("star", "green", "large", {200, 60, 260, 120}),
                                  object("square", "blue", "small", {20, 70, 60, 110})});
  auto words_of = [](const std::string& caption) {
    // One token per word.
    std::vector<std::string> prefixes;
    std::string text;
    for (const auto& w : ev::tokenize(caption)) {
      text += (text.empty() || w == ",") ? w : " " + w;
      prefixes.push_back(text);
    }
    return ev::align_words(caption, prefixes);
  };
  std::string caption = "a small blue square to the left of a large green star";
  auto targets = ev::pointing_targets(words_of(caption), sc::score_caption(two, caption));
  REQUIRE(targets.size() == 2);
  CHECK(targets[0].word == "square");
  CHECK(targets[0].step == 3);
  CHECK(targets[0].caption_object == 0);
  CHECK(targets[0].scene_object == 1);
  CHECK(targets[1].word == "star");
  CHECK(targets[1].step == 11);
  CHECK(targets[1].scene_object == 0);

  caption = "a small red square to the left of a large green star";  // the square is unmatched
  targets = ev::pointing_targets(words_of(caption), sc::score_caption(two, caption));
  REQUIRE(targets.size() == 1);
  CHECK(targets[0].word == "star");
  CHECK(targets[0].caption_object == 1);

  caption = "a green star star";  // does not parse: nothing counts
  CHECK(ev::pointing_targets(words_of(caption), sc::score_caption(two, caption)).empty());
}

TEST_CASE("play_pointing and the tally over layers", "[eval]") {
  // 300x200 scene, 2x3 grid of 100x100 cells. The star covers cell (0, 2), the square cell (1, 0).
  const sc::Scene two = scene_of({object("star", "green", "large", {210, 10, 290, 90}),
                                  object("square", "blue", "small", {10, 110, 90, 190})});
  SyntheticAttention att(/*steps=*/2, /*layers=*/3, /*heads=*/1, 2, 3);
  // Step 0 ("star"): layers 0 and 1 point at the star, layer 2 at the square.
  att.set_cell(0, 0, 0, 0, 2, 0.5f);
  att.set_cell(0, 1, 0, 0, 2, 0.5f);
  att.set_cell(0, 2, 0, 1, 0, 0.5f);
  // Step 1 ("square"): layer 0 at the star, layers 1 and 2 at the square.
  att.set_cell(1, 0, 0, 0, 2, 0.5f);
  att.set_cell(1, 1, 0, 1, 0, 0.5f);
  att.set_cell(1, 2, 0, 1, 0, 0.5f);
  ev::PointingTarget star{"star", 0, 0, 0}, square{"square", 1, 1, 1};
  const auto t_star = ev::play_pointing(att.a, two, star);
  const auto t_square = ev::play_pointing(att.a, two, square);
  REQUIRE(t_star.per_layer.size() == 3);
  CHECK(t_star.per_layer[0].hit);
  CHECK(t_star.per_layer[1].hit);
  CHECK_FALSE(t_star.per_layer[2].hit);
  CHECK(t_star.mean.hit);
  CHECK(t_star.chosen(std::nullopt).cell == ev::Cell{0, 2});
  CHECK_FALSE(t_square.per_layer[0].hit);
  CHECK(t_square.per_layer[2].hit);
  CHECK(t_square.mean.hit);

  ev::PointingTally tally;
  CHECK(tally.rate(std::nullopt) == 0.0);
  tally.add(t_star);
  tally.add(t_square);
  CHECK(tally.total == 2);
  CHECK(tally.layer_hits == std::vector<std::int64_t>{1, 2, 1});
  CHECK(tally.hits(std::nullopt) == 2);
  CHECK(tally.rate(0) == Approx(0.5));
  CHECK(tally.rate(1) == Approx(1.0));
  CHECK_THROWS_AS(tally.hits(3), xcaption::InputError);

  ev::PointingTarget bad{"star", 0, 0, 5};
  CHECK_THROWS_AS(ev::play_pointing(att.a, two, bad), xcaption::InputError);
}

TEST_CASE("structure summary: micro P/R/F1, relation accuracy over every 2-object scene", "[eval]") {
  const sc::Scene one = scene_of({object("circle", "red", "large", {10, 10, 90, 90})});
  const sc::Scene two = scene_of({object("star", "green", "large", {200, 60, 260, 120}),
                                  object("square", "blue", "small", {20, 70, 60, 110})});
  const sc::Scene three = scene_of({object("star", "green", "small", {200, 60, 240, 100}),
                                    object("cross", "white", "small", {20, 70, 60, 110}),
                                    object("square", "orange", "small", {110, 20, 150, 60})});
  const std::vector<sc::Scene> scenes = {one, two, two, two, three};
  const std::vector<std::string> captions = {
      "a large red circle",                                       // exact; 1/1 matched
      "a small blue square to the left of a large green star",    // exact; relation right; 2/2
      "a large green star to the left of a small blue square",    // relation wrong; 2/2
      "a large green star",                                       // names 1 of 2: relation counts wrong
      "a white cross, an orange square and a purple star"};       // 2 of 3 matched; order wrong
  std::vector<sc::CaptionScore> scores;
  for (std::size_t i = 0; i < scenes.size(); ++i) scores.push_back(sc::score_caption(scenes[i], captions[i]));
  const auto s = ev::summarize_structure(scores);
  CHECK(s.images == 5);
  CHECK(s.parse_rate == Approx(1.0));
  CHECK(s.exact_match == Approx(2.0 / 5));
  CHECK(s.count_accuracy == Approx(4.0 / 5));
  // Caption objects 1+2+2+1+3 = 9, scene objects 1+2+2+2+3 = 10, matched 1+2+2+1+2 = 8.
  CHECK(s.caption_objects == 9);
  CHECK(s.scene_objects == 10);
  CHECK(s.matched_objects == 8);
  CHECK(s.object_precision == Approx(8.0 / 9));
  CHECK(s.object_recall == Approx(8.0 / 10));
  CHECK(s.object_f1 == Approx(2 * (8.0 / 9) * 0.8 / (8.0 / 9 + 0.8)));
  CHECK(s.relation_scenes == 3);
  CHECK(s.relation_accuracy == Approx(1.0 / 3));
  CHECK(s.order_scenes == 1);
  CHECK(s.order_accuracy == 0.0);

  const auto full = ev::summarize(scenes, captions, scores, ev::PointingTally{}, std::nullopt);
  CHECK(full.structure.object_f1 == Approx(s.object_f1));
  CHECK(full.bleu.candidate_length == 4 + 12 + 12 + 4 + 11);
  CHECK(full.cider.per_image.size() == 5);
  CHECK(full.cider.per_image[0] > full.cider.per_image[3]);
  CHECK_THROWS_AS(ev::summarize(scenes, {"a"}, scores, {}, std::nullopt), xcaption::InputError);

  const auto empty = ev::summarize_structure({});
  CHECK(empty.object_f1 == 0.0);
  CHECK(empty.relation_accuracy == 0.0);
}
