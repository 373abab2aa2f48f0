// Pixel stage of the shapes-world renderer: neutral background, antialiased shapes, mild noise and
// an optional in-memory JPEG round trip. All arithmetic outside OpenCV's rasteriser is integer.
#include <algorithm>
#include <cstring>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/scenes/render.hpp"

namespace xcaption::scenes::detail {

namespace {

// Gray level of the background at every pixel (before tint), row-major.
std::vector<int> background_levels(const Background& bg, int width, int height) {
  std::vector<int> levels(static_cast<std::size_t>(width) * height, bg.luminance);
  if (bg.kind == BackgroundKind::Gradient) {
    // Linear ramp from luminance to luminance2 along direction_deg, spanning the canvas corners.
    const std::int64_t c = icos_deg(bg.direction_deg), s = isin_deg(bg.direction_deg);
    std::int64_t p_min = 0, p_max = 0;
    for (auto [x, y] : {std::pair{0, 0}, {width - 1, 0}, {0, height - 1}, {width - 1, height - 1}}) {
      const std::int64_t p = x * c + y * s;
      p_min = std::min(p_min, p);
      p_max = std::max(p_max, p);
    }
    const std::int64_t span = std::max<std::int64_t>(1, p_max - p_min);
    const std::int64_t delta = bg.luminance2 - bg.luminance;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        levels[static_cast<std::size_t>(y) * width + x] =
            bg.luminance + static_cast<int>(delta * (x * c + y * s - p_min) / span);
  } else if (bg.kind == BackgroundKind::Texture) {
    // Smooth blotches: a coarse lattice of offsets, bilinearly interpolated (10-bit weights).
    const int gx = bg.grid_x, gy = bg.grid_y;
    for (int y = 0; y < height; ++y) {
      const std::int64_t v = std::int64_t{y} * gy * 1024 / std::max(1, height - 1);
      const int j = std::min<int>(static_cast<int>(v >> 10), gy - 1);
      const std::int64_t fy = v - std::int64_t{j} * 1024;
      for (int x = 0; x < width; ++x) {
        const std::int64_t u = std::int64_t{x} * gx * 1024 / std::max(1, width - 1);
        const int i = std::min<int>(static_cast<int>(u >> 10), gx - 1);
        const std::int64_t fx = u - std::int64_t{i} * 1024;
        auto node = [&](int a, int b) { return std::int64_t{bg.grid[static_cast<std::size_t>(b) * (gx + 1) + a]}; };
        const std::int64_t top = node(i, j) * (1024 - fx) + node(i + 1, j) * fx;
        const std::int64_t bottom = node(i, j + 1) * (1024 - fx) + node(i + 1, j + 1) * fx;
        const std::int64_t offset = (top * (1024 - fy) + bottom * fy + (1 << 19)) >> 20;
        levels[static_cast<std::size_t>(y) * width + x] = bg.luminance + static_cast<int>(offset);
      }
    }
  }
  return levels;
}

}  // namespace

cv::Mat render_layout(const Layout& layout, const RenderStages& stages) {
  const int width = layout.scene.width, height = layout.scene.height;
  cv::Mat image(height, width, CV_8UC3);

  const std::vector<int> levels = background_levels(layout.background, width, height);
  const auto& tint = layout.background.tint;
  for (int y = 0; y < height; ++y) {
    auto* row = image.ptr<std::uint8_t>(y);
    for (int x = 0; x < width; ++x)
      for (int ch = 0; ch < 3; ++ch)
        row[3 * x + ch] =
            static_cast<std::uint8_t>(std::clamp(levels[static_cast<std::size_t>(y) * width + x] + tint[ch], 0, 255));
  }

  if (stages.objects) {
    for (const ObjectGeometry& g : layout.geometry) {
      if (g.circle) {
        cv::circle(image, g.center16, g.radius16, g.bgr, cv::FILLED, cv::LINE_AA, kShift);
      } else {
        const cv::Point* pts = g.polygon16.data();
        const int n = static_cast<int>(g.polygon16.size());
        cv::fillPoly(image, &pts, &n, 1, g.bgr, cv::LINE_AA, kShift);
      }
    }
  }

  const int a = layout.noise_amplitude;
  if (stages.noise && a > 0) {
    // Triangular noise in [-a, a] per channel: the sum of two uniform draws from 16-bit slices.
    Rng rng(layout.pixel_seed);
    for (int y = 0; y < height; ++y) {
      auto* row = image.ptr<std::uint8_t>(y);
      for (int x = 0; x < width; ++x) {
        const std::uint64_t r = rng.next();
        for (int ch = 0; ch < 3; ++ch) {
          const int b1 = static_cast<int>((r >> (16 * ch)) & 0xFF), b2 = static_cast<int>((r >> (16 * ch + 8)) & 0xFF);
          const int noise = b1 % (a + 1) + b2 % (a + 1) - a;
          row[3 * x + ch] = static_cast<std::uint8_t>(std::clamp(row[3 * x + ch] + noise, 0, 255));
        }
      }
    }
  }

  if (stages.noise && layout.blur_kernel > 0) {
    // sigma 0: OpenCV derives it from the kernel size and uses its fixed-point 8-bit path.
    cv::Mat blurred;
    cv::GaussianBlur(image, blurred, {layout.blur_kernel, layout.blur_kernel}, 0, 0, cv::BORDER_REFLECT_101);
    image = blurred;
  }

  if (stages.jpeg && layout.jpeg) {
    std::vector<std::uint8_t> buffer;
    if (!cv::imencode(".jpg", image, buffer, {cv::IMWRITE_JPEG_QUALITY, layout.jpeg_quality}))
      throw BackendError(fmt::format("scenes: JPEG encoding of {} failed", layout.scene.file));
    image = cv::imdecode(buffer, cv::IMREAD_COLOR);
    if (image.empty() || image.cols != width || image.rows != height)
      throw BackendError(fmt::format("scenes: JPEG decoding of {} failed", layout.scene.file));
  }
  return image;
}

}  // namespace xcaption::scenes::detail

namespace xcaption::scenes {

Scene make_scene_mat(const RenderOptions& options, std::int64_t index, cv::Mat* image_out) {
  detail::Layout layout = detail::make_layout(options, index);
  if (image_out != nullptr) *image_out = detail::render_layout(layout);
  return std::move(layout.scene);
}

Scene make_scene(const RenderOptions& options, std::int64_t index, SceneImage* image_out) {
  detail::Layout layout = detail::make_layout(options, index);
  if (image_out != nullptr) {
    const cv::Mat image = detail::render_layout(layout);
    image_out->width = image.cols;
    image_out->height = image.rows;
    image_out->bgr.resize(static_cast<std::size_t>(image.cols) * image.rows * 3);
    for (int y = 0; y < image.rows; ++y)
      std::memcpy(image_out->bgr.data() + static_cast<std::size_t>(y) * image.cols * 3, image.ptr<std::uint8_t>(y),
                  static_cast<std::size_t>(image.cols) * 3);
  }
  return std::move(layout.scene);
}

}  // namespace xcaption::scenes
