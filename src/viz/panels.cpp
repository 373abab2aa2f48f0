// Panel grids and caption bands drawn with OpenCV's Hershey fonts (include/xcaption/viz.hpp).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/viz/draw.hpp"

namespace xcaption::viz {

namespace detail {

namespace {

int text_width(const std::string& s, double scale, int thickness) {
  int baseline = 0;
  return cv::getTextSize(s, kFont, scale, thickness, &baseline).width;
}

// Vertical extent of a line at `scale`: ascent of capitals plus the descent of "g" / "y".
int line_height(double scale, int thickness) {
  int baseline = 0;
  const cv::Size s = cv::getTextSize("Ag", kFont, scale, thickness, &baseline);
  return s.height + baseline + thickness;
}

}  // namespace

std::vector<std::string> wrap_text(std::string_view ascii, double scale, int thickness, int max_width) {
  std::vector<std::string> words;
  std::string cur;
  for (char c : ascii) {
    if (c == ' ') {
      if (!cur.empty()) words.push_back(std::move(cur)), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));

  std::vector<std::string> lines;
  std::string line;
  for (auto& w : words) {
    const std::string joined = line.empty() ? w : line + " " + w;
    if (text_width(joined, scale, thickness) <= max_width) {
      line = joined;
      continue;
    }
    if (!line.empty()) lines.push_back(std::move(line)), line.clear();
    // A word longer than a line is cut by characters.
    while (text_width(w, scale, thickness) > max_width && w.size() > 1) {
      std::size_t n = w.size() - 1;
      while (n > 1 && text_width(w.substr(0, n), scale, thickness) > max_width) --n;
      lines.push_back(w.substr(0, n));
      w.erase(0, n);
    }
    line = w;
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

void draw_caption_band(cv::Mat& bgr, std::string_view utf8, int max_lines) {
  const std::string text = hershey_text(utf8);
  if (text.empty() || bgr.empty()) return;
  const double scale = std::clamp(bgr.rows / 420.0, 0.35, 2.0);
  const int thickness = std::max(1, static_cast<int>(std::lround(scale * 1.6)));
  const int pad = std::max(3, static_cast<int>(std::lround(6 * scale)));
  auto lines = wrap_text(text, scale, thickness, bgr.cols - 2 * pad);
  if (max_lines > 0 && static_cast<int>(lines.size()) > max_lines) {
    lines.resize(static_cast<std::size_t>(max_lines));
    lines.back() += "...";
  }
  const int lh = line_height(scale, thickness);
  const int band = std::min(bgr.rows, static_cast<int>(lines.size()) * lh + 2 * pad);
  cv::Mat roi = bgr.rowRange(bgr.rows - band, bgr.rows);
  roi.convertTo(roi, -1, 0.35, 0);  // darken what lies under the text
  int baseline = 0;
  const int ascent = cv::getTextSize("A", kFont, scale, thickness, &baseline).height;
  int y = bgr.rows - band + pad + ascent;
  for (const auto& l : lines) {
    const int x = std::max(pad, (bgr.cols - text_width(l, scale, thickness)) / 2);
    cv::putText(bgr, l, {x, y}, kFont, scale, {255, 255, 255}, thickness, cv::LINE_AA);
    y += lh;
  }
}

}  // namespace detail

RgbImage panel_grid(std::span<const Panel> panels, const PanelGridOptions& options) {
  using detail::kFont;
  if (panels.empty()) throw InputError("panel_grid: no panels given");
  const RgbImage& first = panels[0].image;
  if (first.width <= 0 || first.height <= 0) throw InputError("panel_grid: the first panel is empty");
  if (options.columns < 0 || options.max_panel_side < 0)
    throw InputError(fmt::format("panel_grid: invalid columns {} or max_panel_side {}", options.columns,
                                 options.max_panel_side));

  double s = 1.0;
  if (options.max_panel_side > 0)
    s = options.max_panel_side / static_cast<double>(std::max(first.width, first.height));
  const int pw = std::max(1, static_cast<int>(std::lround(first.width * s)));
  const int ph = std::max(1, static_cast<int>(std::lround(first.height * s)));
  const int n = static_cast<int>(panels.size());
  const int cols = options.columns > 0 ? std::min(options.columns, n) : std::min(n, 5);
  const int rows = (n + cols - 1) / cols;

  const double scale = std::clamp(pw / 420.0, 0.35, 1.0);
  const int thickness = 1;
  int baseline = 0;
  const cv::Size ag = cv::getTextSize("Ag", kFont, scale, thickness, &baseline);
  const int pad = std::max(3, pw / 60);
  const int label_h = ag.height + baseline + 2 * pad;
  const int gap = std::max(4, pw / 40);
  const int grid_w = cols * pw + (cols + 1) * gap;

  std::vector<std::string> title;
  const double title_scale = std::min(1.2, scale * 1.15);
  const int title_th = title_scale >= 0.8 ? 2 : 1;
  if (!options.title.empty())
    title = detail::wrap_text(hershey_text(options.title), title_scale, title_th, grid_w - 2 * gap);
  int tb = 0;
  const cv::Size tag = cv::getTextSize("Ag", kFont, title_scale, title_th, &tb);
  const int title_line = tag.height + tb + title_th + pad;
  const int title_h = title.empty() ? 0 : static_cast<int>(title.size()) * title_line + gap;

  const int grid_h = title_h + rows * (ph + label_h) + (rows + 1) * gap;
  cv::Mat canvas(grid_h, grid_w, CV_8UC3, cv::Scalar(255, 255, 255));

  int y = gap + tag.height;
  for (const auto& l : title) {
    const int x = std::max(gap, (grid_w - cv::getTextSize(l, kFont, title_scale, title_th, &tb).width) / 2);
    cv::putText(canvas, l, {x, y}, kFont, title_scale, {0, 0, 0}, title_th, cv::LINE_AA);
    y += title_line;
  }

  for (int i = 0; i < n; ++i) {
    const int r = i / cols, c = i % cols;
    const int x0 = gap + c * (pw + gap), y0 = title_h + gap + r * (ph + label_h + gap);
    cv::Mat bgr = detail::bgr_from_rgb(panels[static_cast<std::size_t>(i)].image);
    cv::Mat scaled;
    cv::resize(bgr, scaled, {pw, ph}, 0, 0, pw < bgr.cols ? cv::INTER_AREA : cv::INTER_CUBIC);
    scaled.copyTo(canvas(cv::Rect(x0, y0, pw, ph)));

    std::string label = hershey_text(panels[static_cast<std::size_t>(i)].label);
    double ls = scale;
    int w = cv::getTextSize(label, kFont, ls, thickness, &baseline).width;
    if (w > pw - 2) ls = std::max(0.3, ls * (pw - 2) / static_cast<double>(w));
    w = cv::getTextSize(label, kFont, ls, thickness, &baseline).width;
    while (w > pw - 2 && label.size() > 3) {  // still too wide at the smallest size: cut it
      label.erase(label.size() - 4);
      label += "..";
      w = cv::getTextSize(label, kFont, ls, thickness, &baseline).width;
    }
    const int tx = x0 + std::max(0, (pw - w) / 2);
    const int ty = y0 + ph + pad + ag.height;
    cv::putText(canvas, label, {tx, ty}, kFont, ls, {0, 0, 0}, thickness, cv::LINE_AA);
  }
  return detail::rgb_from_bgr_mat(canvas);
}

RgbImage fit_image(const RgbImage& image, int max_side) {
  if (max_side < 1) throw InputError(fmt::format("fit_image: invalid size {}", max_side));
  const cv::Mat bgr = detail::bgr_from_rgb(image);
  const double s = max_side / static_cast<double>(std::max(image.width, image.height));
  const int w = std::max(1, static_cast<int>(std::lround(image.width * s)));
  const int h = std::max(1, static_cast<int>(std::lround(image.height * s)));
  if (w == image.width && h == image.height) return image;
  cv::Mat out;
  cv::resize(bgr, out, {w, h}, 0, 0, s < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
  return detail::rgb_from_bgr_mat(out);
}

void draw_caption_band(RgbImage& image, std::string_view text, int max_lines) {
  cv::Mat bgr = detail::bgr_from_rgb(image);
  detail::draw_caption_band(bgr, text, max_lines);
  image = detail::rgb_from_bgr_mat(bgr);
}

}  // namespace xcaption::viz
