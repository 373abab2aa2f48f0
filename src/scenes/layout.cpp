// Scene layout: canvas, background parameters and non-overlapping objects, all drawn from a
// per-scene splitmix64 stream with integer geometry (see render.hpp for the determinism argument).
#include <algorithm>
#include <array>
#include <string>

#include <fmt/format.h>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/scenes/render.hpp"

namespace xcaption::scenes::detail {

// ---- PRNG -----------------------------------------------------------------------------------

namespace {

// splitmix64 output function; also used to hash (seed, index, stream) into a stream seed.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

}  // namespace

std::uint64_t Rng::next() {
  state_ += kGolden;
  return mix64(state_);
}

std::int64_t Rng::uniform_int(std::int64_t lo, std::int64_t hi) {
  const auto range = static_cast<std::uint64_t>(hi - lo) + 1;
  return lo + static_cast<std::int64_t>(next() % range);
}

bool Rng::bernoulli(double p) {
  const double u = static_cast<double>(next() >> 11) * 0x1.0p-53;  // exact, in [0, 1)
  return u < p;
}

std::uint64_t stream_seed(std::uint64_t seed, std::int64_t index, std::uint64_t stream) {
  std::uint64_t s = mix64(seed + kGolden);
  s = mix64(s ^ (static_cast<std::uint64_t>(index) * kGolden + 0x632BE59BD9B4E019ull));
  return mix64(s ^ (stream * 0xD1B54A32D192ED03ull + 1));
}

// ---- Integer trigonometry ----------------------------------------------------------------------

namespace {

// round(sin(d degrees) * 2^30) for d = 0..90, generated once with Python's math.sin.
constexpr std::array<std::int32_t, 91> kSinTable = {
    0, 18739379, 37473049, 56195305, 74900443, 93582766,
    112236583, 130856211, 149435979, 167970228, 186453311, 204879599,
    223243478, 241539355, 259761657, 277904834, 295963357, 313931728,
    331804471, 349576144, 367241333, 384794656, 402230767, 419544355,
    436730145, 453782903, 470697435, 487468587, 504091252, 520560366,
    536870912, 553017922, 568996477, 584801711, 600428808, 615873009,
    631129609, 646193961, 661061475, 675727625, 690187940, 704438018,
    718473518, 732290163, 745883746, 759250125, 772385229, 785285058,
    797945680, 810363241, 822533958, 834454122, 846120104, 857528349,
    868675383, 879557810, 890172315, 900515665, 910584710, 920376381,
    929887697, 939115760, 948057759, 956710970, 965072759, 973140576,
    980911966, 988384560, 995556083, 1002424350, 1008987269, 1015242840,
    1021189159, 1026824413, 1032146887, 1037154959, 1041847103, 1046221891,
    1050277989, 1054014162, 1057429273, 1060522280, 1063292242, 1065738315,
    1067859754, 1069655912, 1071126243, 1072270298, 1073087729, 1073578288,
    1073741824,
};

}  // namespace

std::int64_t isin_deg(int degrees) {
  int d = degrees % 360;
  if (d < 0) d += 360;
  if (d <= 90) return kSinTable[d];
  if (d <= 180) return kSinTable[180 - d];
  if (d <= 270) return -kSinTable[d - 180];
  return -kSinTable[360 - d];
}

std::int64_t icos_deg(int degrees) { return isin_deg(degrees + 90); }

// ---- Layout ---------------------------------------------------------------------------------

namespace {

// Rendering parameters (documented in models/shapes-small/README-grammar.md).
constexpr int kMinSide = 96, kMaxSide = 320;
constexpr int kMaxAspectNum = 5, kMaxAspectDen = 4;            // longer / shorter side <= 1.25
constexpr std::array<int, 2> kSmallPermille = {150, 200};      // see draw_candidate
constexpr std::array<int, 2> kLargePermille = {300, 380};
constexpr int kRelationRatio10 = 13;                           // dominant axis >= 1.3 x the other
constexpr int kOrderGapPercent = 12;                           // 3 objects: centre x gap >= 12% W
constexpr int kTriesPerObject = 80;
constexpr int kMaxRestarts = 2000;
constexpr int kRestartsBeforeSmall = 200;

// What a style changes. Train holds the constants above, so its scenes are those of every earlier
// version; the others draw the same values from other ranges (and their extras from stream 2).
struct StyleParams {
  int min_side, max_side;
  bool portrait_to_landscape;             // canvases 9:16 .. 16:9 instead of within 5:4
  std::array<int, 2> small, large;        // permille, as kSmallPermille / kLargePermille
  int tilt;                               // squares, diamonds, crosses: within +-tilt degrees
  int channel_jitter, common_jitter;      // colours other than white and black
  std::array<int, 2> soften;              // pull colours towards the background grey, percent (per scene)
  std::array<int, 2> luminance;
  int max_noise;
  int blur_percent;                       // share of scenes blurred
  std::array<int, 2> jpeg_quality;
};

constexpr StyleParams kTrainStyle = {kMinSide, kMaxSide, false, kSmallPermille, kLargePermille, 20, 10, 0, {0, 0},
                                     {100, 175}, 6, 0, {60, 90}};
constexpr StyleParams kWideStyle = {96, 400, true, {90, 220}, {280, 480}, 25, 18, 15, {0, 35}, {85, 190}, 10, 30, {40, 90}};
constexpr StyleParams kUnseenStyle = {80, 360, true, {110, 210}, {290, 440}, 25, 14, 12, {25, 25}, {90, 190}, 9, 50, {50, 85}};

const StyleParams& params_of(Style style) {
  switch (style) {
    case Style::Wide: return kWideStyle;
    case Style::Unseen: return kUnseenStyle;
    case Style::Train: break;
  }
  return kTrainStyle;
}

struct ColorAnchor {
  std::array<int, 3> rgb;
  int channel_jitter;  // independent per-channel offset in [-j, j]
  int common_jitter;   // offset shared by the three channels in [-j, j]
};

// Index-aligned with colors(). Anchors are far apart in hue/lightness so that jitter never makes a
// colour read as another one.
constexpr std::array<ColorAnchor, 8> kColorAnchors = {{
    {{215, 35, 35}, 10, 0},    // red
    {{40, 165, 55}, 10, 0},    // green
    {{35, 75, 215}, 10, 0},    // blue
    {{235, 215, 40}, 10, 0},   // yellow
    {{135, 55, 175}, 10, 0},   // purple
    {{240, 135, 25}, 10, 0},   // orange
    {{243, 243, 243}, 3, 10},  // white
    {{22, 22, 22}, 3, 10},     // black
}};

enum ShapeId { kCircle, kSquare, kTriangle, kStar, kDiamond, kCross };

struct Candidate {
  int shape = 0, color = 0, size = 0;
  bool circle = false;
  int radius16 = 0;
  std::vector<cv::Point> rel16;  // vertices relative to the anchor (1/16 px)
  int min_x = 0, max_x = 0, min_y = 0, max_y = 0;  // extent relative to the anchor (1/16 px)
  cv::Scalar bgr;
};

struct Placed {
  std::array<int, 4> bbox;   // pixels, exclusive end
  std::int64_t cx32, cy32;   // centre in 1/32 px
};

int clamp255(int v) { return std::clamp(v, 0, 255); }

// (x, y) rotated by `deg` degrees, rounded to the nearest 1/16 px (ties up).
cv::Point rotate(std::int64_t x, std::int64_t y, int deg) {
  const std::int64_t c = icos_deg(deg), s = isin_deg(deg);
  const std::int64_t half = kTrigOne / 2;
  return {static_cast<int>((x * c - y * s + half) >> 30), static_cast<int>((x * s + y * c + half) >> 30)};
}

cv::Point polar(std::int64_t r, int deg) { return rotate(r, 0, deg); }

// Vertices (relative to the anchor, 1/16 px) of a polygon shape of nominal size d, rotated by deg.
std::vector<cv::Point> polygon_vertices(int shape, std::int64_t d, int deg) {
  std::vector<cv::Point> v;
  switch (shape) {
    case kSquare: {  // side d
      const std::int64_t h = d / 2;
      for (auto [x, y] : {std::pair{-h, -h}, {h, -h}, {h, h}, {-h, h}}) v.push_back(rotate(x, y, deg));
      break;
    }
    case kTriangle: {  // equilateral, side d: circumradius d / sqrt(3)
      const std::int64_t r = d * 577350 / 1000000;
      for (int k = 0; k < 3; ++k) v.push_back(polar(r, -90 + 120 * k + deg));
      break;
    }
    case kStar: {  // five points, outer radius d / 2, inner radius 0.47 of it (a plump star)
      const std::int64_t r_out = d / 2, r_in = d * 47 / 200;
      for (int k = 0; k < 10; ++k) v.push_back(polar(k % 2 == 0 ? r_out : r_in, -90 + 36 * k + deg));
      break;
    }
    case kDiamond: {  // rhombus d tall and 0.6 d wide (stays narrower than a square after squashing)
      const std::int64_t h = d / 2, w = d * 3 / 10, o = 0;
      for (auto [x, y] : {std::pair{o, -h}, {w, o}, {o, h}, {-w, o}}) v.push_back(rotate(x, y, deg));
      break;
    }
    case kCross: {  // plus sign d x d, arms 0.34 d thick
      const std::int64_t h = d / 2, t = d * 17 / 100;
      const std::pair<std::int64_t, std::int64_t> pts[12] = {
          {-t, -h}, {t, -h}, {t, -t}, {h, -t}, {h, t}, {t, t}, {t, h}, {-t, h}, {-t, t}, {-h, t}, {-h, -t}, {-t, -t}};
      for (auto [x, y] : pts) v.push_back(rotate(x, y, deg));
      break;
    }
    default: break;
  }
  return v;
}

std::array<int, 4> extent_of(const std::vector<cv::Point>& pts) {  // min_x, max_x, min_y, max_y
  std::array<int, 4> e = {pts[0].x, pts[0].x, pts[0].y, pts[0].y};
  for (const auto& p : pts) {
    e[0] = std::min(e[0], p.x);
    e[1] = std::max(e[1], p.x);
    e[2] = std::min(e[2], p.y);
    e[3] = std::max(e[3], p.y);
  }
  return e;
}

// Draws one object. Its size is defined as the model sees it after the canvas is squashed to a
// square: the larger of (box width / canvas width) and (box height / canvas height) of the rotated
// shape's geometric extent equals a fraction drawn from kSmallPermille or kLargePermille.
Candidate draw_candidate(Rng& rng, int width, int height, bool force_small, const StyleParams& style,
                         int background, int soften_percent) {
  Candidate c;
  c.shape = static_cast<int>(rng.uniform_int(0, 5));
  c.color = static_cast<int>(rng.uniform_int(0, 7));
  c.size = static_cast<int>(rng.uniform_int(0, 1));
  if (force_small) c.size = 0;
  const auto& range = c.size == 0 ? style.small : style.large;
  const std::int64_t permille = rng.uniform_int(range[0], range[1]);
  // Rotation: squares, diamonds and crosses stay within 20 degrees of upright (a square turned 45
  // degrees would read as a diamond); triangles turn freely; stars by up to one 72-degree period.
  int deg = static_cast<int>(rng.uniform_int(-style.tilt, style.tilt));
  if (c.shape == kTriangle) deg = static_cast<int>(rng.uniform_int(0, 359));
  if (c.shape == kStar) deg = static_cast<int>(rng.uniform_int(0, 71));

  if (c.shape == kCircle) {
    c.circle = true;
    c.radius16 = static_cast<int>(std::int64_t{std::min(width, height)} * kOne * permille / 2000);
  } else {
    // Measure the rotated shape at a reference size, then scale so that its limiting side has the
    // drawn fraction of the matching canvas side.
    constexpr std::int64_t kRef = std::int64_t{1} << 16;
    const auto e = extent_of(polygon_vertices(c.shape, kRef, deg));
    const std::int64_t ew = e[1] - e[0], eh = e[3] - e[2];
    const std::int64_t d = ew * height >= eh * width ? permille * kOne * kRef * width / (1000 * ew)
                                                     : permille * kOne * kRef * height / (1000 * eh);
    c.rel16 = polygon_vertices(c.shape, d, deg);
  }
  if (c.circle) {
    c.min_x = c.min_y = -c.radius16;
    c.max_x = c.max_y = c.radius16;
  } else {
    const auto e = extent_of(c.rel16);
    c.min_x = e[0];
    c.max_x = e[1];
    c.min_y = e[2];
    c.max_y = e[3];
  }

  const ColorAnchor& anchor = kColorAnchors[c.color];
  const bool neutral = c.color >= 6;  // white and black keep their own jitter in every style
  const int common_j = neutral || &style == &kTrainStyle ? anchor.common_jitter : style.common_jitter;
  const int channel_j = neutral || &style == &kTrainStyle ? anchor.channel_jitter : style.channel_jitter;
  const int common = static_cast<int>(rng.uniform_int(-common_j, common_j));
  std::array<int, 3> rgb{};
  for (int ch = 0; ch < 3; ++ch) {
    const int v = anchor.rgb[ch] + common + static_cast<int>(rng.uniform_int(-channel_j, channel_j));
    rgb[ch] = clamp255(neutral ? v : v + (background - v) * soften_percent / 100);
  }
  c.bgr = cv::Scalar(rgb[2], rgb[1], rgb[0]);
  return c;
}

// Pixel box of a fixed-point extent: every pixel whose centre lies within kRim pixels of the
// geometric extent. OpenCV's antialiased fill reaches about 1 px past straight edges and up to 2.5 px
// past the sharp tips of triangles, stars and diamonds (measured over 3000 scenes), so 3 px covers
// every touched pixel while keeping the box deterministic (independent of the rasteriser).
constexpr int kRim16 = 3 * kOne;

std::array<int, 4> pixel_box(int min_x16, int max_x16, int min_y16, int max_y16, int width, int height) {
  const auto ceil_px = [](int v16) { return (v16 + kOne - 1) >> kShift; };  // arithmetic shift: floor
  const auto floor_px = [](int v16) { return v16 >> kShift; };
  return {std::max(0, ceil_px(min_x16 - kRim16)), std::max(0, ceil_px(min_y16 - kRim16)),
          std::min(width, floor_px(max_x16 + kRim16) + 1), std::min(height, floor_px(max_y16 + kRim16) + 1)};
}

bool separated(const std::array<int, 4>& a, const std::array<int, 4>& b, int margin) {
  return a[2] + margin <= b[0] || b[2] + margin <= a[0] || a[3] + margin <= b[1] || b[3] + margin <= a[1];
}

std::int64_t iabs(std::int64_t v) { return v < 0 ? -v : v; }

// Two objects: the dominant axis must be the same in pixels and in coordinates normalised by the
// canvas size (the model sees the image squashed to a square), and clear by a 1.3 ratio in both.
bool relation_clear(const Placed& a, const Placed& b, int width, int height) {
  const std::int64_t dx = iabs(a.cx32 - b.cx32), dy = iabs(a.cy32 - b.cy32);
  const bool horizontal = 10 * dx >= kRelationRatio10 * dy && 10 * dx * height >= kRelationRatio10 * dy * width;
  const bool vertical = 10 * dy >= kRelationRatio10 * dx && 10 * dy * width >= kRelationRatio10 * dx * height;
  return horizontal || vertical;
}

// Three objects: centres at least 12% of the width apart in x, so the left-to-right order survives
// resizing.
bool order_clear(const Placed& a, const Placed& b, int width) {
  return 100 * iabs(a.cx32 - b.cx32) >= std::int64_t{kOrderGapPercent} * width * 2 * kOne;
}

}  // namespace

Layout make_layout(const RenderOptions& options, std::int64_t index) {
  if (options.min_objects < 1 || options.max_objects > 3 || options.min_objects > options.max_objects)
    throw InputError(fmt::format("scenes: min_objects/max_objects must satisfy 1 <= min <= max <= 3, got {} and {}",
                                 options.min_objects, options.max_objects));
  if (!(options.jpeg_probability >= 0.0 && options.jpeg_probability <= 1.0))
    throw InputError(fmt::format("scenes: jpeg_probability must be in [0, 1], got {}", options.jpeg_probability));
  if (index < 0) throw InputError(fmt::format("scenes: scene index must be >= 0, got {}", index));

  Rng rng(stream_seed(options.seed, index, 0));
  Layout layout;
  layout.pixel_seed = stream_seed(options.seed, index, 1);

  const StyleParams& style = params_of(options.style);
  // Canvas: width uniform, height uniform within the aspect limit (5:4, or 9:16 .. 16:9).
  const int width = static_cast<int>(rng.uniform_int(style.min_side, style.max_side));
  const int num = style.portrait_to_landscape ? 16 : kMaxAspectNum, den = style.portrait_to_landscape ? 9 : kMaxAspectDen;
  const int h_lo = std::max(style.min_side, (width * den + num - 1) / num);
  const int h_hi = std::max(h_lo, std::min(style.max_side, width * num / den));
  const int height = static_cast<int>(rng.uniform_int(h_lo, h_hi));
  const int shorter = std::min(width, height);
  const int count = static_cast<int>(rng.uniform_int(options.min_objects, options.max_objects));

  // Background and post-processing. Every draw happens unconditionally so that the object layout
  // does not depend on jpeg_probability.
  Background& bg = layout.background;
  bg.kind = static_cast<BackgroundKind>(rng.uniform_int(0, 2));
  bg.luminance = static_cast<int>(rng.uniform_int(style.luminance[0], style.luminance[1]));
  const int delta = static_cast<int>(rng.uniform_int(20, 50)) * (rng.uniform_int(0, 1) == 0 ? -1 : 1);
  bg.luminance2 = std::clamp(bg.luminance + delta, style.luminance[0] - 5, style.luminance[1] + 10);
  bg.direction_deg = static_cast<int>(rng.uniform_int(0, 359));
  switch (rng.uniform_int(0, 2)) {  // neutral tints in B, G, R
    case 0: bg.tint = {0, 0, 0}; break;      // gray
    case 1: bg.tint = {-12, 2, 10}; break;   // beige
    default: bg.tint = {8, 0, -6}; break;    // cool gray
  }
  bg.grid_x = static_cast<int>(rng.uniform_int(2, 6));
  bg.grid_y = static_cast<int>(rng.uniform_int(2, 6));
  bg.grid.resize(static_cast<std::size_t>((bg.grid_x + 1) * (bg.grid_y + 1)));
  for (int& v : bg.grid) v = static_cast<int>(rng.uniform_int(-12, 12));
  layout.noise_amplitude = static_cast<int>(rng.uniform_int(0, style.max_noise));
  layout.jpeg = rng.bernoulli(options.jpeg_probability);
  layout.jpeg_quality = static_cast<int>(rng.uniform_int(style.jpeg_quality[0], style.jpeg_quality[1]));
  int soften_percent = style.soften[0];
  const bool soften_range = style.soften[0] < style.soften[1];
  if (style.blur_percent > 0 || soften_range) {  // a stream of its own: the train style draws nothing here
    Rng extra(stream_seed(options.seed, index, 2));
    if (extra.uniform_int(0, 99) < style.blur_percent) layout.blur_kernel = extra.uniform_int(0, 1) == 0 ? 3 : 5;
    // a range (wide) is drawn after the blur, so a fixed amount (unseen) leaves its scenes as they were
    if (soften_range) soften_percent = static_cast<int>(extra.uniform_int(style.soften[0], style.soften[1]));
  }

  // Objects: drawn one after another at random positions; a scene whose objects cannot all be
  // placed is redrawn (after many restarts only small objects are drawn, which always fit).
  const int margin = std::max(3, shorter * 4 / 100);  // gap between boxes, pixels
  const int border = std::max(2, shorter * 2 / 100);  // gap to the canvas edge, pixels
  std::vector<Candidate> objects;
  std::vector<Placed> placed;
  for (int restart = 0;; ++restart) {
    if (restart == kMaxRestarts)
      throw InputError(fmt::format("scenes: could not place {} objects on a {}x{} canvas (seed {}, index {})", count,
                                   width, height, options.seed, index));
    objects.clear();
    placed.clear();
    bool ok = true;
    for (int k = 0; k < count && ok; ++k) {
      Candidate c = draw_candidate(rng, width, height, restart >= kRestartsBeforeSmall, style, bg.luminance,
                                   soften_percent);
      const int x_lo = border * kOne - c.min_x, x_hi = (width - 1 - border) * kOne - c.max_x;
      const int y_lo = border * kOne - c.min_y, y_hi = (height - 1 - border) * kOne - c.max_y;
      ok = false;
      if (x_lo > x_hi || y_lo > y_hi) break;
      for (int t = 0; t < kTriesPerObject && !ok; ++t) {
        const int ax = static_cast<int>(rng.uniform_int(x_lo, x_hi));
        const int ay = static_cast<int>(rng.uniform_int(y_lo, y_hi));
        Placed p;
        p.bbox = pixel_box(ax + c.min_x, ax + c.max_x, ay + c.min_y, ay + c.max_y, width, height);
        p.cx32 = 2 * std::int64_t{ax} + c.min_x + c.max_x;
        p.cy32 = 2 * std::int64_t{ay} + c.min_y + c.max_y;
        ok = true;
        for (const Placed& q : placed) {
          ok = ok && separated(p.bbox, q.bbox, margin);
          if (count == 2) ok = ok && relation_clear(p, q, width, height);
          if (count == 3) ok = ok && order_clear(p, q, width);
        }
        if (ok) {
          for (auto& v : c.rel16) v += cv::Point(ax, ay);
          c.min_x += ax;
          c.max_x += ax;
          c.min_y += ay;
          c.max_y += ay;
          objects.push_back(std::move(c));
          placed.push_back(p);
        }
      }
    }
    if (ok) {
      layout.restarts = restart;
      break;
    }
  }

  Scene& scene = layout.scene;
  scene.file = scene_file_name(index);
  scene.width = width;
  scene.height = height;
  for (std::size_t k = 0; k < objects.size(); ++k) {
    const Candidate& c = objects[k];
    SceneObject o;
    o.shape = shapes()[c.shape];
    o.color = colors()[c.color];
    o.size = sizes()[c.size];
    o.bbox = placed[k].bbox;
    o.center = {static_cast<double>(placed[k].cx32) / (2 * kOne), static_cast<double>(placed[k].cy32) / (2 * kOne)};
    scene.objects.push_back(std::move(o));

    ObjectGeometry g;
    g.circle = c.circle;
    g.radius16 = c.radius16;
    // The anchor of a circle is its centre: (min + max) / 2 is exact because the extent is symmetric.
    g.center16 = cv::Point((c.min_x + c.max_x) / 2, (c.min_y + c.max_y) / 2);
    g.polygon16 = c.rel16;
    g.bgr = c.bgr;
    layout.geometry.push_back(std::move(g));
  }
  scene.captions = captions_for(scene.objects);
  return layout;
}

}  // namespace xcaption::scenes::detail

namespace xcaption::scenes {

Style parse_style(std::string_view name) {
  if (name == "train") return Style::Train;
  if (name == "wide") return Style::Wide;
  if (name == "unseen") return Style::Unseen;
  throw InputError(fmt::format("unknown scene style '{}' (valid: train, wide, unseen)", name));
}

std::string_view style_name(Style style) {
  switch (style) {
    case Style::Wide: return "wide";
    case Style::Unseen: return "unseen";
    case Style::Train: break;
  }
  return "train";
}

std::string scene_file_name(std::int64_t index) { return fmt::format("scene_{:06d}.png", index); }

}  // namespace xcaption::scenes
