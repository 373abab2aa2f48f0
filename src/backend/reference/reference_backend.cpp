// Naive reference kernels. Slow on purpose: every value is computed the obvious way with double
// accumulation, so op-parity tests have something independent of oneDNN to compare against.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "src/backend/backend.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {
namespace {

class ReferenceLinear : public PreparedLinear {
 public:
  ReferenceLinear(std::int64_t in, std::int64_t out) : PreparedLinear(in, out) {}
  std::vector<float> weight;  // (in, out)
  std::vector<float> bias;    // (out) or empty
  bool bf16 = false;          // weight holds bf16-rounded values; inputs are rounded per call
};

class ReferenceConv : public PreparedConv {
 public:
  using PreparedConv::PreparedConv;
  std::vector<float> weight;  // (out, in / groups, k, k)
  std::vector<float> bias;    // (out) or empty
};

float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// Element i of a key/value array held as float32 (f) or as bf16 bits (b16).
double kv(const float* f, const std::uint16_t* b16, std::int64_t i) { return f ? f[i] : bf16_to_f32(b16[i]); }

double apply_activation(double x, Activation act) {
  switch (act) {
    case Activation::None: return x;
    case Activation::GeluErf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::GeluTanh: {
      const double k = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
    }
  }
  return x;
}

class ReferenceBackend : public Backend {
 public:
  std::string name() const override { return "reference"; }
  void set_threads(int) override {}
  void set_precision(Precision precision) override { precision_ = precision; }
  Precision precision() const override { return precision_; }

  std::unique_ptr<PreparedLinear> prepare_linear(const float* weight, WeightLayout layout,
                                                 std::int64_t in, std::int64_t out,
                                                 const float* bias, std::int64_t) override {
    auto p = std::make_unique<ReferenceLinear>(in, out);
    p->weight.resize(static_cast<std::size_t>(in * out));
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t o = 0; o < out; ++o)
        p->weight[i * out + o] = layout == WeightLayout::InOut ? weight[i * out + o] : weight[o * in + i];
    if (bias) p->bias.assign(bias, bias + out);
    if (precision_ == Precision::BF16) {
      p->bf16 = true;
      for (auto& w : p->weight) w = round_bf16(w);
    }
    return p;
  }

  void weight_column(const PreparedLinear& layer, std::int64_t o, float* dst) override {
    const auto& p = static_cast<const ReferenceLinear&>(layer);
    for (std::int64_t i = 0; i < p.in_features(); ++i) dst[i] = p.weight[i * p.out_features() + o];
  }

  void one_query_attention(const OneQueryAttention& a) override {
    // Scores and probabilities in double; the probabilities are stored in the caller's float
    // workspace (no allocation here either, so that tests can count the model's own).
    for (std::int64_t r = 0; r < a.rows; ++r)
      for (std::int64_t h = 0; h < a.heads; ++h) {
        const float* q = a.q + r * a.q_ld + h * a.head_dim;
        auto score = [&](std::int64_t j) {
          const std::int64_t at = r * a.kv_row_stride + j * a.kv_ld + h * a.kv_head_stride;
          double dot = 0;
          for (std::int64_t c = 0; c < a.head_dim; ++c) dot += double(q[c]) * kv(a.k, a.k16, at + c);
          return dot * a.scale;
        };
        double mx = -1e300, sum = 0;
        for (std::int64_t j = 0; j < a.n; ++j) mx = std::max(mx, score(j));
        for (std::int64_t j = 0; j < a.n; ++j) sum += std::exp(score(j) - mx);
        float* p = a.scores + (r * a.heads + h) * a.n;
        for (std::int64_t j = 0; j < a.n; ++j) p[j] = static_cast<float>(std::exp(score(j) - mx) / sum);
        float* out = a.out + r * a.out_ld + h * a.head_dim;
        for (std::int64_t c = 0; c < a.head_dim; ++c) {
          double acc = 0;
          for (std::int64_t j = 0; j < a.n; ++j)
            acc += double(p[j]) * kv(a.v, a.v16, r * a.kv_row_stride + j * a.kv_ld + h * a.kv_head_stride + c);
          out[c] = static_cast<float>(acc);
        }
      }
  }

  void linear(const PreparedLinear& layer, const float* src, std::int64_t m, float* dst,
              Activation act, bool accumulate) override {
    const auto& p = static_cast<const ReferenceLinear&>(layer);
    const std::int64_t in = p.in_features(), out = p.out_features();
    const bool round_input = p.bf16 && m > kBf16ExactInputRows;  // see Precision
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t o = 0; o < out; ++o) {
        double s = p.bias.empty() ? 0.0 : p.bias[o];
        for (std::int64_t i = 0; i < in; ++i)
          s += double(round_input ? round_bf16(src[r * in + i]) : src[r * in + i]) * p.weight[i * out + o];
        double v = apply_activation(s, act);
        if (accumulate) v += dst[r * out + o];
        dst[r * out + o] = static_cast<float>(v);
      }
    }
  }

  std::unique_ptr<PreparedConv> prepare_conv2d(const Conv2dShape& shape, ImageLayout src_layout,
                                               const float* weight, const float* bias, std::int64_t,
                                               std::int64_t) override {
    auto c = std::make_unique<ReferenceConv>(shape, src_layout);
    c->weight.assign(weight, weight + shape.out * (shape.in / shape.groups) * shape.kernel * shape.kernel);
    if (bias) c->bias.assign(bias, bias + shape.out);
    return c;
  }

  void conv2d(const PreparedConv& conv, const float* src, std::int64_t batch, std::int64_t height,
              std::int64_t width, const float* residual, float* dst) override {
    const auto& c = static_cast<const ReferenceConv&>(conv);
    const Conv2dShape& s = c.shape();
    const std::int64_t oh = s.out_size(height), ow = s.out_size(width), k = s.kernel;
    const std::int64_t in_g = s.in / s.groups, out_g = s.out / s.groups;
    const bool nchw = c.src_layout() == ImageLayout::NCHW;
    auto at = [&](std::int64_t b, std::int64_t ch, std::int64_t y, std::int64_t x) {
      return nchw ? src[((b * s.in + ch) * height + y) * width + x] : src[((b * height + y) * width + x) * s.in + ch];
    };
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t x = 0; x < ow; ++x)
          for (std::int64_t o = 0; o < s.out; ++o) {
            const std::int64_t g = o / out_g;
            double acc = c.bias.empty() ? 0.0 : c.bias[o];
            for (std::int64_t i = 0; i < in_g; ++i)
              for (std::int64_t ky = 0; ky < k; ++ky) {
                const std::int64_t iy = y * s.stride - s.padding + ky;
                if (iy < 0 || iy >= height) continue;
                for (std::int64_t kx = 0; kx < k; ++kx) {
                  const std::int64_t ix = x * s.stride - s.padding + kx;
                  if (ix < 0 || ix >= width) continue;
                  acc += double(c.weight[((o * in_g + i) * k + ky) * k + kx]) * at(b, g * in_g + i, iy, ix);
                }
              }
            const std::int64_t d = ((b * oh + y) * ow + x) * s.out + o;
            if (residual) acc += residual[d];
            dst[d] = static_cast<float>(acc);
          }
  }

  void batched_matmul(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                      const float* a, Strided3 as, const float* b, Strided3 bs, float* c,
                      Strided3 cs, float alpha) override {
    for (std::int64_t t = 0; t < batch; ++t)
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t q = 0; q < k; ++q)
            s += double(a[t * as.batch + i * as.row + q * as.col]) *
                 b[t * bs.batch + q * bs.row + j * bs.col];
          c[t * cs.batch + i * cs.row + j * cs.col] = static_cast<float>(alpha * s);
        }
  }

  void softmax(float* data, std::int64_t rows, std::int64_t n, std::int64_t ld) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      float* x = data + r * ld;
      double mx = x[0];
      for (std::int64_t j = 1; j < n; ++j) mx = std::max(mx, double(x[j]));
      double sum = 0;
      for (std::int64_t j = 0; j < n; ++j) sum += std::exp(double(x[j]) - mx);
      for (std::int64_t j = 0; j < n; ++j) x[j] = static_cast<float>(std::exp(double(x[j]) - mx) / sum);
    }
  }

  void log_softmax(const float* src, float* dst, std::int64_t rows, std::int64_t n) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* x = src + r * n;
      double mx = x[0], sum = 0;
      for (std::int64_t j = 1; j < n; ++j) mx = std::max(mx, double(x[j]));
      for (std::int64_t j = 0; j < n; ++j) sum += std::exp(double(x[j]) - mx);
      const double lse = mx + std::log(sum);
      for (std::int64_t j = 0; j < n; ++j) dst[r * n + j] = static_cast<float>(double(x[j]) - lse);
    }
  }

  void layer_norm(const float* src, float* dst, std::int64_t rows, std::int64_t n,
                  const float* gamma, const float* beta, float eps) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* x = src + r * n;
      double mean = 0, var = 0;
      for (std::int64_t j = 0; j < n; ++j) mean += x[j];
      mean /= double(n);
      for (std::int64_t j = 0; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
      var /= double(n);
      const double inv = 1.0 / std::sqrt(var + double(eps));
      for (std::int64_t j = 0; j < n; ++j)
        dst[r * n + j] = static_cast<float>((x[j] - mean) * inv * gamma[j] + beta[j]);
    }
  }

 private:
  Precision precision_ = Precision::F32;
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend() { return std::make_unique<ReferenceBackend>(); }

}  // namespace xcaption
