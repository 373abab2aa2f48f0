// Tests of the shapes-world renderer, caption grammar, parser and scoring (tag [scenes]).
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include <opencv2/imgcodecs.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/scenes/render.hpp"

namespace sc = xcaption::scenes;
namespace fs = std::filesystem;

namespace {

sc::RenderOptions options_with_seed(std::uint64_t seed) {
  sc::RenderOptions o;
  o.seed = seed;
  return o;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A unique scratch directory under the system temp dir, removed on destruction.
using xcaption::test::TempDir;

int max_channel_diff(const cv::Vec3b& a, const cv::Vec3b& b) {
  int d = 0;
  for (int c = 0; c < 3; ++c) d = std::max(d, std::abs(int(a[c]) - int(b[c])));
  return d;
}

sc::SceneObject object(const char* shape, const char* color, const char* size, double cx, double cy) {
  sc::SceneObject o;
  o.shape = shape;
  o.color = color;
  o.size = size;
  o.center = {cx, cy};
  o.bbox = {int(cx) - 5, int(cy) - 5, int(cx) + 5, int(cy) + 5};
  return o;
}

sc::Scene scene_of(std::vector<sc::SceneObject> objects) {
  sc::Scene s;
  s.file = "x.png";
  s.width = s.height = 200;
  s.objects = std::move(objects);
  s.captions = sc::captions_for(s.objects);
  return s;
}

}  // namespace

TEST_CASE("integer sine table and PRNG helpers", "[scenes]") {
  namespace d = sc::detail;
  for (int deg = -400; deg <= 400; deg += 7) {
    const double expected_sin = std::sin(deg * M_PI / 180.0), expected_cos = std::cos(deg * M_PI / 180.0);
    CHECK(std::abs(double(d::isin_deg(deg)) / d::kTrigOne - expected_sin) < 1e-9);
    CHECK(std::abs(double(d::icos_deg(deg)) / d::kTrigOne - expected_cos) < 1e-9);
  }
  d::Rng rng(d::stream_seed(1, 0, 0));
  std::map<std::int64_t, int> hist;
  for (int i = 0; i < 7000; ++i) {
    const auto v = rng.uniform_int(-3, 3);
    REQUIRE(v >= -3);
    REQUIRE(v <= 3);
    ++hist[v];
  }
  CHECK(hist.size() == 7);
  for (auto [v, n] : hist) CHECK(std::abs(n - 1000) < 150);
  CHECK(d::stream_seed(1, 0, 0) != d::stream_seed(1, 0, 1));
  CHECK(d::stream_seed(1, 0, 0) != d::stream_seed(1, 1, 0));
  CHECK(d::stream_seed(1, 0, 0) != d::stream_seed(2, 0, 0));
}

TEST_CASE("same seed and index give identical scenes and pixels; other seeds differ", "[scenes]") {
  const auto options = options_with_seed(42);
  for (std::int64_t index : {0, 1, 17, 999}) {
    cv::Mat a, b;
    const sc::Scene sa = sc::make_scene_mat(options, index, &a);
    const sc::Scene sb = sc::make_scene_mat(options, index, &b);
    REQUIRE(sc::scene_to_json(sa) == sc::scene_to_json(sb));
    REQUIRE(a.size() == b.size());
    CHECK(cv::norm(a, b, cv::NORM_INF) == 0);
    // The OpenCV-free entry point returns the same scene and the same bytes.
    sc::SceneImage img;
    const sc::Scene sc_ = sc::make_scene(options, index, &img);
    CHECK(sc::scene_to_json(sc_) == sc::scene_to_json(sa));
    REQUIRE(img.width == a.cols);
    REQUIRE(img.height == a.rows);
    CHECK(std::equal(img.bgr.begin(), img.bgr.end(), a.ptr<std::uint8_t>(0)));
    // Without an image the description is identical.
    CHECK(sc::scene_to_json(sc::make_scene(options, index)) == sc::scene_to_json(sa));
  }
  int differing = 0;
  for (std::int64_t index = 0; index < 10; ++index)
    differing += sc::scene_to_json(sc::make_scene(options_with_seed(1), index)) !=
                 sc::scene_to_json(sc::make_scene(options_with_seed(2), index));
  CHECK(differing == 10);
  // Consecutive indices of one seed differ too.
  CHECK(sc::scene_to_json(sc::make_scene(options, 5)) != sc::scene_to_json(sc::make_scene(options, 6)));
}

TEST_CASE("jpeg_probability changes pixels but not the layout", "[scenes]") {
  auto never = options_with_seed(9), always = options_with_seed(9);
  never.jpeg_probability = 0.0;
  always.jpeg_probability = 1.0;
  int pixel_differences = 0;
  for (std::int64_t index = 0; index < 5; ++index) {
    cv::Mat a, b;
    const sc::Scene sa = sc::make_scene_mat(never, index, &a);
    const sc::Scene sb = sc::make_scene_mat(always, index, &b);
    CHECK(sc::scene_to_json(sa) == sc::scene_to_json(sb));
    pixel_differences += cv::norm(a, b, cv::NORM_INF) > 0;
    // JPEG at quality >= 60 keeps the image close to the original.
    CHECK(cv::norm(a, b, cv::NORM_L1) / (a.total() * 3) < 4.0);
  }
  CHECK(pixel_differences == 5);
}

TEST_CASE("canvas sizes, borders and non-overlapping objects over 500 scenes", "[scenes]") {
  const auto options = options_with_seed(3);
  for (std::int64_t index = 0; index < 500; ++index) {
    const sc::Scene s = sc::make_scene(options, index);
    INFO("scene " << index << ": " << sc::scene_to_json(s));
    REQUIRE(s.width >= 96);
    REQUIRE(s.width <= 320);
    REQUIRE(s.height >= 96);
    REQUIRE(s.height <= 320);
    REQUIRE(std::max(s.width, s.height) * 4 <= std::min(s.width, s.height) * 5);
    REQUIRE(s.objects.size() >= 1);
    REQUIRE(s.objects.size() <= 3);
    for (std::size_t i = 0; i < s.objects.size(); ++i) {
      const auto& a = s.objects[i];
      REQUIRE(a.bbox[0] >= 0);
      REQUIRE(a.bbox[1] >= 0);
      REQUIRE(a.bbox[2] <= s.width);
      REQUIRE(a.bbox[3] <= s.height);
      REQUIRE(a.bbox[0] < a.bbox[2]);
      REQUIRE(a.bbox[1] < a.bbox[3]);
      CHECK(a.center[0] > a.bbox[0]);
      CHECK(a.center[0] < a.bbox[2]);
      CHECK(a.center[1] > a.bbox[1]);
      CHECK(a.center[1] < a.bbox[3]);
      // Size classes are clearly apart in the squashed square image the model sees: the larger of
      // box width / canvas width and box height / canvas height (the box has a 3 px rim per side).
      const double extent = std::max(double(a.bbox[2] - a.bbox[0] - 6) / s.width,
                                     double(a.bbox[3] - a.bbox[1] - 6) / s.height);
      if (a.size == "small") {
        CHECK(extent > 0.135);
        CHECK(extent < 0.215);
      } else {
        CHECK(extent > 0.285);
        CHECK(extent < 0.395);
      }
      for (std::size_t j = i + 1; j < s.objects.size(); ++j) {
        const auto& b = s.objects[j];
        const bool apart = a.bbox[2] + 3 <= b.bbox[0] || b.bbox[2] + 3 <= a.bbox[0] || a.bbox[3] + 3 <= b.bbox[1] ||
                           b.bbox[3] + 3 <= a.bbox[1];
        REQUIRE(apart);
      }
    }
  }
}

TEST_CASE("bounding boxes contain every drawn pixel and objects stand out at their centre", "[scenes]") {
  namespace d = sc::detail;
  const auto options = options_with_seed(11);
  for (std::int64_t index = 0; index < 300; ++index) {
    const d::Layout layout = d::make_layout(options, index);
    const sc::Scene& s = layout.scene;
    INFO("scene " << index << ": " << sc::scene_to_json(s));
    const cv::Mat background = d::render_layout(layout, {false, false, false});
    const cv::Mat clean = d::render_layout(layout, {true, false, false});
    const cv::Mat full = d::render_layout(layout, {true, true, true});
    auto distance_to_boxes = [&](int x, int y) {
      int best = 1 << 20;
      for (const auto& o : s.objects) {
        const int dx = std::max({o.bbox[0] - x, 0, x - (o.bbox[2] - 1)});
        const int dy = std::max({o.bbox[1] - y, 0, y - (o.bbox[3] - 1)});
        best = std::min(best, std::max(dx, dy));
      }
      return best;
    };
    double far_diff = 0;
    int far_count = 0, touched_outside = 0, noisy_outside = 0;
    for (int y = 0; y < s.height; ++y)
      for (int x = 0; x < s.width; ++x) {
        const int dist = distance_to_boxes(x, y);
        if (dist > 0) {
          // Outside every box, objects changed nothing.
          touched_outside += background.at<cv::Vec3b>(y, x) != clean.at<cv::Vec3b>(y, x);
          if (dist >= 8) {
            const int diff = max_channel_diff(background.at<cv::Vec3b>(y, x), full.at<cv::Vec3b>(y, x));
            noisy_outside += !layout.jpeg && diff > layout.noise_amplitude;
            far_diff += diff;
            ++far_count;
          }
        }
      }
    REQUIRE(touched_outside == 0);
    REQUIRE(noisy_outside == 0);
    if (far_count > 0) CHECK(far_diff / far_count < 8.0);  // background-ish even after JPEG
    for (std::size_t k = 0; k < s.objects.size(); ++k) {
      const auto& o = s.objects[k];
      const int cx = int(std::lround(o.center[0])), cy = int(std::lround(o.center[1]));
      const cv::Scalar& fill = layout.geometry[k].bgr;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const cv::Vec3b px = clean.at<cv::Vec3b>(cy + dy, cx + dx);
          for (int c = 0; c < 3; ++c) REQUIRE(int(px[c]) == int(fill[c]));
          CHECK(max_channel_diff(px, background.at<cv::Vec3b>(cy + dy, cx + dx)) >= 40);
        }
      // Every side of the box is reached by the object (the box is not loose by more than the rim).
      int min_x = s.width, max_x = -1, min_y = s.height, max_y = -1;
      for (int y = o.bbox[1]; y < o.bbox[3]; ++y)
        for (int x = o.bbox[0]; x < o.bbox[2]; ++x)
          if (clean.at<cv::Vec3b>(y, x) != background.at<cv::Vec3b>(y, x)) {
            min_x = std::min(min_x, x);
            max_x = std::max(max_x, x);
            min_y = std::min(min_y, y);
            max_y = std::max(max_y, y);
          }
      CHECK(min_x - o.bbox[0] <= 3);
      CHECK(o.bbox[2] - 1 - max_x <= 3);
      CHECK(min_y - o.bbox[1] <= 3);
      CHECK(o.bbox[3] - 1 - max_y <= 3);
    }
  }
}

TEST_CASE("background is a neutral mid-tone", "[scenes]") {
  namespace d = sc::detail;
  const auto options = options_with_seed(5);
  for (std::int64_t index = 0; index < 100; ++index) {
    const d::Layout layout = d::make_layout(options, index);
    const cv::Mat bg = d::render_layout(layout, {false, false, false});
    int lo = 255, hi = 0, chroma = 0;
    for (int y = 0; y < bg.rows; ++y)
      for (int x = 0; x < bg.cols; ++x) {
        const cv::Vec3b p = bg.at<cv::Vec3b>(y, x);
        const int p_lo = std::min({p[0], p[1], p[2]}), p_hi = std::max({p[0], p[1], p[2]});
        chroma = std::max(chroma, p_hi - p_lo);
        lo = std::min(lo, p_lo);
        hi = std::max(hi, p_hi);
      }
    INFO("scene " << index);
    CHECK(chroma <= 25);  // nearly gray
    CHECK(lo >= 75);      // never near black
    CHECK(hi <= 200);     // never near white
  }
}

TEST_CASE("object counts follow the options", "[scenes]") {
  std::map<std::size_t, int> hist;
  const auto options = options_with_seed(8);
  for (std::int64_t index = 0; index < 900; ++index) ++hist[sc::make_scene(options, index).objects.size()];
  CHECK(hist.size() == 3);
  for (auto [n, count] : hist) {
    INFO("objects " << n);
    CHECK(std::abs(count - 300) < 75);
  }
  auto two = options;
  two.min_objects = two.max_objects = 2;
  for (std::int64_t index = 0; index < 50; ++index) CHECK(sc::make_scene(two, index).objects.size() == 2);
  // Shapes, colours and sizes all occur.
  std::set<std::string> seen;
  for (std::int64_t index = 0; index < 300; ++index)
    for (const auto& o : sc::make_scene(options, index).objects) seen.insert(o.shape + "/" + o.color + "/" + o.size);
  CHECK(seen.size() > 80);  // of 96 combinations

  auto bad = options;
  bad.min_objects = 0;
  CHECK_THROWS_AS(sc::make_scene(bad, 0), xcaption::InputError);
  bad = options;
  bad.max_objects = 4;
  CHECK_THROWS_AS(sc::make_scene(bad, 0), xcaption::InputError);
  bad = options;
  bad.min_objects = 3;
  bad.max_objects = 2;
  CHECK_THROWS_AS(sc::make_scene(bad, 0), xcaption::InputError);
  bad = options;
  bad.jpeg_probability = 1.5;
  CHECK_THROWS_AS(sc::make_scene(bad, 0), xcaption::InputError);
  CHECK_THROWS_AS(sc::make_scene(options, -1), xcaption::InputError);
}

TEST_CASE("two-object captions state the relation of the centres, left or top object first", "[scenes]") {
  auto options = options_with_seed(21);
  options.min_objects = options.max_objects = 2;
  for (std::int64_t index = 0; index < 300; ++index) {
    const sc::Scene s = sc::make_scene(options, index);
    INFO(sc::scene_to_json(s));
    REQUIRE(s.captions.size() == 2);
    const auto& a = s.objects[0];
    const auto& b = s.objects[1];
    const double dx = std::abs(a.center[0] - b.center[0]), dy = std::abs(a.center[1] - b.center[1]);
    const bool horizontal = dx > dy;
    // Unambiguous dominant axis, in pixels and after squashing the canvas to a square.
    CHECK(std::max(dx, dy) >= 1.3 * std::min(dx, dy));
    const double ndx = dx / s.width, ndy = dy / s.height;
    CHECK((ndx > ndy) == horizontal);
    CHECK(std::max(ndx, ndy) >= 1.3 * std::min(ndx, ndy));
    const auto& first = horizontal ? (a.center[0] < b.center[0] ? a : b) : (a.center[1] < b.center[1] ? a : b);
    const auto& second = &first == &a ? b : a;
    // Two-object captions always carry sizes, so the article is always "a".
    auto describe = [](const sc::SceneObject& o) { return "a " + o.size + " " + o.color + " " + o.shape; };
    const std::string rel = horizontal ? "to the left of" : "above";
    const std::string inverse = horizontal ? "to the right of" : "below";
    CHECK(s.captions[0] == describe(first) + " " + rel + " " + describe(second));
    CHECK(s.captions[1] == describe(second) + " " + inverse + " " + describe(first));
  }
}

TEST_CASE("three-object captions name objects left to right with distinguishing sizes", "[scenes]") {
  auto options = options_with_seed(22);
  options.min_objects = options.max_objects = 3;
  int with_sizes = 0;
  for (std::int64_t index = 0; index < 300; ++index) {
    const sc::Scene s = sc::make_scene(options, index);
    INFO(sc::scene_to_json(s));
    REQUIRE(s.captions.size() == 1);
    std::vector<sc::SceneObject> sorted = s.objects;
    std::sort(sorted.begin(), sorted.end(), [](const auto& l, const auto& r) { return l.center[0] < r.center[0]; });
    for (std::size_t i = 0; i + 1 < sorted.size(); ++i)
      CHECK(sorted[i + 1].center[0] - sorted[i].center[0] >= 0.12 * s.width - 1e-9);
    const bool mixed = !(sorted[0].size == sorted[1].size && sorted[1].size == sorted[2].size);
    with_sizes += mixed;
    auto describe = [&](const sc::SceneObject& o) {
      const std::string body = mixed ? o.size + " " + o.color + " " + o.shape : o.color + " " + o.shape;
      return std::string(body.rfind("orange", 0) == 0 ? "an " : "a ") + body;
    };
    CHECK(s.captions[0] == describe(sorted[0]) + ", " + describe(sorted[1]) + " and " + describe(sorted[2]));
  }
  CHECK(with_sizes > 150);
  CHECK(with_sizes < 300);
}

TEST_CASE("parse_caption round-trips every generated caption and scoring accepts it", "[scenes]") {
  const auto options = options_with_seed(31);
  const auto vocab = sc::vocabulary();
  const std::set<std::string> vocab_set(vocab.begin(), vocab.end());
  CHECK(vocab_set.size() == vocab.size());
  std::set<std::string> used;
  for (std::int64_t index = 0; index < 500; ++index) {
    const sc::Scene s = sc::make_scene(options, index);
    for (const auto& caption : s.captions) {
      INFO(caption);
      const sc::ParsedCaption p = sc::parse_caption(caption);
      REQUIRE(p.ok);
      REQUIRE(p.objects.size() == s.objects.size());
      CHECK(sc::normalize_caption(caption) == caption);
      CHECK(caption == [&] {  // lower case, no final period
        std::string t = caption;
        std::transform(t.begin(), t.end(), t.begin(), ::tolower);
        return t;
      }());
      CHECK(caption.back() != '.');
      // Every parsed object is in the scene (multiset).
      std::vector<bool> taken(s.objects.size(), false);
      for (const auto& po : p.objects) {
        bool found = false;
        for (std::size_t j = 0; j < s.objects.size() && !found; ++j)
          if (!taken[j] && s.objects[j].shape == po.shape && s.objects[j].color == po.color &&
              (po.size.empty() || po.size == s.objects[j].size))
            taken[j] = found = true;
        CHECK(found);
      }
      CHECK(p.relation.empty() == (s.objects.size() != 2));
      std::string text = caption;
      for (auto pos = text.find(','); pos != std::string::npos; pos = text.find(',', pos + 2)) text.insert(pos, " ");
      for (const auto& w : split_words(text)) {
        CHECK(vocab_set.count(w) == 1);
        used.insert(w);
      }
      const sc::CaptionScore score = sc::score_caption(s, caption);
      CHECK(score.parsed);
      CHECK(score.count_correct);
      CHECK(score.all_matched);
      CHECK(score.exact_match);
      CHECK(score.fully_correct);
    }
  }
  CHECK(used == vocab_set);  // the vocabulary has no word the generator never emits
}

TEST_CASE("parse_caption tolerates decoder spacing and case but rejects text outside the grammar", "[scenes]") {
  auto p = sc::parse_caption("  A Large  RED circle , an orange square and a blue star.  ");
  REQUIRE(p.ok);
  REQUIRE(p.objects.size() == 3);
  CHECK(p.objects[0].size == "large");
  CHECK(p.objects[0].color == "red");
  CHECK(p.objects[0].shape == "circle");
  CHECK(p.objects[1].size.empty());
  CHECK(p.objects[1].color == "orange");
  CHECK(p.objects[2].shape == "star");
  CHECK(sc::normalize_caption("  A Large  RED circle , an orange square and a blue star.  ") ==
        "a large red circle, an orange square and a blue star");

  p = sc::parse_caption("a small blue square to the right of a large yellow star");
  REQUIRE(p.ok);
  CHECK(p.relation == "right of");
  CHECK(p.objects[1].shape == "star");
  CHECK(sc::parse_caption("a red cross above a black diamond").relation == "above");
  CHECK(sc::parse_caption("a red cross below a black diamond").relation == "below");
  CHECK(sc::parse_caption("a red cross to the left of a black diamond").relation == "left of");

  for (const char* bad : {"", "a", "a red", "red circle", "a circle", "a red circle circle", "a large red",
                          "a huge red circle", "a red circle and a blue square", "a red circle, a blue square",
                          "a red circle, a blue square and", "a red circle to the left a blue square",
                          "a red circle near a blue square", "a red circle above", "a red circle, a blue square, a green star",
                          "a red circle above a blue square above a green star", "the red circle", "a pink circle",
                          "a red hexagon", "a red circle.." , "<|endoftext|>", "a small small red circle",
                          "a red circle , , a blue square and a green star"}) {
    INFO("'" << bad << "'");
    const auto r = sc::parse_caption(bad);
    CHECK_FALSE(r.ok);
    CHECK(r.objects.empty());
  }
}

TEST_CASE("score_caption counts matches, relation and order", "[scenes]") {
  const sc::Scene two = scene_of({object("circle", "red", "large", 40, 100), object("star", "blue", "small", 150, 90)});
  REQUIRE(two.captions[0] == "a large red circle to the left of a small blue star");

  auto s = sc::score_caption(two, "a large red circle to the left of a small blue star");
  CHECK(s.fully_correct);
  CHECK(*s.relation_correct);
  s = sc::score_caption(two, "a small blue star to the right of a large red circle");
  CHECK(s.fully_correct);
  CHECK(s.exact_match);
  s = sc::score_caption(two, "a red circle to the left of a blue star");  // sizes omitted: not checked
  CHECK(s.fully_correct);
  CHECK_FALSE(s.exact_match);
  CHECK(s.sizes_given == 0);
  s = sc::score_caption(two, "a large red circle to the right of a small blue star");  // wrong relation
  CHECK(s.all_matched);
  CHECK_FALSE(*s.relation_correct);
  CHECK_FALSE(s.fully_correct);
  s = sc::score_caption(two, "a large red circle above a small blue star");  // wrong axis
  CHECK_FALSE(*s.relation_correct);
  s = sc::score_caption(two, "a small red circle to the left of a small blue star");  // wrong size
  CHECK(s.matched_objects == 1);
  CHECK_FALSE(s.all_matched);
  CHECK_FALSE(*s.relation_correct);
  s = sc::score_caption(two, "a large red circle");  // wrong count
  CHECK(s.parsed);
  CHECK_FALSE(s.count_correct);
  CHECK(s.matched_objects == 1);
  CHECK_FALSE(s.relation_correct.has_value());
  s = sc::score_caption(two, "a blue and red thing");
  CHECK_FALSE(s.parsed);
  CHECK(s.matched_objects == 0);
  CHECK(s.caption_objects == 0);

  // Duplicates: two large red circles; the matching that makes the relation true is preferred.
  const sc::Scene dup = scene_of({object("circle", "red", "large", 150, 50), object("circle", "red", "small", 40, 60)});
  CHECK(dup.captions[0] == "a small red circle to the left of a large red circle");
  s = sc::score_caption(dup, "a red circle to the left of a red circle");
  CHECK(s.fully_correct);
  s = sc::score_caption(dup, "a large red circle to the left of a small red circle");
  CHECK(s.all_matched);
  CHECK_FALSE(*s.relation_correct);

  const sc::Scene three = scene_of({object("star", "green", "small", 150, 50), object("cross", "white", "small", 30, 60),
                                    object("square", "orange", "small", 90, 160)});
  REQUIRE(three.captions[0] == "a white cross, an orange square and a green star");
  s = sc::score_caption(three, "a white cross, an orange square and a green star");
  CHECK(*s.order_correct);
  CHECK(s.fully_correct);
  s = sc::score_caption(three, "a green star, an orange square and a white cross");
  CHECK(s.all_matched);
  CHECK_FALSE(*s.order_correct);
  s = sc::score_caption(three, "a white cross, a purple square and a green star");
  CHECK(s.matched_objects == 2);
  CHECK_FALSE(*s.order_correct);
  s = sc::score_caption(three, "a large white cross, a small orange square and a small green star");
  CHECK(s.matched_objects == 2);

  const auto summary = sc::summarize_scores({sc::score_caption(two, two.captions[0]),
                                             sc::score_caption(two, "a large red circle above a small blue star"),
                                             sc::score_caption(three, "garbage")});
  CHECK(summary.count == 3);
  CHECK(summary.parse_rate == Approx(2.0 / 3));
  CHECK(summary.relation_count == 2);
  CHECK(summary.relation_accuracy == Approx(0.5));
  CHECK(summary.object_recall == Approx(4.0 / 7));
  CHECK(summary.object_precision == Approx(1.0));
  CHECK(summary.fully_correct_rate == Approx(1.0 / 3));
}

TEST_CASE("render_scenes writes PNGs and a JSONL that reads back", "[scenes]") {
  TempDir dir;
  sc::RenderOptions options = options_with_seed(77);
  options.count = 12;
  options.start_index = 5;
  options.jpeg_probability = 0.5;
  std::vector<std::pair<std::int64_t, std::int64_t>> calls;
  sc::render_scenes(options, dir.path / "out", [&](std::int64_t done, std::int64_t total) { calls.emplace_back(done, total); });
  REQUIRE_FALSE(calls.empty());
  CHECK(calls.back() == std::pair<std::int64_t, std::int64_t>{12, 12});

  const auto scenes = sc::read_scenes_jsonl(dir.path / "out" / "scenes.jsonl");
  REQUIRE(scenes.size() == 12);
  int pngs = 0;
  for (const auto& entry : fs::directory_iterator(dir.path / "out")) {
    pngs += entry.path().extension() == ".png";
    CHECK(entry.path().extension() != ".tmp");
  }
  CHECK(pngs == 12);
  for (std::size_t k = 0; k < scenes.size(); ++k) {
    cv::Mat expected;
    const sc::Scene reference = sc::make_scene_mat(options, options.start_index + std::int64_t(k), &expected);
    CHECK(scenes[k].file == sc::scene_file_name(options.start_index + std::int64_t(k)));
    CHECK(sc::scene_to_json(scenes[k]) == sc::scene_to_json(reference));
    const cv::Mat png = cv::imread((dir.path / "out" / scenes[k].file).string(), cv::IMREAD_COLOR);
    REQUIRE(png.size() == expected.size());
    CHECK(cv::norm(png, expected, cv::NORM_INF) == 0);
  }
  CHECK(sc::scene_file_name(5) == "scene_000005.png");

  options.count = -1;
  CHECK_THROWS_AS(sc::render_scenes(options, dir.path / "bad"), xcaption::InputError);
  options.count = 1;
  std::ofstream(dir.path / "file") << "x";
  CHECK_THROWS_AS(sc::render_scenes(options, dir.path / "file" / "sub"), xcaption::FormatError);
}

TEST_CASE("read_scenes_jsonl names the file and line of a malformed entry", "[scenes]") {
  TempDir dir;
  const sc::Scene good = sc::make_scene(options_with_seed(1), 0);
  const std::string good_line = sc::scene_to_json(good);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.path / name) << text;
    return dir.path / name;
  };
  auto expect_error = [&](const fs::path& path, const std::string& fragment) {
    try {
      sc::read_scenes_jsonl(path);
      FAIL("no error for " << path);
    } catch (const xcaption::FormatError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find(path.string()) != std::string::npos);
      CHECK(what.find(fragment) != std::string::npos);
    }
  };
  CHECK(sc::read_scenes_jsonl(write("ok.jsonl", good_line + "\n\n" + good_line + "\n")).size() == 2);
  expect_error(write("syntax.jsonl", good_line + "\n" + good_line + "\n{\"file\": oops}\n"), ":3: invalid JSON");
  std::string no_captions = good_line.substr(0, good_line.find(",\"captions\"")) + "}";
  expect_error(write("missing.jsonl", no_captions + "\n"), ":1: missing key 'captions'");
  std::string hexagon = good_line;
  hexagon.replace(hexagon.find(good.objects[0].shape), good.objects[0].shape.size(), "hexagon");
  expect_error(write("word.jsonl", "\n" + hexagon + "\n"), ":2: 'shape' has unknown value 'hexagon'");
  expect_error(write("array.jsonl", "[1, 2]\n"), ":1: expected a JSON object");
  expect_error(dir.path / "absent.jsonl", "cannot open");
}
