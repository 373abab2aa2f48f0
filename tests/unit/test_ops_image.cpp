// The image-tower ops (src/ops/image_ops.hpp): convolution, window partition/merge, windowed and
// channel-group attention, row means. Each is checked against plain loops written here (torch's
// definitions), on both backends, over odd sizes, strides 2 and 4, padding and depthwise groups.
// Tolerance: max |got - want| relative to max |want| (f32 ~1e-5), as in test_ops_onednn.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <random>
#include <vector>

#include <catch2/catch.hpp>
#include <xcaption/errors.hpp>

#include "src/backend/backend.hpp"
#include "src/backend/onednn/onednn_backend.hpp"
#include "src/ops/image_ops.hpp"

namespace xcaption {
namespace {

constexpr double kTol = 1e-5;

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * dist(gen);
  return v;
}

double rel_diff(const std::vector<float>& got, const std::vector<float>& want, std::size_t* where = nullptr) {
  double max_abs = 0, max_ref = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(double(got[i]) - double(want[i]));
    if (!(e <= max_abs)) {
      max_abs = std::isnan(e) ? INFINITY : e;
      if (where) *where = i;
    }
    max_ref = std::max(max_ref, std::abs(double(want[i])));
  }
  return max_abs / std::max(max_ref, 1e-30);
}

#define CHECK_NEAR_ALL(got, want, tol)                                                          \
  do {                                                                                          \
    REQUIRE((got).size() == (want).size());                                                     \
    std::size_t at_ = 0;                                                                        \
    const double r_ = rel_diff(got, want, &at_);                                                \
    INFO("relative max diff " << r_ << " at " << at_ << " (got " << (got)[at_] << ", want " << (want)[at_] << ")"); \
    CHECK(r_ <= (tol));                                                                         \
  } while (0)

std::vector<std::unique_ptr<Backend>> backends() {
  std::vector<std::unique_ptr<Backend>> b;
  b.push_back(make_reference_backend());
  b.push_back(make_onednn_backend());
  return b;
}

// torch.nn.functional.conv2d, written out: NCHW or NHWC src, NHWC dst, double accumulation.
std::vector<float> naive_conv(const Conv2dShape& s, ImageLayout layout, const std::vector<float>& src,
                              std::int64_t batch, std::int64_t h, std::int64_t w, const std::vector<float>& weight,
                              const std::vector<float>* bias, const std::vector<float>* residual) {
  const std::int64_t oh = (h + 2 * s.padding - s.kernel) / s.stride + 1, ow = (w + 2 * s.padding - s.kernel) / s.stride + 1;
  const std::int64_t ig = s.in / s.groups, og = s.out / s.groups;
  std::vector<float> dst(static_cast<std::size_t>(batch * oh * ow * s.out));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t o = 0; o < s.out; ++o)
      for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t x = 0; x < ow; ++x) {
          double acc = bias ? (*bias)[static_cast<std::size_t>(o)] : 0.0;
          for (std::int64_t i = 0; i < ig; ++i) {
            const std::int64_t ch = (o / og) * ig + i;
            for (std::int64_t ky = 0; ky < s.kernel; ++ky)
              for (std::int64_t kx = 0; kx < s.kernel; ++kx) {
                const std::int64_t sy = y * s.stride + ky - s.padding, sx = x * s.stride + kx - s.padding;
                if (sy < 0 || sx < 0 || sy >= h || sx >= w) continue;
                const std::int64_t si = layout == ImageLayout::NCHW ? ((b * s.in + ch) * h + sy) * w + sx
                                                                    : ((b * h + sy) * w + sx) * s.in + ch;
                acc += double(weight[static_cast<std::size_t>(((o * ig + i) * s.kernel + ky) * s.kernel + kx)]) *
                       src[static_cast<std::size_t>(si)];
              }
          }
          const auto di = static_cast<std::size_t>(((b * oh + y) * ow + x) * s.out + o);
          if (residual) acc += (*residual)[di];
          dst[di] = static_cast<float>(acc);
        }
  return dst;
}

struct ConvCase {
  Conv2dShape shape;
  ImageLayout layout;
  std::int64_t batch, h, w;
  bool bias, residual;
};

TEST_CASE("conv2d matches the plain loops: stems, downsamples, depthwise, odd sizes", "[ops][conv]") {
  const std::vector<ConvCase> cases = {
      // DaViT's stem (7x7 stride 4 padding 3 from NCHW pixels), at an odd size.
      {{3, 16, 7, 4, 3, 1}, ImageLayout::NCHW, 2, 29, 23, true, false},
      // A downsample (3x3 stride 2 padding 1, NHWC tokens), odd input side.
      {{8, 12, 3, 2, 1, 1}, ImageLayout::NHWC, 1, 13, 11, true, false},
      // Depthwise 3x3 with the residual (ConvPosEnc: x + dwconv(x)).
      {{24, 24, 3, 1, 1, 24}, ImageLayout::NHWC, 2, 9, 14, true, true},
      // Grouped, no bias, no padding, stride 2 with a remainder (floor rule).
      {{6, 9, 3, 2, 0, 3}, ImageLayout::NHWC, 1, 8, 10, false, false},
      // 1x1, NCHW with residual, one pixel.
      {{5, 7, 1, 1, 0, 1}, ImageLayout::NCHW, 3, 1, 1, true, true},
      // Real shapes of DaViT-base's first stage at a small map: 128-wide depthwise.
      {{128, 128, 3, 1, 1, 128}, ImageLayout::NHWC, 1, 24, 24, true, true},
  };
  for (const auto& c : cases) {
    const Conv2dShape& s = c.shape;
    INFO("conv in " << s.in << " out " << s.out << " k " << s.kernel << " stride " << s.stride << " pad " << s.padding
                    << " groups " << s.groups << " input " << c.batch << "x" << c.h << "x" << c.w
                    << (c.layout == ImageLayout::NCHW ? " nchw" : " nhwc"));
    const auto weight = randn(static_cast<std::size_t>(s.out * (s.in / s.groups) * s.kernel * s.kernel), 11, 0.3f);
    const auto bias = randn(static_cast<std::size_t>(s.out), 12);
    const auto src = randn(static_cast<std::size_t>(c.batch * s.in * c.h * c.w), 13);
    const std::int64_t oh = s.out_size(c.h), ow = s.out_size(c.w);
    const auto residual = randn(static_cast<std::size_t>(c.batch * oh * ow * s.out), 14);
    const auto want = naive_conv(s, c.layout, src, c.batch, c.h, c.w, weight, c.bias ? &bias : nullptr,
                                 c.residual ? &residual : nullptr);
    for (auto& backend : backends()) {
      INFO("backend " << backend->name());
      auto conv = backend->prepare_conv2d(s, c.layout, weight.data(), c.bias ? bias.data() : nullptr, c.h, c.w);
      std::vector<float> got(want.size(), -5.0f);
      ops::conv2d(*backend, *conv, src.data(), c.batch, c.h, c.w, c.residual ? residual.data() : nullptr, got.data());
      CHECK_NEAR_ALL(got, want, kTol);
      // A second call (a cached primitive) with another batch gives the same per-image result.
      if (c.batch > 1) {
        std::vector<float> one(want.size() / static_cast<std::size_t>(c.batch), -5.0f);
        ops::conv2d(*backend, *conv, src.data(), 1, c.h, c.w, c.residual ? residual.data() : nullptr, one.data());
        const std::vector<float> first(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(one.size()));
        CHECK_NEAR_ALL(one, first, kTol);
      }
    }
  }
}

TEST_CASE("conv2d hand-checked values: a centred delta kernel is the identity", "[ops][conv]") {
  // A 3x3 depthwise kernel with 1 at its centre and bias b gives x + b, padding or not.
  const Conv2dShape s{4, 4, 3, 1, 1, 4};
  std::vector<float> weight(4 * 9, 0.0f);
  for (int c = 0; c < 4; ++c) weight[static_cast<std::size_t>(c * 9 + 4)] = 1.0f;
  const std::vector<float> bias = {0.5f, -1.0f, 2.0f, 0.0f};
  const auto src = randn(5 * 6 * 4, 21);
  for (auto& backend : backends()) {
    INFO("backend " << backend->name());
    auto conv = backend->prepare_conv2d(s, ImageLayout::NHWC, weight.data(), bias.data(), 5, 6);
    std::vector<float> got(src.size());
    ops::conv2d(*backend, *conv, src.data(), 1, 5, 6, nullptr, got.data());
    for (std::size_t i = 0; i < src.size(); ++i) REQUIRE(got[i] == Approx(src[i] + bias[i % 4]).margin(1e-6));
  }
}

TEST_CASE("conv2d rejects bad arguments", "[ops][conv]") {
  auto backend = make_reference_backend();
  const Conv2dShape s{3, 4, 7, 4, 0, 1};
  const std::vector<float> weight(4 * 3 * 49, 0.1f);
  auto conv = backend->prepare_conv2d(s, ImageLayout::NCHW, weight.data(), nullptr, 8, 8);
  std::vector<float> src(3 * 8 * 8, 1.0f), dst(4 * 4, 0.0f);
  CHECK_THROWS_AS(ops::conv2d(*backend, *conv, src.data(), 1, 5, 5, nullptr, dst.data()), InputError);  // 5 < 7
  CHECK_THROWS_AS(ops::conv2d(*backend, *conv, nullptr, 1, 8, 8, nullptr, dst.data()), InputError);
  CHECK_THROWS_AS(ops::conv2d(*backend, *conv, src.data(), 0, 8, 8, nullptr, dst.data()), InputError);
  CHECK_THROWS_AS(ops::conv2d(*backend, *conv, src.data(), 1, 8, 8, dst.data(), dst.data()), InputError);
}

TEST_CASE("window partition pads with zeros and merge inverts it", "[ops][window]") {
  for (auto [batch, h, w, c, win] : {std::array<std::int64_t, 5>{1, 5, 7, 3, 3}, {2, 12, 12, 4, 12},
                                     {2, 13, 25, 2, 12}, {1, 2, 2, 5, 4}}) {
    INFO("batch " << batch << " map " << h << "x" << w << " channels " << c << " window " << win);
    const std::int64_t wy = (h + win - 1) / win, wx = (w + win - 1) / win;
    const auto src = randn(static_cast<std::size_t>(batch * h * w * c), 31);
    // Plain loops: F.pad then view/permute as in Florence-2's WindowAttention.
    std::vector<float> want(static_cast<std::size_t>(batch * wy * wx * win * win * c), 0.0f);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x)
          for (std::int64_t ch = 0; ch < c; ++ch) {
            const std::int64_t window = (b * wy + y / win) * wx + x / win, token = (y % win) * win + x % win;
            want[static_cast<std::size_t>((window * win * win + token) * c + ch)] =
                src[static_cast<std::size_t>(((b * h + y) * w + x) * c + ch)];
          }
    for (auto& backend : backends()) {
      INFO("backend " << backend->name());
      std::vector<float> windows(want.size(), 7.0f);
      CHECK(ops::window_partition(*backend, src.data(), batch, h, w, c, win, windows.data()) == wy * wx);
      CHECK(windows == want);
      std::vector<float> back(src.size(), 3.0f);
      ops::window_merge(*backend, windows.data(), batch, h, w, c, win, back.data(), false);
      CHECK(back == src);
      std::vector<float> acc(src.size(), 1.0f);
      ops::window_merge(*backend, windows.data(), batch, h, w, c, win, acc.data(), true);
      for (std::size_t i = 0; i < src.size(); ++i) REQUIRE(acc[i] == 1.0f + src[i]);
    }
  }
  auto backend = make_reference_backend();
  std::vector<float> a(16), b(16);
  CHECK_THROWS_AS(ops::window_partition(*backend, a.data(), 1, 2, 2, 4, 0, b.data()), InputError);
  CHECK_THROWS_AS(ops::window_merge(*backend, a.data(), 1, 2, 2, 4, 2, a.data(), false), InputError);
}

// softmax(scale · q·kᵀ) · v over one block of rows, heads side by side, in double.
void naive_attention(const float* qkv, std::int64_t ld, std::int64_t t, std::int64_t heads, std::int64_t hd,
                     double scale, float* out, std::int64_t out_ld) {
  const std::int64_t width = heads * hd;
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < t; ++i) {
      std::vector<double> p(static_cast<std::size_t>(t));
      double mx = -1e300, sum = 0;
      for (std::int64_t j = 0; j < t; ++j) {
        double dot = 0;
        for (std::int64_t c = 0; c < hd; ++c) dot += double(qkv[i * ld + h * hd + c]) * qkv[j * ld + width + h * hd + c];
        p[static_cast<std::size_t>(j)] = dot * scale;
        mx = std::max(mx, dot * scale);
      }
      for (auto& x : p) sum += (x = std::exp(x - mx));
      for (std::int64_t c = 0; c < hd; ++c) {
        double acc = 0;
        for (std::int64_t j = 0; j < t; ++j) acc += p[static_cast<std::size_t>(j)] / sum * qkv[j * ld + 2 * width + h * hd + c];
        out[i * out_ld + h * hd + c] = static_cast<float>(acc);
      }
    }
}

TEST_CASE("window attention: every window attends to itself only", "[ops][window]") {
  for (auto [windows, t, heads, hd] : {std::array<std::int64_t, 4>{3, 9, 2, 5}, {4, 144, 4, 32}, {1, 16, 3, 7}}) {
    INFO("windows " << windows << " tokens " << t << " heads " << heads << " head_dim " << hd);
    const std::int64_t width = heads * hd, ld = 3 * width, out_ld = width + 2;
    const auto qkv = randn(static_cast<std::size_t>(windows * t * ld), 41);
    const float scale = 1.0f / std::sqrt(float(hd));
    std::vector<float> want(static_cast<std::size_t>(windows * t * out_ld), 9.5f);
    for (std::int64_t w = 0; w < windows; ++w)
      naive_attention(qkv.data() + w * t * ld, ld, t, heads, hd, scale, want.data() + w * t * out_ld, out_ld);
    for (auto& backend : backends()) {
      INFO("backend " << backend->name());
      std::vector<float> out(want.size(), 9.5f), scores(static_cast<std::size_t>(windows * t * t));
      ops::window_attention(*backend, {qkv.data(), ld, windows, t, heads, hd, scale, scores.data(), out.data(), out_ld});
      CHECK_NEAR_ALL(out, want, kTol);  // the padding columns keep 9.5 on both sides
    }
  }
}

TEST_CASE("channel attention: groups of channels attend over all tokens", "[ops][channel]") {
  for (auto [tokens, channels, groups] : {std::array<std::int64_t, 3>{7, 6, 2}, {144, 128, 4}, {37, 96, 3}}) {
    INFO("tokens " << tokens << " channels " << channels << " groups " << groups);
    const std::int64_t d = channels / groups, ld = 3 * channels, out_ld = channels + 1;
    const auto qkv = randn(static_cast<std::size_t>(tokens * ld), 51);
    const float scale = 1.0f / std::sqrt(float(tokens));
    // Florence-2's ChannelAttention: q, k, v (groups, tokens, d); A = softmax((q·s)ᵀ k) (d, d);
    // x = (A · vᵀ)ᵀ, channels back as g·d + i.
    std::vector<float> want(static_cast<std::size_t>(tokens * out_ld), -2.0f);
    for (std::int64_t g = 0; g < groups; ++g)
      for (std::int64_t i = 0; i < d; ++i) {
        std::vector<double> a(static_cast<std::size_t>(d));
        double mx = -1e300, sum = 0;
        for (std::int64_t j = 0; j < d; ++j) {
          double dot = 0;
          for (std::int64_t n = 0; n < tokens; ++n)
            dot += double(qkv[static_cast<std::size_t>(n * ld + g * d + i)]) * qkv[static_cast<std::size_t>(n * ld + channels + g * d + j)];
          a[static_cast<std::size_t>(j)] = dot * scale;
          mx = std::max(mx, dot * scale);
        }
        for (auto& x : a) sum += (x = std::exp(x - mx));
        for (std::int64_t n = 0; n < tokens; ++n) {
          double acc = 0;
          for (std::int64_t j = 0; j < d; ++j)
            acc += a[static_cast<std::size_t>(j)] / sum * qkv[static_cast<std::size_t>(n * ld + 2 * channels + g * d + j)];
          want[static_cast<std::size_t>(n * out_ld + g * d + i)] = static_cast<float>(acc);
        }
      }
    for (auto& backend : backends()) {
      INFO("backend " << backend->name());
      std::vector<float> out(want.size(), -2.0f), scores(static_cast<std::size_t>(groups * d * d));
      ops::channel_attention(*backend, {qkv.data(), ld, tokens, channels, groups, scale, scores.data(), out.data(), out_ld});
      CHECK_NEAR_ALL(out, want, kTol);
    }
  }
  auto backend = make_reference_backend();
  std::vector<float> buf(100);
  CHECK_THROWS_AS(ops::channel_attention(*backend, {buf.data(), 9, 2, 3, 2, 1.0f, buf.data(), buf.data(), 3}),
                  InputError);  // 3 channels in 2 groups
}

TEST_CASE("mean_rows averages rows with a stride", "[ops]") {
  const std::int64_t rows = 577, cols = 9, ld = 11;
  const auto src = randn(static_cast<std::size_t>(rows * ld), 61, 3.0f);
  std::vector<float> want(static_cast<std::size_t>(cols));
  for (std::int64_t c = 0; c < cols; ++c) {
    double s = 0;
    for (std::int64_t r = 0; r < rows; ++r) s += src[static_cast<std::size_t>(r * ld + c)];
    want[static_cast<std::size_t>(c)] = static_cast<float>(s / rows);
  }
  for (auto& backend : backends()) {
    std::vector<float> got(static_cast<std::size_t>(cols));
    ops::mean_rows(*backend, src.data(), ld, rows, cols, got.data());
    CHECK_NEAR_ALL(got, want, 1e-6);
  }
}

}  // namespace
}  // namespace xcaption

namespace xcaption {
namespace {

// The reference kernels oneDNN falls back to are 10-100x slower: DaViT's stem (a 3-channel NCHW
// image into NHWC) and the depthwise convolutions with their residual must not land there.
TEST_CASE("onednn conv2d uses optimized kernels for DaViT's convolutions", "[ops][conv]") {
  if (!__builtin_cpu_supports("avx2")) {
    std::puts("XCAPTION-SKIPPED: oneDNN's optimized convolutions need AVX2 here");
    return;
  }
  auto backend = make_onednn_backend();
  struct Case {
    Conv2dShape shape;
    ImageLayout layout;
    std::int64_t side;
    bool residual;
  };
  for (const Case& c : {Case{{3, 32, 7, 4, 3, 1}, ImageLayout::NCHW, 64, false},
                        Case{{32, 32, 3, 1, 1, 32}, ImageLayout::NHWC, 16, true},
                        Case{{32, 64, 3, 2, 1, 1}, ImageLayout::NHWC, 16, false}}) {
    const Conv2dShape& s = c.shape;
    const auto weight = randn(static_cast<std::size_t>(s.out * (s.in / s.groups) * s.kernel * s.kernel), 71);
    const auto bias = randn(static_cast<std::size_t>(s.out), 72);
    auto conv = backend->prepare_conv2d(s, c.layout, weight.data(), bias.data(), c.side, c.side);
    const auto src = randn(static_cast<std::size_t>(s.in * c.side * c.side), 73);
    const std::int64_t o = s.out_size(c.side);
    const auto residual = randn(static_cast<std::size_t>(o * o * s.out), 74);
    std::vector<float> dst(residual.size());
    ops::conv2d(*backend, *conv, src.data(), 1, c.side, c.side, c.residual ? residual.data() : nullptr, dst.data());
  }
  const auto created = onednn::stats(*backend).created;
  int convs = 0;
  for (const auto& line : created) {
    if (line.rfind("conv2d", 0) != 0) continue;
    ++convs;
    INFO(line);
    CHECK(line.find("-> ref") == std::string::npos);
  }
  CHECK(convs == 3);
}

}  // namespace
}  // namespace xcaption
