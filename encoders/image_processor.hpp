// Image loading and the ViTImageProcessor "slow" (PIL) preprocessing path, reproduced bit for bit:
// decode with OpenCV, resize exactly as Pillow's Image.resize does, then rescale and normalize in
// the dtypes transformers uses. The model sees a (3, H, W) float32 tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <xcaption/image.hpp>

#include "src/io/preprocessor_config.hpp"

namespace cv {
class Mat;
}

namespace xcaption {

// RgbImage, load_image and decode_image are public: include/xcaption/image.hpp.

/// Pillow's resampling filter ids (PIL.Image.Resampling), as used by `resample` in
/// preprocessor_config.json.
enum PilResample : int {
  kPilNearest = 0,
  kPilLanczos = 1,
  kPilBilinear = 2,
  kPilBicubic = 3,
  kPilBox = 4,
  kPilHamming = 5,
};

/// Decodes any file OpenCV's imread reads with IMREAD_COLOR: alpha is dropped (not composited),
/// grayscale and palette images are expanded, 16-bit samples are reduced to 8 bits, and the EXIF
/// orientation is applied. Returns RGB.
/// Throws FormatError naming the path for a missing file, a path that is not a regular file, an
/// empty file, or data OpenCV cannot decode (corrupt, truncated PNG, unknown format), and
/// InputError for a file or declared image larger than `limits` (include/xcaption/image.hpp).
RgbImage load_image(const std::filesystem::path& path, const ImageLimits& limits);

/// Copies an OpenCV image into RGB: CV_8UC3 is taken as BGR, CV_8UC4 as BGRA (alpha dropped),
/// CV_8UC1 as gray (replicated). Any stride is accepted (ROIs of larger images work).
/// Throws InputError for an empty image or another type.
RgbImage rgb_from_bgr(const cv::Mat& bgr);

/// PIL's Image.resize((out_width, out_height), resample, reducing_gap=None) on an RGB image,
/// bit-exact with Pillow 9.x's C code (the two-pass fixed-point convolution for filters 1-5, the
/// affine nearest-neighbour path for 0). The same size returns a copy, as PIL does.
/// Throws ShapeError if `src.data` does not hold width * height * 3 bytes or a size is < 1, and
/// InputError for an unknown resample id.
RgbImage pil_resize(const RgbImage& src, int out_width, int out_height, int resample);

/// ViTImageProcessor.preprocess for one RGB image (slow path, channels-first float32 output):
/// resize to (config.height, config.width) with pil_resize when do_resize, rescale (uint8 times
/// rescale_factor in double, then cast to float), normalize ((x - mean) / std in float32).
/// `dst` receives 3 * config.height * config.width floats in (C, H, W) order.
/// Without do_resize the image must already be config.width x config.height.
/// Throws ShapeError (image size, mean/std not 3 values, non-positive size) or InputError (resample).
void preprocess_image(const RgbImage& image, const PreprocessorConfig& config, float* dst);

}  // namespace xcaption
