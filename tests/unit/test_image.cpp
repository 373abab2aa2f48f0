// Image loading and ViTImageProcessor preprocessing against fixtures written by Pillow
// (tools/make_image_fixtures.py). Resize results must match byte for byte and pixel_values bit for
// bit; on failure each case reports how many values differ and by how much at most.
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <xcaption/errors.hpp>

#include "encoders/image_processor.hpp"

namespace fs = std::filesystem;
using xcaption::RgbImage;

namespace {

const fs::path kDataDir = fs::path(XCAPTION_TEST_DATA) / "image";

nlohmann::json read_manifest() {
  std::ifstream in(kDataDir / "manifest.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// Reads a fixture PNG with OpenCV directly (not through load_image), as RGB.
RgbImage read_png_rgb(const fs::path& path) {
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR);
  REQUIRE_FALSE(bgr.empty());
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  RgbImage img;
  img.width = rgb.cols;
  img.height = rgb.rows;
  img.data.assign(rgb.data, rgb.data + rgb.total() * 3);
  return img;
}

struct ByteDiff {
  std::size_t mismatches = 0;
  int max_diff = 0;
  std::size_t first_index = 0;
};

ByteDiff compare_bytes(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want) {
  ByteDiff d;
  const std::size_t n = std::min(got.size(), want.size());
  for (std::size_t i = 0; i < n; ++i) {
    const int diff = std::abs(int(got[i]) - int(want[i]));
    if (diff != 0) {
      if (d.mismatches == 0) d.first_index = i;
      ++d.mismatches;
      d.max_diff = std::max(d.max_diff, diff);
    }
  }
  return d;
}

std::vector<float> read_f32(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() % 4 == 0);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), bytes.size());  // little-endian host assumed (x86-64)
  return out;
}

// A scratch folder removed at scope exit.
using xcaption::test::TempDir;

void write_bytes(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
}

// Checks that `fn` throws FormatError whose message names `path`.
template <typename Fn>
void require_format_error_naming(Fn&& fn, const fs::path& path) {
  try {
    fn();
    FAIL("expected FormatError for " << path);
  } catch (const xcaption::FormatError& e) {
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("pil_resize matches Pillow for every filter, downscale, upscale and mixed", "[image]") {
  const nlohmann::json manifest = read_manifest();
  std::map<std::string, RgbImage> sources;
  for (const auto& [name, file] : manifest.at("sources").items()) {
    sources[name] = xcaption::load_image(kDataDir / file.get<std::string>());
  }
  REQUIRE(manifest.at("resize").size() >= 60);
  std::size_t passed = 0;
  for (const auto& c : manifest.at("resize")) {
    const std::string file = c.at("file");
    const RgbImage& src = sources.at(c.at("source").get<std::string>());
    const RgbImage want = read_png_rgb(kDataDir / file);
    const RgbImage got = xcaption::pil_resize(src, c.at("width"), c.at("height"), c.at("resample"));
    REQUIRE(got.width == want.width);
    REQUIRE(got.height == want.height);
    REQUIRE(got.data.size() == want.data.size());
    const ByteDiff d = compare_bytes(got.data, want.data);
    INFO(file << ": " << d.mismatches << " of " << want.data.size()
              << " bytes differ, max |diff| " << d.max_diff << ", first at byte " << d.first_index);
    CHECK(d.mismatches == 0);
    if (d.mismatches == 0) ++passed;
  }
  CHECK(passed == manifest.at("resize").size());
}

TEST_CASE("pil_resize returns the image unchanged when the size is unchanged", "[image]") {
  const RgbImage src = xcaption::load_image(kDataDir / "src_noise37x23.png");
  for (int resample = 0; resample <= 5; ++resample) {
    CAPTURE(resample);
    const RgbImage out = xcaption::pil_resize(src, src.width, src.height, resample);
    CHECK(out.width == src.width);
    CHECK(out.height == src.height);
    CHECK(out.data == src.data);
  }
}

TEST_CASE("preprocess_image matches ViTImageProcessor pixel_values bit for bit", "[image]") {
  const nlohmann::json manifest = read_manifest();
  REQUIRE(manifest.at("preprocess").size() >= 2);
  for (const auto& c : manifest.at("preprocess")) {
    const std::string name = c.at("name");
    CAPTURE(name);
    const RgbImage src = xcaption::load_image(
        kDataDir / manifest.at("sources").at(c.at("source").get<std::string>()).get<std::string>());
    xcaption::PreprocessorConfig cfg;
    cfg.do_resize = true;
    cfg.height = c.at("height");
    cfg.width = c.at("width");
    cfg.resample = c.at("resample");
    cfg.rescale_factor = c.at("rescale_factor");
    cfg.image_mean = c.at("image_mean").get<std::vector<float>>();
    cfg.image_std = c.at("image_std").get<std::vector<float>>();
    const std::vector<float> want = read_f32(kDataDir / c.at("file").get<std::string>());
    REQUIRE(want.size() == static_cast<std::size_t>(3 * cfg.height * cfg.width));
    std::vector<float> got(want.size(), std::nanf(""));
    xcaption::preprocess_image(src, cfg, got.data());
    std::size_t mismatches = 0;
    double max_diff = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
        ++mismatches;
        max_diff = std::max(max_diff, std::fabs(double(got[i]) - double(want[i])));
      }
    }
    INFO(mismatches << " of " << want.size() << " floats differ, max |diff| " << max_diff
                    << "; first values got " << got[0] << ", " << got[1] << " want " << want[0]
                    << ", " << want[1]);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("preprocess_image without resize, rescale or normalize", "[image]") {
  RgbImage img;
  img.width = 2;
  img.height = 1;
  img.data = {0, 128, 255, 10, 20, 30};  // pixel (r,g,b) = (0,128,255), (10,20,30)
  xcaption::PreprocessorConfig cfg;
  cfg.do_resize = false;
  cfg.height = 1;
  cfg.width = 2;
  float out[6];

  SECTION("rescale only: uint8 * factor in double, then float") {
    cfg.do_normalize = false;
    xcaption::preprocess_image(img, cfg, out);
    CHECK(out[0] == static_cast<float>(0 * (1.0 / 255.0)));
    CHECK(out[1] == static_cast<float>(10 * (1.0 / 255.0)));
    CHECK(out[2] == static_cast<float>(128 * (1.0 / 255.0)));  // channel G starts at plane 1
    CHECK(out[5] == static_cast<float>(30 * (1.0 / 255.0)));
  }
  SECTION("rescale of every uint8 value follows the double product") {
    RgbImage ramp;
    ramp.width = 256;
    ramp.height = 1;
    for (int v = 0; v < 256; ++v) ramp.data.insert(ramp.data.end(), {uchar(v), uchar(v), uchar(v)});
    cfg.width = 256;
    cfg.do_normalize = false;
    std::vector<float> values(3 * 256);
    xcaption::preprocess_image(ramp, cfg, values.data());
    int float_product_differs = 0;
    for (int v = 0; v < 256; ++v) {
      CHECK(values[v] == static_cast<float>(v * (1.0 / 255.0)));
      CHECK(values[512 + v] == values[v]);
      if (static_cast<float>(v) * static_cast<float>(1.0 / 255.0) != values[v]) ++float_product_differs;
    }
    // A float32 product would not be the same function, so the dtype matters.
    CHECK(float_product_differs > 0);
  }
  SECTION("normalize only: raw uint8 values as float32") {
    cfg.do_rescale = false;
    cfg.image_mean = {1.0f, 2.0f, 3.0f};
    cfg.image_std = {2.0f, 4.0f, 8.0f};
    xcaption::preprocess_image(img, cfg, out);
    CHECK(out[0] == -0.5f);          // (0 - 1) / 2
    CHECK(out[1] == 4.5f);           // (10 - 1) / 2
    CHECK(out[2] == 31.5f);          // (128 - 2) / 4
    CHECK(out[5] == 27.0f / 8.0f);   // (30 - 3) / 8
  }
  SECTION("do_resize false needs the configured size") {
    cfg.width = 3;
    CHECK_THROWS_AS(xcaption::preprocess_image(img, cfg, out), xcaption::ShapeError);
  }
  SECTION("mean and std need 3 values") {
    cfg.image_mean = {0.5f, 0.5f};
    CHECK_THROWS_AS(xcaption::preprocess_image(img, cfg, out), xcaption::ShapeError);
  }
}

TEST_CASE("pil_resize rejects bad arguments", "[image]") {
  const RgbImage src = xcaption::load_image(kDataDir / "src_tall5x97.png");
  CHECK_THROWS_AS(xcaption::pil_resize(src, 3, 3, 6), xcaption::InputError);
  CHECK_THROWS_AS(xcaption::pil_resize(src, 5, 97, -1), xcaption::InputError);
  CHECK_THROWS_AS(xcaption::pil_resize(src, 0, 3, 2), xcaption::ShapeError);
  RgbImage broken = src;
  broken.data.pop_back();
  CHECK_THROWS_AS(xcaption::pil_resize(broken, 3, 3, 2), xcaption::ShapeError);
}

// Why pil_resize exists: OpenCV's bilinear (and area) resize are other filters. INTER_LINEAR
// samples 2x2 input pixels whatever the scale (no antialiasing), PIL widens its triangle filter
// by the scale factor; INTER_AREA averages but with different weights and rounding. Feeding either
// to ViT moves logits by ~1 (see HF-NOTES).
TEST_CASE("cv::resize INTER_LINEAR and INTER_AREA differ from PIL bilinear", "[image]") {
  const RgbImage src = xcaption::load_image(kDataDir / "src_edges300x200.png");
  const RgbImage want = read_png_rgb(kDataDir / "resize/edges300x200_75x50_bilinear.png");
  cv::Mat src_mat(src.height, src.width, CV_8UC3, const_cast<std::uint8_t*>(src.data.data()));
  for (const int interp : {cv::INTER_LINEAR, cv::INTER_AREA}) {
    CAPTURE(interp);
    cv::Mat out;
    cv::resize(src_mat, out, cv::Size(75, 50), 0, 0, interp);
    std::vector<std::uint8_t> got(out.data, out.data + out.total() * 3);
    const ByteDiff d = compare_bytes(got, want.data);
    INFO(d.mismatches << " of " << want.data.size() << " bytes differ, max |diff| " << d.max_diff);
    CHECK(d.mismatches > want.data.size() / 10);
    CHECK(d.max_diff >= 20);
  }
  // Our implementation on the same input is exact.
  CHECK(compare_bytes(xcaption::pil_resize(src, 75, 50, xcaption::kPilBilinear).data, want.data)
            .mismatches == 0);
}

TEST_CASE("load_image reports unreadable files with their path", "[image]") {
  TempDir tmp;
  const fs::path missing = tmp.path / "no_such_image.png";
  require_format_error_naming([&] { xcaption::load_image(missing); }, missing);

  require_format_error_naming([&] { xcaption::load_image(tmp.path); }, tmp.path);

  const fs::path empty = tmp.path / "empty.png";
  write_bytes(empty, {});
  require_format_error_naming([&] { xcaption::load_image(empty); }, empty);

  const fs::path garbage = tmp.path / "garbage.png";
  std::vector<std::uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 37 + 11);
  write_bytes(garbage, bytes);
  require_format_error_naming([&] { xcaption::load_image(garbage); }, garbage);

  // A valid PNG signature and header followed by a cut-off image stream.
  const std::vector<std::uint8_t> png = read_bytes(kDataDir / "src_edges300x200.png");
  REQUIRE(png.size() > 1000);
  const fs::path truncated = tmp.path / "truncated.png";
  write_bytes(truncated, std::vector<std::uint8_t>(png.begin(), png.begin() + png.size() / 2));
  require_format_error_naming([&] { xcaption::load_image(truncated); }, truncated);

  // PIL raises "image file is truncated" for a cut JPEG; libjpeg alone would fill in gray.
  const std::vector<std::uint8_t> jpeg = read_bytes(kDataDir / "exif6.jpg");
  REQUIRE(jpeg.size() > 400);
  const fs::path cut_jpeg = tmp.path / "cut.jpg";
  write_bytes(cut_jpeg, std::vector<std::uint8_t>(jpeg.begin(), jpeg.end() - 40));
  require_format_error_naming([&] { xcaption::load_image(cut_jpeg); }, cut_jpeg);
}

TEST_CASE("load_image accepts trailing bytes after the end of a PNG or JPEG", "[image]") {
  TempDir tmp;
  for (const char* name : {"exif6.jpg", "src_tall5x97.png"}) {
    CAPTURE(name);
    std::vector<std::uint8_t> bytes = read_bytes(kDataDir / name);
    const RgbImage clean = xcaption::load_image(kDataDir / name);
    bytes.insert(bytes.end(), 16, 0);
    const fs::path padded = tmp.path / name;
    write_bytes(padded, bytes);
    CHECK(xcaption::load_image(padded).data == clean.data);
  }
}

TEST_CASE("load_image drops alpha without compositing and expands grayscale", "[image]") {
  TempDir tmp;
  SECTION("BGRA PNG") {
    cv::Mat bgra(3, 4, CV_8UC4);
    for (int y = 0; y < bgra.rows; ++y) {
      for (int x = 0; x < bgra.cols; ++x) {
        bgra.at<cv::Vec4b>(y, x) = cv::Vec4b(uchar(10 * x), uchar(20 + y), uchar(200 - x * y),
                                             uchar(x * 60));  // alpha 0 .. 180
      }
    }
    const fs::path path = tmp.path / "alpha.png";
    REQUIRE(cv::imwrite(path.string(), bgra));
    const RgbImage img = xcaption::load_image(path);
    REQUIRE(img.width == 4);
    REQUIRE(img.height == 3);
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) {
        const cv::Vec4b p = bgra.at<cv::Vec4b>(y, x);
        const std::uint8_t* q = &img.data[(y * 4 + x) * 3];
        CHECK(q[0] == p[2]);  // R
        CHECK(q[1] == p[1]);  // G
        CHECK(q[2] == p[0]);  // B, untouched by alpha 0
      }
    }
  }
  SECTION("grayscale PNG") {
    cv::Mat gray(5, 2, CV_8UC1);
    for (int i = 0; i < 10; ++i) gray.data[i] = static_cast<uchar>(i * 25);
    const fs::path path = tmp.path / "gray.png";
    REQUIRE(cv::imwrite(path.string(), gray));
    const RgbImage img = xcaption::load_image(path);
    REQUIRE(img.width == 2);
    REQUIRE(img.height == 5);
    for (int i = 0; i < 10; ++i) {
      CHECK(img.data[i * 3 + 0] == i * 25);
      CHECK(img.data[i * 3 + 1] == i * 25);
      CHECK(img.data[i * 3 + 2] == i * 25);
    }
  }
}

TEST_CASE("load_image decodes JPEG and applies EXIF orientation like PIL", "[image]") {
  // exif6.jpg is stored 40x24 with orientation 6; PIL's exif_transpose gives 24x40.
  const RgbImage got = xcaption::load_image(kDataDir / "exif6.jpg");
  const RgbImage want = read_png_rgb(kDataDir / "exif6_pil.png");
  REQUIRE(got.width == 24);
  REQUIRE(got.height == 40);
  REQUIRE(want.width == 24);
  REQUIRE(want.height == 40);
  const ByteDiff d = compare_bytes(got.data, want.data);
  INFO(d.mismatches << " of " << want.data.size() << " bytes differ, max |diff| " << d.max_diff);
  CHECK(d.mismatches == 0);
}

TEST_CASE("rgb_from_bgr converts 1, 3 and 4 channel 8-bit images", "[image]") {
  SECTION("BGR ROI with a row stride") {
    cv::Mat big(4, 6, CV_8UC3);
    for (int i = 0; i < 4 * 6 * 3; ++i) big.data[i] = static_cast<uchar>(i);
    const cv::Mat roi = big(cv::Rect(1, 1, 3, 2));
    REQUIRE_FALSE(roi.isContinuous());
    const RgbImage img = xcaption::rgb_from_bgr(roi);
    REQUIRE(img.width == 3);
    REQUIRE(img.height == 2);
    REQUIRE(img.data.size() == 18u);
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 3; ++x) {
        const cv::Vec3b p = roi.at<cv::Vec3b>(y, x);
        CHECK(img.data[(y * 3 + x) * 3 + 0] == p[2]);
        CHECK(img.data[(y * 3 + x) * 3 + 1] == p[1]);
        CHECK(img.data[(y * 3 + x) * 3 + 2] == p[0]);
      }
    }
  }
  SECTION("gray and BGRA") {
    cv::Mat gray(1, 2, CV_8UC1);
    gray.data[0] = 7;
    gray.data[1] = 250;
    CHECK(xcaption::rgb_from_bgr(gray).data == std::vector<std::uint8_t>{7, 7, 7, 250, 250, 250});
    cv::Mat bgra(1, 1, CV_8UC4, cv::Scalar(1, 2, 3, 0));
    CHECK(xcaption::rgb_from_bgr(bgra).data == std::vector<std::uint8_t>{3, 2, 1});
  }
  SECTION("other types are rejected") {
    CHECK_THROWS_AS(xcaption::rgb_from_bgr(cv::Mat()), xcaption::InputError);
    CHECK_THROWS_AS(xcaption::rgb_from_bgr(cv::Mat(2, 2, CV_32FC3)), xcaption::InputError);
    CHECK_THROWS_AS(xcaption::rgb_from_bgr(cv::Mat(2, 2, CV_16UC3)), xcaption::InputError);
  }
}
