// OpenCV-side helpers shared by the overlay code and the video annotator. Not public: the public
// API speaks RgbImage (include/xcaption/viz.hpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include <xcaption/image.hpp>
#include <xcaption/viz.hpp>

namespace xcaption::viz::detail {

/// RGB -> BGR CV_8UC3 copy, and back.
cv::Mat bgr_from_rgb(const RgbImage& image);
RgbImage rgb_from_bgr_mat(const cv::Mat& bgr);

/// 256-entry BGR lookup table of a colour map (CV_8UC3, 256 x 1).
const cv::Mat& colormap_lut(Colormap colormap);

/// Heat in [0, 1] (rows x cols floats matching `bgr`) blended into `bgr` in place.
void blend_heat(cv::Mat& bgr, const std::vector<float>& heat, Colormap colormap, float alpha);

/// The font every label uses.
inline constexpr int kFont = 0;  // cv::FONT_HERSHEY_SIMPLEX

/// Greedy word wrap of ASCII text to lines no wider than max_width pixels at `scale`; a single
/// word wider than the line is cut by characters.
std::vector<std::string> wrap_text(std::string_view ascii, double scale, int thickness, int max_width);

/// The caption band of draw_caption_band on a BGR image.
void draw_caption_band(cv::Mat& bgr, std::string_view utf8, int max_lines);

}  // namespace xcaption::viz::detail
