#include "src/blocks/linear.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::blocks {

std::int64_t LinearSpec::out() const {
  std::int64_t n = 0;
  for (const auto& p : parts) n += p.out;
  return n;
}

LinearSpec linear(std::string name, std::int64_t in, std::int64_t out, WeightLayout layout, Bias bias) {
  LinearSpec s;
  s.parts.push_back({std::move(name), out, {}});
  s.in = in;
  s.layout = layout;
  s.bias = bias;
  return s;
}

void describe(const LinearSpec& spec, std::vector<ExpectedTensor>& table) {
  for (const auto& p : spec.parts) {
    std::vector<std::int64_t> shape = p.weight_shape;
    if (shape.empty())
      shape = spec.layout == WeightLayout::OutIn ? std::vector<std::int64_t>{p.out, spec.in}
                                                 : std::vector<std::int64_t>{spec.in, p.out};
    table.push_back({p.name + ".weight", std::move(shape)});
    if (spec.bias != Bias::None) table.push_back({p.name + ".bias", {p.out}, spec.bias == Bias::Required});
  }
}

std::unique_ptr<PreparedLinear> load(const LinearSpec& spec, const WeightStore& w, Backend& backend,
                                     std::int64_t m_hint) {
  const std::int64_t in = spec.in, out = spec.out();
  const bool single = spec.parts.size() == 1;
  // One part is handed over in its own layout; several are stacked as one (out, in) matrix.
  FloatBuffer weight = single ? w.load(spec.parts.front().name + ".weight")
                              : FloatBuffer(static_cast<std::size_t>(in * out));
  const WeightLayout layout = single ? spec.layout : WeightLayout::OutIn;
  FloatBuffer bias;
  if (spec.bias != Bias::None) {
    bias.resize(static_cast<std::size_t>(out));
    bias.zero();
  }
  std::int64_t first = 0;  // first output feature of the current part
  for (const auto& p : spec.parts) {
    if (!single) {
      FloatBuffer part = w.load(p.name + ".weight");
      float* dst = weight.data() + first * in;
      if (spec.layout == WeightLayout::OutIn) {
        std::memcpy(dst, part.data(), sizeof(float) * static_cast<std::size_t>(p.out * in));
      } else {
        for (std::int64_t i = 0; i < in; ++i)
          for (std::int64_t o = 0; o < p.out; ++o) dst[o * in + i] = part.data()[i * p.out + o];
      }
    }
    if (spec.bias != Bias::None && w.has(p.name + ".bias")) {
      FloatBuffer b = w.load(p.name + ".bias");
      std::memcpy(bias.data() + first, b.data(), sizeof(float) * static_cast<std::size_t>(p.out));
    }
    first += p.out;
  }
  if (spec.scaled_out > 0 && spec.scale != 1.0f) {
    for (std::int64_t o = 0; o < spec.scaled_out; ++o) {
      if (layout == WeightLayout::OutIn) {
        for (std::int64_t i = 0; i < in; ++i) weight.data()[o * in + i] *= spec.scale;
      } else {
        for (std::int64_t i = 0; i < in; ++i) weight.data()[i * out + o] *= spec.scale;
      }
      if (spec.bias != Bias::None) bias.data()[o] *= spec.scale;
    }
  }
  return backend.prepare_linear(weight.data(), layout, in, out,
                                spec.bias == Bias::None ? nullptr : bias.data(), m_hint);
}

void describe(const NormSpec& spec, std::vector<ExpectedTensor>& table) {
  table.push_back({spec.name + ".weight", {spec.size}});
  table.push_back({spec.name + ".bias", {spec.size}});
}

ops::LayerNorm load(const NormSpec& spec, const WeightStore& w) {
  ops::LayerNorm ln;
  ln.gamma = w.load(spec.name + ".weight");
  ln.beta = w.load(spec.name + ".bias");
  ln.eps = spec.eps;
  return ln;
}

float exact_fold(float scale) {
  int exponent = 0;
  return scale > 0 && std::frexp(scale, &exponent) == 0.5f ? scale : 1.0f;
}

}  // namespace xcaption::blocks
