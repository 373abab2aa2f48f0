// Upsampling, colour maps and blending of attention maps (include/xcaption/viz.hpp).
#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/viz/draw.hpp"

namespace xcaption::viz {

namespace detail {

cv::Mat bgr_from_rgb(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.data.size() != static_cast<std::size_t>(image.width) * image.height * 3)
    throw InputError(fmt::format("image of {}x{} pixels carries {} bytes, expected width*height*3", image.width,
                                 image.height, image.data.size()));
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.data.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

RgbImage rgb_from_bgr_mat(const cv::Mat& bgr) {
  RgbImage out;
  out.width = bgr.cols;
  out.height = bgr.rows;
  out.data.resize(static_cast<std::size_t>(bgr.cols) * bgr.rows * 3);
  cv::Mat rgb(bgr.rows, bgr.cols, CV_8UC3, out.data.data());
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);  // writes into out.data (same size and type)
  return out;
}

const cv::Mat& colormap_lut(Colormap colormap) {
  static const std::array<cv::Mat, 4> luts = [] {
    cv::Mat ramp(256, 1, CV_8UC1);
    for (int i = 0; i < 256; ++i) ramp.at<std::uint8_t>(i) = static_cast<std::uint8_t>(i);
    std::array<cv::Mat, 4> l;
    const int ids[4] = {cv::COLORMAP_INFERNO, cv::COLORMAP_VIRIDIS, cv::COLORMAP_TURBO, cv::COLORMAP_JET};
    for (int k = 0; k < 4; ++k) cv::applyColorMap(ramp, l[k], ids[k]);
    return l;
  }();
  return luts[static_cast<std::size_t>(colormap)];
}

void blend_heat(cv::Mat& bgr, const std::vector<float>& heat, Colormap colormap, float alpha) {
  const cv::Mat& lut = colormap_lut(colormap);
  const float keep = 1.0f - alpha;
  for (int y = 0; y < bgr.rows; ++y) {
    auto* row = bgr.ptr<std::uint8_t>(y);
    const float* h = heat.data() + static_cast<std::size_t>(y) * bgr.cols;
    for (int x = 0; x < bgr.cols; ++x) {
      const int idx = std::clamp(static_cast<int>(h[x] * 255.0f + 0.5f), 0, 255);
      const auto& c = lut.at<cv::Vec3b>(idx);
      for (int ch = 0; ch < 3; ++ch)
        row[3 * x + ch] = static_cast<std::uint8_t>(std::clamp(keep * row[3 * x + ch] + alpha * c[ch] + 0.5f, 0.0f, 255.0f));
    }
  }
}

}  // namespace detail

namespace {

// Reflect-101 ("mirror without repeating the edge") index into [0, n).
int mirror(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

// For every output position, the 4 source taps and Catmull-Rom weights (cubic convolution with
// a = -0.5: interpolating, C1, little overshoot). Output pixel x samples source coordinate
// u = (x + 0.5) * n / size - 0.5, so source cell c is hit exactly at its centre.
struct Taps {
  std::vector<int> index;     // (size, 4)
  std::vector<float> weight;  // (size, 4)
};

Taps cubic_taps(int n, int size) {
  Taps t;
  t.index.resize(static_cast<std::size_t>(size) * 4);
  t.weight.resize(static_cast<std::size_t>(size) * 4);
  for (int x = 0; x < size; ++x) {
    const double u = (x + 0.5) * n / size - 0.5;
    const double f = std::floor(u), d = u - f;
    const double w[4] = {0.5 * (-d * d * d + 2 * d * d - d), 0.5 * (3 * d * d * d - 5 * d * d + 2),
                         0.5 * (-3 * d * d * d + 4 * d * d + d), 0.5 * (d * d * d - d * d)};
    for (int k = 0; k < 4; ++k) {
      t.index[static_cast<std::size_t>(x) * 4 + k] = mirror(static_cast<int>(f) - 1 + k, n);
      t.weight[static_cast<std::size_t>(x) * 4 + k] = static_cast<float>(w[k]);
    }
  }
  return t;
}

}  // namespace

std::vector<float> upsample_map(const AttentionMap& map, int width, int height, float flat_floor) {
  if (!(flat_floor >= 0)) throw InputError(fmt::format("upsample_map: flat_floor must be >= 0, got {}", flat_floor));
  if (width < 1 || height < 1) throw InputError(fmt::format("upsample_map: invalid target size {}x{}", width, height));
  if (map.rows < 1 || map.cols < 1 || map.values.size() != static_cast<std::size_t>(map.rows) * map.cols)
    throw InputError(fmt::format("upsample_map: map of {}x{} holds {} values", map.rows, map.cols, map.values.size()));
  // Separable: rows first (rows x width), then columns.
  const Taps tx = cubic_taps(map.cols, width), ty = cubic_taps(map.rows, height);
  std::vector<float> horizontal(static_cast<std::size_t>(map.rows) * width);
  for (int r = 0; r < map.rows; ++r) {
    const float* src = map.values.data() + static_cast<std::size_t>(r) * map.cols;
    float* dst = horizontal.data() + static_cast<std::size_t>(r) * width;
    for (int x = 0; x < width; ++x) {
      float v = 0;
      for (int k = 0; k < 4; ++k) v += tx.weight[x * 4 + k] * src[tx.index[x * 4 + k]];
      dst[x] = v;
    }
  }
  std::vector<float> out(static_cast<std::size_t>(width) * height);
  float peak = 0;
  for (int y = 0; y < height; ++y) {
    float* dst = out.data() + static_cast<std::size_t>(y) * width;
    const float* rows[4];
    float w[4];
    for (int k = 0; k < 4; ++k) {
      rows[k] = horizontal.data() + static_cast<std::size_t>(ty.index[y * 4 + k]) * width;
      w[k] = ty.weight[y * 4 + k];
    }
    for (int x = 0; x < width; ++x) {
      const float v = std::max(0.0f, w[0] * rows[0][x] + w[1] * rows[1][x] + w[2] * rows[2][x] + w[3] * rows[3][x]);
      dst[x] = v;
      peak = std::max(peak, v);
    }
  }
  const float top = std::max(peak, flat_floor / static_cast<float>(map.values.size()));
  if (top > 0)
    for (float& v : out) v = std::min(1.0f, v / top);
  return out;
}

Colormap parse_colormap(std::string_view name) {
  if (name == "inferno") return Colormap::Inferno;
  if (name == "viridis") return Colormap::Viridis;
  if (name == "turbo") return Colormap::Turbo;
  if (name == "jet") return Colormap::Jet;
  throw InputError(fmt::format("unknown colour map '{}' (expected inferno, viridis, turbo or jet)", name));
}

std::array<std::uint8_t, 3> colormap_rgb(Colormap colormap, float t) {
  const int idx = std::clamp(static_cast<int>(std::clamp(t, 0.0f, 1.0f) * 255.0f + 0.5f), 0, 255);
  const auto& c = detail::colormap_lut(colormap).at<cv::Vec3b>(idx);
  return {c[2], c[1], c[0]};
}

RgbImage overlay(const RgbImage& image, const AttentionMap& map, const OverlayOptions& options) {
  if (!(options.alpha >= 0.0f && options.alpha <= 1.0f))
    throw InputError(fmt::format("overlay: alpha {} outside [0, 1]", options.alpha));
  cv::Mat bgr = detail::bgr_from_rgb(image);
  const auto heat = upsample_map(map, image.width, image.height, options.flat_floor);
  detail::blend_heat(bgr, heat, options.colormap, options.alpha);
  return detail::rgb_from_bgr_mat(bgr);
}

}  // namespace xcaption::viz
