// Internals of the shapes-world renderer: the per-scene PRNG, integer trigonometry, the scene layout
// (every random decision of a scene) and the pixel renderer. OpenCV appears here, never in
// include/xcaption/scenes.hpp.
//
// Determinism: every decision is drawn from splitmix64 streams keyed by (seed, index, stream) and all
// geometry is integer fixed point (1/16 px, OpenCV's `shift` = 4) rotated with an integer sine table,
// so no libm call or floating-point contraction can change a scene between machines. Pixels depend in
// addition on OpenCV's antialiased rasteriser and libjpeg, both integer code.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <vector>

#include <xcaption/scenes.hpp>

namespace xcaption::scenes::detail {

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, passes BigCrush; fixed across platforms.
class Rng {
 public:
  explicit Rng(std::uint64_t state) : state_(state) {}
  std::uint64_t next();
  /// Uniform integer in [lo, hi] (modulo reduction; the bias, range / 2^64, is irrelevant here).
  std::int64_t uniform_int(std::int64_t lo, std::int64_t hi);
  /// true with probability p (53-bit uniform compared with p).
  bool bernoulli(double p);

 private:
  std::uint64_t state_;
};

/// Seed of stream `stream` of scene `index`: streams are independent, so the layout never depends
/// on how many noise values the pixel stage draws.
std::uint64_t stream_seed(std::uint64_t seed, std::int64_t index, std::uint64_t stream);

inline constexpr int kShift = 4;            // OpenCV drawing shift: coordinates in 1/16 px
inline constexpr int kOne = 1 << kShift;    // one pixel in fixed point
inline constexpr std::int64_t kTrigOne = std::int64_t{1} << 30;

/// sin and cos of an integer number of degrees, scaled by 2^30 (exact table, no libm).
std::int64_t isin_deg(int degrees);
std::int64_t icos_deg(int degrees);

enum class BackgroundKind { Plain, Gradient, Texture };

struct Background {
  BackgroundKind kind = BackgroundKind::Plain;
  int luminance = 128;           // base gray level
  int luminance2 = 128;          // gradient end level
  int direction_deg = 0;         // gradient direction
  std::array<int, 3> tint{};     // B, G, R offsets added to the gray level (neutral tones)
  int grid_x = 0, grid_y = 0;    // texture lattice cells
  std::vector<int> grid;         // (grid_y + 1) * (grid_x + 1) lattice offsets
};

/// What to draw for one object, in absolute fixed-point pixel coordinates.
struct ObjectGeometry {
  bool circle = false;
  cv::Point center16;                // circle centre (1/16 px)
  int radius16 = 0;                  // circle radius (1/16 px)
  std::vector<cv::Point> polygon16;  // polygon vertices (1/16 px), shapes other than circle
  cv::Scalar bgr;                    // fill colour
};

/// Every random decision of one scene.
struct Layout {
  Scene scene;
  std::vector<ObjectGeometry> geometry;  // parallel to scene.objects
  Background background;
  int noise_amplitude = 0;               // per-channel triangular noise in [-a, a]
  bool jpeg = false;
  int jpeg_quality = 0;
  int blur_kernel = 0;                   // Gaussian blur kernel (3 or 5 px; 0 = none), after noise
  std::uint64_t pixel_seed = 0;          // stream of the per-pixel noise
  int restarts = 0;                      // placement restarts needed (diagnostics)
};

/// Validates options (InputError) and draws scene `index`.
Layout make_layout(const RenderOptions& options, std::int64_t index);

/// Which stages render_layout runs (tests switch stages off to compare against the background).
struct RenderStages {
  bool objects = true;
  bool noise = true;
  bool jpeg = true;
};

/// Renders a layout to a BGR 8UC3 image of scene.width x scene.height.
cv::Mat render_layout(const Layout& layout, const RenderStages& stages = {});

}  // namespace xcaption::scenes::detail

namespace xcaption::scenes {

/// make_scene with the image as a cv::Mat (BGR 8UC3); `image_out` may be null.
Scene make_scene_mat(const RenderOptions& options, std::int64_t index, cv::Mat* image_out);

}  // namespace xcaption::scenes
