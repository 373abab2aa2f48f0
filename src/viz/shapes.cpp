// Drawing a task's answer (Florence-2's <OD>, <OCR_WITH_REGION>, ...) on the image it was read
// from: outlines and labels, with OpenCV.
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/viz/draw.hpp"

namespace xcaption::viz {

RgbImage draw_task_shapes(const RgbImage& image, const TaskResult& result) {
  if (image.width <= 0 || image.height <= 0) throw InputError("draw_task_shapes: empty image");
  cv::Mat bgr = detail::bgr_from_rgb(image);
  const int side = std::max(image.width, image.height);
  const int thickness = std::max(1, side / 300);
  const double scale = std::max(0.4, side / 1200.0);
  // Distinct hues in turn (BGR), bright enough on photos.
  static const cv::Scalar palette[] = {{0, 0, 255}, {0, 200, 0}, {255, 64, 0}, {0, 200, 255},
                                       {255, 0, 200}, {200, 200, 0}, {0, 128, 255}, {128, 0, 255}};
  std::size_t k = 0;
  for (const TaskShape& s : result.shapes) {
    if (s.points.size() < 4) continue;
    const cv::Scalar colour = palette[k++ % (sizeof(palette) / sizeof(palette[0]))];
    std::vector<cv::Point> pts;
    if (s.kind == TaskShape::Kind::Box) {
      const float x0 = s.points[0], y0 = s.points[1], x1 = s.points[2], y1 = s.points[3];
      pts = {{static_cast<int>(std::lround(x0)), static_cast<int>(std::lround(y0))},
             {static_cast<int>(std::lround(x1)), static_cast<int>(std::lround(y0))},
             {static_cast<int>(std::lround(x1)), static_cast<int>(std::lround(y1))},
             {static_cast<int>(std::lround(x0)), static_cast<int>(std::lround(y1))}};
    } else {
      for (std::size_t i = 0; i + 1 < s.points.size(); i += 2)
        pts.push_back({static_cast<int>(std::lround(s.points[i])), static_cast<int>(std::lround(s.points[i + 1]))});
    }
    const std::vector<std::vector<cv::Point>> polys{pts};
    cv::polylines(bgr, polys, /*isClosed=*/true, colour, thickness, cv::LINE_AA);
    const std::string label = hershey_text(s.label);
    if (label.empty()) continue;
    int baseline = 0;
    const cv::Size size = cv::getTextSize(label, detail::kFont, scale, thickness, &baseline);
    cv::Point at = pts.front();
    for (const auto& p : pts) at = {std::min(at.x, p.x), std::min(at.y, p.y)};
    at.y = std::max(size.height + 2, at.y - 2);
    at.x = std::clamp(at.x, 0, std::max(0, bgr.cols - size.width));
    cv::rectangle(bgr, {at.x, at.y - size.height - 2}, {at.x + size.width, at.y + baseline}, colour, cv::FILLED);
    cv::putText(bgr, label, at, detail::kFont, scale, {255, 255, 255}, std::max(1, thickness / 2), cv::LINE_AA);
  }
  return detail::rgb_from_bgr_mat(bgr);
}

}  // namespace xcaption::viz
