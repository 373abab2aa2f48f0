// Attention maps, rollout, upsampling geometry, overlays, token labels, panel grids and atomic PNG
// writes (include/xcaption/viz.hpp).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/tokenizer/tokenizer.hpp"
#include "src/viz/files.hpp"
#include "tests/e2e/cli_runner.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace xcaption;
using namespace xcaption::viz;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;

// A capture with `layers` x `heads` distributions over CLS + rows x cols patches, one step.
CrossAttention make_attention(int layers, int heads, int rows, int cols, std::vector<std::vector<float>> dists,
                              int steps = 1) {
  CrossAttention a;
  a.steps = steps;
  a.layers = layers;
  a.heads = heads;
  a.grid_rows = rows;
  a.grid_cols = cols;
  a.encoder_tokens = 1 + rows * cols;
  for (const auto& d : dists) {
    REQUIRE(d.size() == static_cast<std::size_t>(a.encoder_tokens));
    a.weights.insert(a.weights.end(), d.begin(), d.end());
  }
  REQUIRE(a.weights.size() == static_cast<std::size_t>(steps * layers * heads * a.encoder_tokens));
  return a;
}

double sum(const AttentionMap& m) { return std::accumulate(m.values.begin(), m.values.end(), 0.0); }

RgbImage gray_image(int w, int h, std::uint8_t v) {
  RgbImage img;
  img.width = w;
  img.height = h;
  img.data.assign(static_cast<std::size_t>(w) * h * 3, v);
  return img;
}

std::pair<int, int> argmax_xy(const std::vector<float>& v, int width) {
  const auto i = static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
  return {i % width, i / width};
}

}  // namespace

TEST_CASE("token_map selects layers and heads, drops CLS and renormalises", "[viz]") {
  // 2 layers x 2 heads over CLS + a 1 x 3 grid.
  const auto a = make_attention(2, 2, 1, 3,
                                {{0.4f, 0.3f, 0.2f, 0.1f},    // layer 0 head 0
                                 {0.0f, 0.1f, 0.1f, 0.8f},    // layer 0 head 1
                                 {0.5f, 0.0f, 0.5f, 0.0f},    // layer 1 head 0
                                 {0.2f, 0.2f, 0.2f, 0.4f}});  // layer 1 head 1
  SECTION("one layer, one head") {
    const auto m = token_map(a, 0, {.layer = 0, .head = 0});
    REQUIRE(m.rows == 1);
    REQUIRE(m.cols == 3);
    CHECK(m.at(0, 0) == Approx(0.5));  // 0.3 / 0.6
    CHECK(m.at(0, 1) == Approx(2.0 / 6));
    CHECK(m.at(0, 2) == Approx(1.0 / 6));
  }
  SECTION("one layer, head mean") {
    // mean of heads: CLS 0.2, patches 0.2, 0.15, 0.45 -> / 0.8
    const auto m = token_map(a, 0, {.layer = 0});
    CHECK(m.at(0, 0) == Approx(0.25));
    CHECK(m.at(0, 1) == Approx(0.1875));
    CHECK(m.at(0, 2) == Approx(0.5625));
  }
  SECTION("mean over layers and heads") {
    // patches: (0.3+0.1+0+0.2)/4 = 0.15, (0.2+0.1+0.5+0.2)/4 = 0.25, (0.1+0.8+0+0.4)/4 = 0.325
    const auto m = token_map(a, 0, {});
    const double s = 0.15 + 0.25 + 0.325;
    CHECK(m.at(0, 0) == Approx(0.15 / s));
    CHECK(m.at(0, 1) == Approx(0.25 / s));
    CHECK(m.at(0, 2) == Approx(0.325 / s));
    CHECK(sum(m) == Approx(1.0));
  }
  SECTION("head 1 of the layer mean") {
    // (0.1+0.2)/2, (0.1+0.2)/2, (0.8+0.4)/2 -> 0.15, 0.15, 0.6 over 0.9
    const auto m = token_map(a, 0, {.head = 1});
    CHECK(m.at(0, 0) == Approx(0.15 / 0.9));
    CHECK(m.at(0, 2) == Approx(0.6 / 0.9));
  }
  SECTION("all mass on CLS gives a uniform map") {
    const auto b = make_attention(1, 1, 2, 2, {{1.0f, 0.0f, 0.0f, 0.0f, 0.0f}});
    const auto m = token_map(b, 0);
    for (float v : m.values) CHECK(v == Approx(0.25));
  }
}

TEST_CASE("rollout weighs layer l by 2^(l-1) / (2^L - 1): hand-computed cases", "[viz]") {
  SECTION("two layers") {
    // a1 = [CLS 0.2 | 0.6 0.2], a2 = [0.5 | 0.1 0.4]. Flow from the output: layer 2 sends 1/2 to
    // the image through a2 and 1/2 down; layer 1 sends 1/4 through a1 (and 1/4 to the embedding).
    // Image flow: 1/4 a1 + 1/2 a2 = [0.3 | 0.2 0.25]; patches renormalised: [0.2 0.25] / 0.45.
    const auto a = make_attention(2, 1, 1, 2, {{0.2f, 0.6f, 0.2f}, {0.5f, 0.1f, 0.4f}});
    const auto m = token_map(a, 0, {.rollout = true});
    CHECK(m.at(0, 0) == Approx(0.2 / 0.45));
    CHECK(m.at(0, 1) == Approx(0.25 / 0.45));
    // Not the plain mean: (0.6 + 0.1) / 2 vs (0.2 + 0.4) / 2 gives 0.35 / 0.65 for the first patch.
    CHECK(token_map(a, 0).at(0, 0) == Approx(0.35 / 0.65));
  }
  SECTION("three layers, two heads (head mean per layer)") {
    // Layer means over heads: m1 = [0 | 1 0 0], m2 = [0 | 0 1 0], m3 = [0 | 0 0 1] built from
    // two heads each. Rollout = (1 m1 + 2 m2 + 4 m3) / 7.
    const auto a = make_attention(3, 2, 1, 3,
                                  {{0, 1, 0, 0}, {0, 1, 0, 0},
                                   {0, 0, 0.5f, 0.5f}, {0, 0, 1.5f, -0.5f},  // mean [0 1 0]; exercised linearly
                                   {0, 0, 0, 1}, {0, 0, 0, 1}});
    const auto m = token_map(a, 0, {.rollout = true});
    CHECK(m.at(0, 0) == Approx(1.0 / 7));
    CHECK(m.at(0, 1) == Approx(2.0 / 7));
    CHECK(m.at(0, 2) == Approx(4.0 / 7));
    // With head 0 only: layer 2 is [0 0.5 0.5], so (1, 2*0.5, 2*0.5 + 4) / 7.
    const auto h0 = token_map(a, 0, {.head = 0, .rollout = true});
    CHECK(h0.at(0, 0) == Approx(1.0 / 7));
    CHECK(h0.at(0, 1) == Approx(1.0 / 7));
    CHECK(h0.at(0, 2) == Approx(5.0 / 7));
  }
}

TEST_CASE("token_map rejects bad requests with complete messages", "[viz]") {
  const auto a = make_attention(2, 2, 1, 1, {{0.5f, 0.5f}, {0.5f, 0.5f}, {0.5f, 0.5f}, {0.5f, 0.5f}});
  CHECK_THROWS_AS(token_map(a, 0, {.layer = 2}), InputError);
  CHECK_THROWS_WITH(token_map(a, 0, {.layer = 2}), Catch::Contains("layer 2 out of range") && Catch::Contains("2 layers"));
  CHECK_THROWS_AS(token_map(a, 0, {.head = -1}), InputError);
  CHECK_THROWS_AS(token_map(a, 1), InputError);
  CHECK_THROWS_AS(token_map(a, 0, {.layer = 0, .rollout = true}), InputError);
  CHECK_THROWS_WITH(token_maps(CrossAttention{}), Catch::Contains("capture_cross_attention"));
  auto bad = a;
  bad.encoder_tokens = 3;
  CHECK_THROWS_AS(token_map(bad, 0), ShapeError);
  bad = a;
  bad.weights.pop_back();
  CHECK_THROWS_AS(token_map(bad, 0), ShapeError);
}

TEST_CASE("token_map reads the grid from grid_offset on, ignoring tokens outside it", "[viz]") {
  // Tokens: grid cells 0..3 first, then two tokens that cover no cell (a layout with the grid
  // first, as opposed to a ViT's CLS at 0).
  CrossAttention a;
  a.steps = a.layers = a.heads = 1;
  a.grid_rows = a.grid_cols = 2;
  a.grid_offset = 0;
  a.encoder_tokens = 6;
  a.weights = {0.1f, 0.2f, 0.3f, 0.0f, 0.25f, 0.15f};
  const auto m = token_map(a, 0);
  CHECK(m.at(0, 0) == Approx(0.1 / 0.6));
  CHECK(m.at(1, 0) == Approx(0.3 / 0.6));
  CHECK(m.at(1, 1) == 0.0f);
  a.grid_offset = 3;  // 3 + 4 cells > 6 tokens
  CHECK_THROWS_AS(token_map(a, 0), ShapeError);
}

TEST_CASE("mean_map averages and renormalises maps of one grid", "[viz]") {
  AttentionMap p{1, 2, {1.0f, 0.0f}}, q{1, 2, {0.25f, 0.75f}};
  const AttentionMap maps[] = {p, q};
  const auto m = mean_map(maps);
  CHECK(m.at(0, 0) == Approx(0.625));
  CHECK(m.at(0, 1) == Approx(0.375));
  const AttentionMap mixed[] = {p, AttentionMap{2, 1, {0.5f, 0.5f}}};
  CHECK_THROWS_AS(mean_map(mixed), ShapeError);
  CHECK_THROWS_AS(mean_map({}), InputError);
}

TEST_CASE("upsampled heat peaks inside the heaviest patch at the original, non-square resolution", "[viz]") {
  struct Case {
    int rows, cols, width, height, r, c;
  };
  const Case cases[] = {{4, 4, 300, 200, 1, 2}, {4, 4, 200, 300, 3, 0}, {2, 3, 90, 200, 0, 2},
                        {14, 14, 640, 360, 9, 4}, {4, 4, 45, 30, 2, 1}};
  for (const auto& k : cases) {
    INFO(k.rows << "x" << k.cols << " grid on " << k.width << "x" << k.height << ", peak at patch (" << k.r << ", "
                << k.c << ")");
    // A peaked map: the chosen cell holds most of the weight, the rest is random and small.
    std::mt19937 rng(k.rows * 100 + k.width);
    std::uniform_real_distribution<float> u(0.0f, 0.02f);
    AttentionMap m{k.rows, k.cols, std::vector<float>(static_cast<std::size_t>(k.rows) * k.cols)};
    for (auto& v : m.values) v = u(rng);
    m.values[static_cast<std::size_t>(k.r) * k.cols + k.c] = 0.5f;
    const auto heat = upsample_map(m, k.width, k.height);
    REQUIRE(heat.size() == static_cast<std::size_t>(k.width) * k.height);
    CHECK(*std::max_element(heat.begin(), heat.end()) == Approx(1.0f));
    CHECK(*std::min_element(heat.begin(), heat.end()) >= 0.0f);
    const auto [x, y] = argmax_xy(heat, k.width);
    // Patch (r, c) covers x in [c W / cols, (c+1) W / cols), y likewise; its centre is the peak.
    const double cw = static_cast<double>(k.width) / k.cols, ch = static_cast<double>(k.height) / k.rows;
    CHECK(x >= std::floor(k.c * cw));
    CHECK(x < std::ceil((k.c + 1) * cw));
    CHECK(y >= std::floor(k.r * ch));
    CHECK(y < std::ceil((k.r + 1) * ch));
    CHECK(std::abs(x + 0.5 - (k.c + 0.5) * cw) <= std::max(1.0, cw / 4));
    CHECK(std::abs(y + 0.5 - (k.r + 0.5) * ch) <= std::max(1.0, ch / 4));
  }
  CHECK_THROWS_AS(upsample_map(AttentionMap{1, 1, {1.0f}}, 0, 5), InputError);
}

TEST_CASE("flat_floor keeps evenly spread attention dim and leaves peaked maps alone", "[viz]") {
  const AttentionMap flat{3, 3, std::vector<float>(9, 1.0f / 9)};
  auto top = [](const std::vector<float>& v) { return *std::max_element(v.begin(), v.end()); };
  CHECK(top(upsample_map(flat, 30, 20)) == Approx(1.0f));              // relative to its own peak
  CHECK(top(upsample_map(flat, 30, 20, 4.0f)) == Approx(0.25f));       // peak = uniform: 1/4 of the scale
  const AttentionMap mild{2, 2, {0.4f, 0.2f, 0.2f, 0.2f}};              // peak 1.6x uniform
  CHECK(top(upsample_map(mild, 40, 40, 4.0f)) == Approx(0.4f).margin(0.01));
  AttentionMap sharp{3, 3, std::vector<float>(9, 0.02f)};
  sharp.values[4] = 0.84f;                                              // peak 7.6x uniform
  CHECK(upsample_map(sharp, 30, 30, 4.0f) == upsample_map(sharp, 30, 30));
  CHECK_THROWS_AS(upsample_map(flat, 3, 3, -1.0f), InputError);
  // The overlay of a flat map with the default options is the colour a quarter up the scale.
  const RgbImage image = gray_image(30, 30, 0);
  const RgbImage out = overlay(image, flat);
  const auto quarter = colormap_rgb(Colormap::Inferno, 0.25f);
  for (int ch = 0; ch < 3; ++ch) CHECK(std::abs(out.data[(15 * 30 + 15) * 3 + ch] - 0.55 * quarter[ch]) <= 1.0);
}

TEST_CASE("overlay keeps the image size and colours the peak with the top of the colour map", "[viz]") {
  const RgbImage image = gray_image(120, 80, 100);
  AttentionMap m{2, 3, {0, 0, 0, 0, 0, 1}};  // all weight on the bottom-right patch
  OverlayOptions o;
  o.colormap = Colormap::Viridis;
  o.alpha = 0.5f;
  const RgbImage out = overlay(image, m, o);
  REQUIRE(out.width == 120);
  REQUIRE(out.height == 80);
  auto px = [&](int x, int y) {
    const auto* p = &out.data[(static_cast<std::size_t>(y) * out.width + x) * 3];
    return std::array<int, 3>{p[0], p[1], p[2]};
  };
  const auto top = colormap_rgb(Colormap::Viridis, 1.0f), bottom = colormap_rgb(Colormap::Viridis, 0.0f);
  // Centre of patch (1, 2): x = 100, y = 60.
  for (int ch = 0; ch < 3; ++ch) CHECK(std::abs(px(100, 60)[ch] - (50 + top[ch] / 2.0)) <= 1.0);
  // Far corner (top-left patch) is at the bottom of the scale.
  for (int ch = 0; ch < 3; ++ch) CHECK(std::abs(px(5, 5)[ch] - (50 + bottom[ch] / 2.0)) <= 1.0);
  // Viridis ends yellow and starts dark purple.
  CHECK(top[0] > 200);
  CHECK(top[1] > 200);
  CHECK(bottom[2] > bottom[1]);
  CHECK(colormap_rgb(Colormap::Inferno, 0.0f)[0] < 10);
  CHECK_THROWS_AS(overlay(image, m, {Colormap::Jet, 1.5f}), InputError);
  CHECK_THROWS_AS(overlay(image, m, {Colormap::Jet, 0.5f, -1.0f}), InputError);
  CHECK(parse_colormap("turbo") == Colormap::Turbo);
  CHECK_THROWS_AS(parse_colormap("rainbow"), InputError);
}

TEST_CASE("hershey_text transliterates Latin letters and escapes everything else visibly", "[viz]") {
  CHECK(hershey_text("a red circle") == "a red circle");
  CHECK(hershey_text("caf\u00e9 na\u00efve Stra\u00dfe \u00c6gir \u0141\u00f3d\u017a") == "cafe naive Strasse AEgir Lodz");
  CHECK(hershey_text("\u201cquoted\u201d \u2014 it\u2019s\u2026") == "\"quoted\" - it's...");
  CHECK(hershey_text("\u65e5\u672c") == "\\u{65E5}\\u{672C}");
  CHECK(hershey_text("\U0001F600") == "\\u{1F600}");
  CHECK(hershey_text("a\nb\t") == "a\\u{000A}b\\u{0009}");
  CHECK(hershey_text("back\\slash") == "back\\\\slash");
  CHECK(hershey_text("\u00d7") == "\\u{00D7}");  // multiplication sign: not a letter
  // Broken UTF-8: a truncated 3-byte sequence, a lone continuation byte, an overlong form.
  CHECK(hershey_text("\xe6\x97") == "\\x{E6}\\x{97}");
  CHECK(hershey_text("x\x80y") == "x\\x{80}y");
  CHECK(hershey_text("\xc0\xaf") == "\\x{C0}\\x{AF}");
  // Nothing outside printable ASCII survives.
  const std::string t = hershey_text("\xff\u00e9\u4e2d\x01z");
  CHECK(std::all_of(t.begin(), t.end(), [](char c) { return c >= 0x20 && c < 0x7f; }));
}

TEST_CASE("byte-level BPE tokens decode to the bytes they stand for", "[viz]") {
  CHECK(byte_level_token_bytes("\u0120cat") == " cat");         // Ġcat
  CHECK(byte_level_token_bytes("\u010a") == "\n");              // Ċ
  CHECK(byte_level_token_bytes("\u00c3\u00a9") == "\xc3\xa9");  // Ã© -> é
  CHECK(byte_level_token_bytes("\u00e6\u0139") == "\xe6\x97");  // half of a CJK character
  CHECK(byte_level_token_bytes("<|endoftext|>") == "<|endoftext|>");
  CHECK(token_word("\u0120cat", true) == "cat");
  CHECK(token_word("\u0120\u00e2\u0122\u013e", true) == "\u201c");  // Ġâ€œ -> “
  CHECK(hershey_text(token_word("\u0120\u00e2\u0122\u013e", true)) == "\"");
  CHECK(token_word("\u0120cat", false) == "\u0120cat");  // WordLevel tokens are taken as written
  CHECK(token_word("  dog ", false) == "dog");
  CHECK(token_word("##graph", false, "##") == "graph");  // WordPiece continuation
  CHECK(token_word("##", false, "##") == "##");          // the prefix alone is a token of its own
  CHECK(token_word("##graph", false) == "##graph");

  // Agrees with the project's tokenizer (an independent implementation) on a GPT-2 vocabulary:
  // every id whose bytes are valid UTF-8 decodes to exactly those bytes.
  const Tokenizer tok = Tokenizer::load(kData / "tokenizer" / "bpe" / "files");
  int checked = 0;
  for (std::int64_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.is_special(id)) continue;
    const std::string bytes = byte_level_token_bytes(tok.token_string(id));
    const std::int64_t ids[1] = {id};
    const std::string decoded = tok.decode(ids, false);
    if (decoded.find("\xef\xbf\xbd") != std::string::npos) continue;  // U+FFFD: partial character
    INFO("id " << id << " token " << tok.token_string(id));
    CHECK(bytes == decoded);
    ++checked;
  }
  CHECK(checked > 100);
}

TEST_CASE("main words skip function words and special tokens", "[viz]") {
  auto tok = [](std::string w, bool special, float left) {
    TokenAttention t;
    t.word = std::move(w);
    t.special = special;
    t.map = AttentionMap{1, 2, {left, 1 - left}};
    return t;
  };
  const std::vector<TokenAttention> tokens = {tok("A", false, 0.5f), tok("red", false, 1.0f),
                                              tok("circle", false, 0.0f), tok("to", false, 0.5f),
                                              tok(",", false, 0.5f), tok("</s>", true, 0.9f)};
  CHECK_FALSE(is_content_word(tokens[0]));
  CHECK(is_content_word(tokens[1]));
  CHECK_FALSE(is_content_word(tokens[4]));
  CHECK_FALSE(is_content_word(tokens[5]));
  const auto m = main_words_map(tokens);  // mean of "red" and "circle"
  CHECK(m.at(0, 0) == Approx(0.5));
  const std::vector<TokenAttention> only_function = {tok("the", false, 0.2f), tok("</s>", true, 1.0f)};
  CHECK(main_words_map(only_function).at(0, 0) == Approx(0.2));
}

TEST_CASE("panel_grid lays panels in rows with their labels underneath", "[viz]") {
  RgbImage a = gray_image(100, 50, 200), b = gray_image(100, 50, 30);
  const std::vector<Panel> panels = {{a, "image"}, {b, ""}, {a, "circle"}, {b, "x"}};
  PanelGridOptions o;
  o.max_panel_side = 100;
  o.columns = 3;
  const RgbImage g = panel_grid(panels, o);
  const int gap = 4;  // max(4, 100 / 40)
  CHECK(g.width == 3 * 100 + 4 * gap);
  auto px = [&](int x, int y) { return g.data[(static_cast<std::size_t>(y) * g.width + x) * 3]; };
  // Panels at their places, unscaled: first row x = gap, gap + 104, ...
  CHECK(px(gap + 50, gap + 25) == 200);
  CHECK(px(gap + 104 + 50, gap + 25) == 30);
  // Second row starts below the first panel and its label band.
  const int row2 = (g.height - gap) / 2 + gap / 2;
  CHECK(px(gap + 50, g.height - gap - 1 - (g.height - row2) / 2) != 255);
  // Dark text pixels under the labelled first panel, none under the unlabelled second one.
  auto dark_below = [&](int x0) {
    int n = 0;
    for (int y = gap + 50; y < gap + 50 + 20 && y < g.height; ++y)
      for (int x = x0; x < x0 + 100; ++x) n += px(x, y) < 128;
    return n;
  };
  CHECK(dark_below(gap) > 10);
  CHECK(dark_below(gap + 104) == 0);
  CHECK_THROWS_AS(panel_grid({}), InputError);
  // A title adds height; a wider request scales the panels.
  o.title = "a long caption that has to wrap over more than one line of the grid";
  CHECK(panel_grid(panels, o).height > g.height);
  o.title.clear();
  o.max_panel_side = 200;
  CHECK(panel_grid(panels, o).width == 3 * 200 + 4 * 5);
}

TEST_CASE("write_png is atomic: the file appears whole or not at all", "[viz]") {
  const test::TempDir tmp("png");
  const fs::path& dir = tmp.path;
  RgbImage img = gray_image(7, 5, 0);
  img.data[0] = 255;  // top-left red
  const fs::path out = dir / "x.png";
  write_png(out, img);
  const cv::Mat back = cv::imread(out.string(), cv::IMREAD_COLOR);
  REQUIRE(back.cols == 7);
  REQUIRE(back.rows == 5);
  CHECK(back.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 0, 255));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);  // no temporary left

  // The destination is a folder: the rename fails, nothing is left behind.
  fs::create_directories(dir / "taken.png");
  CHECK_THROWS_AS(write_png(dir / "taken.png", img), FormatError);
  CHECK_THROWS_WITH(write_png(dir / "taken.png", img), Catch::Contains("taken.png"));
  CHECK(fs::is_directory(dir / "taken.png"));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);
  // Missing folder.
  CHECK_THROWS_AS(write_png(dir / "missing" / "y.png", img), FormatError);
  CHECK_FALSE(fs::exists(dir / "missing"));
  // An invalid image never creates a file.
  RgbImage bad = img;
  bad.data.pop_back();
  CHECK_THROWS_AS(write_png(dir / "bad.png", bad), InputError);
  CHECK_FALSE(fs::exists(dir / "bad.png"));
  // Overwriting replaces the old file.
  write_file_atomic(dir / "t.txt", "old");
  write_file_atomic(dir / "t.txt", "new text");
  CHECK(test::read_file(dir / "t.txt") == "new text");
}

TEST_CASE("temporaries of a killed run are removed by the next write to the same file, live ones kept", "[viz]") {
  const test::TempDir tmp("stale");
  const fs::path& dir = tmp.path;
  // A process id that is certainly gone: a child that has exited and been reaped.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const auto touch = [&](const std::string& name) {
    std::ofstream(dir / name) << "partial";
    return dir / name;
  };
  const fs::path dead = touch(fmt::format(".out.mp4.xcaption-tmp-{}-0.mp4", child));
  const fs::path live = touch(fmt::format(".out.mp4.xcaption-tmp-{}-3.mp4", ::getppid()));  // our parent runs
  const fs::path other = touch(fmt::format(".other.mp4.xcaption-tmp-{}-0.mp4", child));     // another output
  const fs::path odd = touch(".out.mp4.xcaption-tmp-notapid-0.mp4");
  const fs::path fresh = xcaption::viz::detail::temporary_sibling(dir / "out.mp4");
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(other));
  CHECK(fs::exists(odd));
  CHECK(fresh.filename().string().rfind(fmt::format(".out.mp4.xcaption-tmp-{}-", ::getpid()), 0) == 0);
  CHECK(fresh.extension() == ".mp4");
  // write_file_atomic goes through the same path.
  const fs::path dead_txt = touch(fmt::format(".t.txt.xcaption-tmp-{}-7.txt", child));
  write_file_atomic(dir / "t.txt", "x");
  CHECK_FALSE(fs::exists(dead_txt));
  CHECK(test::read_file(dir / "t.txt") == "x");
}

TEST_CASE("tracked temporaries are unlinked by the forced-exit path and forgotten once untracked", "[viz]") {
  const test::TempDir tmp("tracked");
  const fs::path a = tmp.path / "a.tmp", b = tmp.path / "b.tmp";
  std::ofstream(a) << "a";
  std::ofstream(b) << "b";
  REQUIRE(xcaption::viz::detail::track_temporary(a));
  REQUIRE(xcaption::viz::detail::track_temporary(b));
  xcaption::viz::detail::untrack_temporary(b);
  xcaption::viz::detail::unlink_tracked_temporaries();
  CHECK_FALSE(fs::exists(a));
  CHECK(fs::exists(b));
  xcaption::viz::detail::untrack_temporary(a);
  CHECK_FALSE(xcaption::viz::detail::track_temporary(std::string(5000, 'x')));  // too long: refused
}

TEST_CASE("token_attentions on a real capture: one normalised map per generated token", "[viz]") {
  Captioner captioner = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  const RgbImage image = load_image(kData / "golden_images" / "img_45x30.png");
  for (std::int64_t beams : {1, 3}) {
    INFO("beams " << beams);
    CaptionRequest request;
    request.capture_cross_attention = true;
    request.generation.num_beams = beams;
    const CaptionResult r = captioner.caption(image, request);
    const auto tokens = token_attentions(captioner, r);
    REQUIRE(tokens.size() == r.token_ids.size());
    std::string joined;
    for (const auto& t : tokens) {
      CHECK(t.map.rows == 4);
      CHECK(t.map.cols == 4);
      CHECK(sum(t.map) == Approx(1.0).epsilon(1e-5));
      if (!t.special) joined += (joined.empty() ? "" : " ") + t.word;
    }
    CHECK(joined == r.caption);  // WordLevel: the non-special words spell the caption
    if (r.token_ids.back() == 2) CHECK(tokens.back().special);  // </s>
  }
  CaptionResult no_capture = captioner.caption(image);
  CHECK_THROWS_AS(token_attentions(captioner, no_capture), InputError);
}

TEST_CASE("fit_image scales the longer side and keeps the aspect", "[viz]") {
  const RgbImage big = gray_image(400, 100, 77);
  const RgbImage a = fit_image(big, 200);
  CHECK(a.width == 200);
  CHECK(a.height == 50);
  CHECK(a.data[0] == 77);
  const RgbImage b = fit_image(gray_image(30, 60, 5), 120);
  CHECK(b.width == 60);
  CHECK(b.height == 120);
  CHECK_THROWS_AS(fit_image(big, 0), InputError);
}
