#include "encoders/image_processor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <numbers>
#include <system_error>
#include <cerrno>
#include <string_view>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <xcaption/errors.hpp>

#include "src/io/image_header.hpp"

// Pillow's coefficients come from plain double arithmetic (its builds use no FMA). A fused
// multiply-add (e.g. with -march=native) rounds the filter polynomials differently, which can move
// a fixed-point weight by one and a pixel by one level, so contraction is off in this file.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace xcaption {

namespace {

// ---------------------------------------------------------------------------------------------
// Pillow's resampling filters. ref: Pillow src/libImaging/Resample.c (9.x). Each filter is
// evaluated in double exactly as there; the support is the half-width in input pixels at scale 1.

double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_filter(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= std::numbers::pi;
  // ref: Pillow writes the window constants as float literals (0.54f, 0.46f) that are promoted to
  // double; 0.54 and 0.54f differ in the 9th digit, which can move a fixed-point weight by one.
  return std::sin(x) / x * (static_cast<double>(0.54f) + static_cast<double>(0.46f) * std::cos(x));
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;  // ref: Pillow uses the Keys kernel with a = -0.5
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  // Truncated at +-3, half-open like Pillow's.
  return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_for(int resample) {
  switch (resample) {
    case kPilBox: return {box_filter, 0.5};
    case kPilBilinear: return {bilinear_filter, 1.0};
    case kPilHamming: return {hamming_filter, 1.0};
    case kPilBicubic: return {bicubic_filter, 2.0};
    case kPilLanczos: return {lanczos_filter, 3.0};
    default:
      throw InputError(fmt::format(
          "unsupported resample filter {}: expected a PIL id 0-5 (0 nearest, 1 lanczos, "
          "2 bilinear, 3 bicubic, 4 box, 5 hamming)", resample));
  }
}

// ref: Pillow PRECISION_BITS = 32 - 8 - 2: weights are 22-bit fixed point, leaving room for
// 8-bit samples and for partial sums over 1 or below 0 (negative lobes) in an int32.
constexpr int kPrecisionBits = 22;

// Per output pixel along one axis: the first input index and the number of taps, plus `ksize`
// fixed-point weights (only the first `count` are meaningful).
struct AxisCoeffs {
  int ksize = 0;
  std::vector<int> first;   // (out,)
  std::vector<int> count;   // (out,)
  std::vector<std::int32_t> weights;  // (out, ksize)
};

// ref: Pillow precompute_coeffs + normalize_coeffs_8bpc, for the whole-image box (in0 = 0,
// in1 = in_size; Pillow holds the box in float, which is exact for any image size here).
AxisCoeffs precompute_coeffs(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  // Downscaling widens the filter by the scale (antialiasing); upscaling keeps it at 1.
  const double filterscale = std::max(scale, 1.0);
  const double support = filter.support * filterscale;
  const double inv_filterscale = 1.0 / filterscale;

  AxisCoeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);

  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // Pillow "rounds" the window ends with +0.5 and a truncating int cast (toward zero), then
    // clips them to the image.
    int xmin = static_cast<int>(center - support + 0.5);
    xmin = std::max(xmin, 0);
    int xmax = static_cast<int>(center + support + 0.5);
    xmax = std::min(xmax, in_size);
    const int n = xmax - xmin;

    double ww = 0.0;
    for (int x = 0; x < n; ++x) {
      const double w = filter.fn((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    std::int32_t* kw = &c.weights[static_cast<std::size_t>(xx) * c.ksize];
    for (int x = 0; x < n; ++x) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      // Round half away from zero via a truncating cast, as Pillow does.
      const double scaled = v * (1 << kPrecisionBits);
      kw[x] = static_cast<std::int32_t>(v < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    c.first[xx] = xmin;
    c.count[xx] = n;
  }
  return c;
}

// ref: Pillow clip8: the accumulator starts at 1 << (PRECISION_BITS - 1) (rounding), is shifted
// arithmetically (floor) and clamped to 0..255.
inline std::uint8_t clip8(std::int32_t acc) {
  const std::int32_t v = acc >> kPrecisionBits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

constexpr std::int32_t kRoundHalf = std::int32_t{1} << (kPrecisionBits - 1);

// Horizontal pass over rows [row0, row0 + rows) of `src`, written to a (rows, out_w) image.
RgbImage resample_horizontal(const RgbImage& src, int row0, int rows, const AxisCoeffs& c,
                             int out_w) {
  RgbImage dst;
  dst.width = out_w;
  dst.height = rows;
  dst.data.resize(static_cast<std::size_t>(out_w) * rows * 3);
  for (int yy = 0; yy < rows; ++yy) {
    const std::uint8_t* in = &src.data[static_cast<std::size_t>(yy + row0) * src.width * 3];
    std::uint8_t* out = &dst.data[static_cast<std::size_t>(yy) * out_w * 3];
    for (int xx = 0; xx < out_w; ++xx) {
      const std::int32_t* k = &c.weights[static_cast<std::size_t>(xx) * c.ksize];
      const std::uint8_t* p = in + static_cast<std::size_t>(c.first[xx]) * 3;
      std::int32_t s0 = kRoundHalf, s1 = kRoundHalf, s2 = kRoundHalf;
      for (int x = 0; x < c.count[xx]; ++x) {
        s0 += p[x * 3 + 0] * k[x];
        s1 += p[x * 3 + 1] * k[x];
        s2 += p[x * 3 + 2] * k[x];
      }
      out[xx * 3 + 0] = clip8(s0);
      out[xx * 3 + 1] = clip8(s1);
      out[xx * 3 + 2] = clip8(s2);
    }
  }
  return dst;
}

// Vertical pass: output row yy reads rows first[yy] - row_offset ... of `src`.
RgbImage resample_vertical(const RgbImage& src, int row_offset, const AxisCoeffs& c, int out_h) {
  RgbImage dst;
  dst.width = src.width;
  dst.height = out_h;
  const std::size_t stride = static_cast<std::size_t>(src.width) * 3;
  dst.data.resize(stride * out_h);
  for (int yy = 0; yy < out_h; ++yy) {
    const std::int32_t* k = &c.weights[static_cast<std::size_t>(yy) * c.ksize];
    const std::uint8_t* base = &src.data[static_cast<std::size_t>(c.first[yy] - row_offset) * stride];
    std::uint8_t* out = &dst.data[static_cast<std::size_t>(yy) * stride];
    for (std::size_t i = 0; i < stride; ++i) {
      std::int32_t s = kRoundHalf;
      for (int y = 0; y < c.count[yy]; ++y) s += base[y * stride + i] * k[y];
      out[i] = clip8(s);
    }
  }
  return dst;
}

// ref: Pillow _resize with NEAREST -> ImagingTransform(AFFINE) -> ImagingScaleAffine. The source
// coordinate starts at half a step and is accumulated step by step in double (not computed as
// (x + 0.5) * step), then truncated; a coordinate outside the image leaves the pixel 0 (fill).
std::vector<int> nearest_table(int in_size, int out_size) {
  const double step = static_cast<double>(in_size) / out_size;
  std::vector<int> table(out_size, -1);
  double pos = step * 0.5;
  for (int x = 0; x < out_size; ++x) {
    const int src = pos < 0.0 ? -1 : static_cast<int>(pos);
    if (src >= 0 && src < in_size) table[x] = src;
    pos += step;
  }
  return table;
}

RgbImage resize_nearest(const RgbImage& src, int out_w, int out_h) {
  const std::vector<int> xs = nearest_table(src.width, out_w);
  const std::vector<int> ys = nearest_table(src.height, out_h);
  RgbImage dst;
  dst.width = out_w;
  dst.height = out_h;
  dst.data.assign(static_cast<std::size_t>(out_w) * out_h * 3, 0);
  for (int y = 0; y < out_h; ++y) {
    if (ys[y] < 0) continue;
    const std::uint8_t* in = &src.data[static_cast<std::size_t>(ys[y]) * src.width * 3];
    std::uint8_t* out = &dst.data[static_cast<std::size_t>(y) * out_w * 3];
    for (int x = 0; x < out_w; ++x) {
      if (xs[x] < 0) continue;
      std::memcpy(out + x * 3, in + xs[x] * 3, 3);
    }
  }
  return dst;
}

// PIL refuses a truncated PNG or JPEG ("image file is truncated"); libjpeg would decode the
// missing part as gray with only a warning, and libpng prints to stderr before failing. Check the
// end markers first so that both fail cleanly. Returns nullptr when the data looks complete or is
// another format.
const char* truncation_reason(std::span<const std::uint8_t> b) {
  static constexpr std::uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 8 && std::equal(kPngSignature, kPngSignature + 8, b.begin())) {
    // The IEND chunk: zero length, then the type. Trailing bytes after it are tolerated.
    static constexpr std::uint8_t kIend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
    if (std::search(b.begin() + 8, b.end(), kIend, kIend + 8) == b.end()) {
      return "truncated PNG (no IEND chunk)";
    }
    return nullptr;
  }
  if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
    // Entropy-coded data never holds 0xFF 0xD9 (0xFF is stuffed), so the image is complete only if
    // an EOI marker follows the last start-of-scan marker. An EXIF thumbnail's EOI comes earlier.
    std::size_t last_sos = 0, last_eoi = 0;
    for (std::size_t i = 0; i + 1 < b.size(); ++i) {
      if (b[i] != 0xff) continue;
      if (b[i + 1] == 0xda) last_sos = i;
      if (b[i + 1] == 0xd9) last_eoi = i;
    }
    if (last_sos == 0) return "truncated JPEG (no start of scan)";
    if (last_eoi < last_sos) return "truncated JPEG (no end-of-image marker after the last scan)";
  }
  return nullptr;
}

void check_image(const RgbImage& image, const char* what) {
  if (image.width < 1 || image.height < 1) {
    throw ShapeError(fmt::format("{}: image size must be positive, got {}x{}", what, image.width,
                                 image.height));
  }
  const std::size_t expected = static_cast<std::size_t>(image.width) * image.height * 3;
  if (image.data.size() != expected) {
    throw ShapeError(fmt::format("{}: {}x{} RGB image needs {} bytes, got {}", what, image.width,
                                 image.height, expected, image.data.size()));
  }
}

}  // namespace

RgbImage rgb_from_bgr(const cv::Mat& bgr) {
  if (bgr.empty()) throw InputError("rgb_from_bgr: the image is empty");
  int code = 0;
  switch (bgr.type()) {
    case CV_8UC3: code = cv::COLOR_BGR2RGB; break;
    case CV_8UC4: code = cv::COLOR_BGRA2RGB; break;
    case CV_8UC1: code = cv::COLOR_GRAY2RGB; break;
    default:
      throw InputError(fmt::format(
          "rgb_from_bgr: expected an 8-bit image with 1, 3 or 4 channels, got depth {} with {} "
          "channels", bgr.depth(), bgr.channels()));
  }
  RgbImage out;
  out.width = bgr.cols;
  out.height = bgr.rows;
  out.data.resize(static_cast<std::size_t>(bgr.cols) * bgr.rows * 3);
  // Wrap our buffer so that cvtColor writes straight into it (continuous, no padding).
  cv::Mat dst(bgr.rows, bgr.cols, CV_8UC3, out.data.data());
  cv::cvtColor(bgr, dst, code);
  if (dst.data != out.data.data()) {
    throw InputError("rgb_from_bgr: internal error, conversion reallocated its output");
  }
  return out;
}

RgbImage load_image(const std::filesystem::path& path, const ImageLimits& limits) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw FormatError(fmt::format("{}: no such file", path.string()));
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw FormatError(fmt::format("{}: not a regular file ({})", path.string(),
                                  std::filesystem::is_directory(status) ? "a folder" : "a FIFO, socket or device"));
  }
  std::vector<std::uint8_t> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw FormatError(fmt::format("{}: cannot open the file: {}", path.string(), std::strerror(errno)));
    }
    // The size first: a file over the limit is refused without reading it.
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (size > limits.max_bytes) {
      throw InputError(fmt::format("{}: the file has {} bytes, more than the limit of {} bytes for an image",
                                   path.string(), static_cast<std::int64_t>(size), limits.max_bytes));
    }
    if (size > 0) bytes.resize(static_cast<std::size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (in.bad() || (size > 0 && in.gcount() != size))
      throw FormatError(fmt::format("{}: read error (the file changed while it was read?)", path.string()));
  }
  if (bytes.empty()) throw FormatError(fmt::format("{}: the file is empty", path.string()));
  return decode_image(bytes, path.string(), limits);
}

RgbImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  if (bytes.empty()) throw FormatError(fmt::format("{}: the image is empty", name));
  if (static_cast<std::uint64_t>(bytes.size()) > static_cast<std::uint64_t>(limits.max_bytes) ||
      bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw InputError(fmt::format("{}: {} bytes is more than the limit of {} bytes for an image", name, bytes.size(),
                                 std::min<std::int64_t>(limits.max_bytes, std::numeric_limits<int>::max())));
  if (const char* why = truncation_reason(bytes)) {
    throw FormatError(fmt::format("{}: {}", name, why));
  }
  // The decompression-bomb guard: the declared size, before any decoder allocates for it.
  const std::string_view header_bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (const auto header = probe_image(header_bytes)) {
    if (header->width < 1 || header->height < 1)
      throw FormatError(fmt::format("{}: the {} header declares a {}x{} image", name, header->format, header->width,
                                    header->height));
    if (exceeds_pixels(header->width, header->height, limits.max_pixels))
      throw InputError(fmt::format(
          "{}: the {} header declares {}x{} = {:.0f} pixels, more than the limit of {} pixels (--max-pixels)", name,
          header->format, header->width, header->height,
          static_cast<double>(header->width) * static_cast<double>(header->height), limits.max_pixels));
  }

  // ref: HF's image loading (transformers image_utils.load_image) opens with PIL, applies
  // ImageOps.exif_transpose and converts to RGB, dropping alpha. IMREAD_COLOR does the same
  // (EXIF orientation on by default, alpha dropped, gray expanded) but yields BGR.
  cv::Mat bgr;
  try {
    // A header over the caller's bytes: no copy.
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8U, const_cast<std::uint8_t*>(bytes.data()));
    bgr = cv::imdecode(encoded, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw FormatError(fmt::format("{}: cannot decode image: {}", name, e.what()));
  }
  if (bgr.empty()) {
    throw FormatError(fmt::format(
        "{}: cannot decode the image (unsupported format or corrupt data)", name));
  }
  if (bgr.cols < 1 || bgr.rows < 1) {
    throw FormatError(fmt::format("{}: decoded image has zero size", name));
  }
  // Formats without a header probe are checked once decoded.
  if (exceeds_pixels(bgr.cols, bgr.rows, limits.max_pixels))
    throw InputError(fmt::format("{}: the image has {}x{} pixels, more than the limit of {} pixels (--max-pixels)",
                                 name, bgr.cols, bgr.rows, limits.max_pixels));
  return rgb_from_bgr(bgr);
}

RgbImage pil_resize(const RgbImage& src, int out_width, int out_height, int resample) {
  check_image(src, "pil_resize");
  if (out_width < 1 || out_height < 1) {
    throw ShapeError(fmt::format("pil_resize: output size must be positive, got {}x{}", out_width,
                                 out_height));
  }
  // Validate the id before the same-size shortcut so a bad config fails on every image.
  const bool nearest = resample == kPilNearest;
  const Filter filter = nearest ? Filter{nullptr, 0.0} : filter_for(resample);

  // ref: Pillow Image.resize returns self.copy() when the size is unchanged (and the box is the
  // whole image), whatever the filter.
  if (out_width == src.width && out_height == src.height) return src;
  if (nearest) return resize_nearest(src, out_width, out_height);

  // ref: Pillow ImagingResampleInner. The vertical coefficients are computed first so that the
  // horizontal pass only produces the source rows the vertical pass reads ([ybox_first,
  // ybox_last)); each row's result does not depend on which rows are computed, so this only saves
  // work. An axis whose size is unchanged is skipped (its coefficients would be the identity).
  const bool need_horizontal = out_width != src.width;
  const bool need_vertical = out_height != src.height;
  const AxisCoeffs vert = precompute_coeffs(src.height, out_height, filter);
  const int ybox_first = vert.first.front();
  const int ybox_last = vert.first.back() + vert.count.back();

  if (!need_horizontal) return resample_vertical(src, 0, vert, out_height);
  RgbImage temp = resample_horizontal(src, ybox_first, ybox_last - ybox_first,
                                      precompute_coeffs(src.width, out_width, filter), out_width);
  // Without a vertical resize the row window is the whole image, so `temp` is the result.
  if (!need_vertical) return temp;
  return resample_vertical(temp, ybox_first, vert, out_height);
}

void preprocess_image(const RgbImage& image, const PreprocessorConfig& config, float* dst) {
  check_image(image, "preprocess_image");
  if (config.height < 1 || config.width < 1) {
    throw ShapeError(fmt::format("preprocessor size must be positive, got height {} width {}",
                                 config.height, config.width));
  }
  const int height = static_cast<int>(config.height);
  const int width = static_cast<int>(config.width);
  if (config.do_normalize && (config.image_mean.size() != 3 || config.image_std.size() != 3)) {
    throw ShapeError(fmt::format(
        "preprocessor image_mean/image_std: expected 3 values each, got {} and {}",
        config.image_mean.size(), config.image_std.size()));
  }

  // ref: ViTImageProcessor.resize -> image_transforms.resize: a uint8 HWC array goes to
  // PIL.Image.fromarray unchanged (no rescale for uint8), is resized with
  // Image.resize((width, height), resample, reducing_gap=None) and comes back as uint8.
  RgbImage resized;
  const RgbImage* img = &image;
  if (config.do_resize) {
    resized = pil_resize(image, width, height, config.resample);
    img = &resized;
  } else if (image.width != width || image.height != height) {
    throw ShapeError(fmt::format(
        "preprocess_image: do_resize is false, so the image must be {}x{} (width x height), "
        "got {}x{}", width, height, image.width, image.height));
  }

  // ref: image_transforms.rescale: image.astype(float64) * scale, then .astype(float32).
  // ref: image_transforms.normalize: float32 input stays float32; mean and std become float32
  // arrays; (image - mean) / std evaluated in float32. Without rescale, normalize casts the
  // uint8 pixels to float32 first.
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      float x = config.do_rescale ? static_cast<float>(static_cast<double>(v) * config.rescale_factor)
                                  : static_cast<float>(v);
      if (config.do_normalize) {
        const float diff = x - config.image_mean[c];
        x = diff / config.image_std[c];
      }
      lut[c][v] = x;
    }
  }
  const std::size_t plane = static_cast<std::size_t>(height) * width;
  const std::uint8_t* p = img->data.data();
  for (std::size_t i = 0; i < plane; ++i) {
    dst[i] = lut[0][p[i * 3 + 0]];
    dst[plane + i] = lut[1][p[i * 3 + 1]];
    dst[2 * plane + i] = lut[2][p[i * 3 + 2]];
  }
}

}  // namespace xcaption
