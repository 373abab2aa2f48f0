#include "encoders/vit.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace xcaption {

void append_layer_norm(const std::string& name, std::int64_t n, std::vector<ExpectedTensor>& table) {
  table.push_back({name + ".weight", {n}});
  table.push_back({name + ".bias", {n}});
}

ops::LayerNorm load_layer_norm(const WeightStore& weights, const std::string& name, float eps) {
  ops::LayerNorm ln;
  ln.gamma = weights.load(name + ".weight");
  ln.beta = weights.load(name + ".bias");
  ln.eps = eps;
  return ln;
}

void VitEncoder::append_expected(const VitConfig& c, const std::string& prefix,
                                 std::vector<ExpectedTensor>& table) {
  const std::int64_t d = c.hidden_size, p = c.patch_size, g = c.image_size / c.patch_size;
  const std::string e = prefix + "embeddings.";
  table.push_back({e + "cls_token", {1, 1, d}});
  table.push_back({e + "position_embeddings", {1, 1 + g * g, d}});
  table.push_back({e + "patch_embeddings.projection.weight", {d, c.num_channels, p, p}});
  table.push_back({e + "patch_embeddings.projection.bias", {d}});
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string n = fmt::format("{}encoder.layer.{}.", prefix, l);
    for (const char* proj : {"query", "key", "value"}) {
      table.push_back({n + "attention.attention." + proj + ".weight", {d, d}});
      table.push_back({n + "attention.attention." + proj + ".bias", {d}, c.qkv_bias});
    }
    table.push_back({n + "attention.output.dense.weight", {d, d}});
    table.push_back({n + "attention.output.dense.bias", {d}});
    table.push_back({n + "intermediate.dense.weight", {c.intermediate_size, d}});
    table.push_back({n + "intermediate.dense.bias", {c.intermediate_size}});
    table.push_back({n + "output.dense.weight", {d, c.intermediate_size}});
    table.push_back({n + "output.dense.bias", {d}});
    append_layer_norm(n + "layernorm_before", d, table);
    append_layer_norm(n + "layernorm_after", d, table);
  }
  append_layer_norm(prefix + "layernorm", d, table);
}

namespace {
std::unique_ptr<PreparedLinear> load_linear(Backend& backend, const WeightStore& w,
                                            const std::string& name, std::int64_t in,
                                            std::int64_t out, std::int64_t m_hint) {
  FloatBuffer weight = w.load(name + ".weight");  // nn.Linear: (out, in)
  FloatBuffer bias = w.load(name + ".bias");
  return backend.prepare_linear(weight.data(), WeightLayout::OutIn, in, out, bias.data(), m_hint);
}
}  // namespace

VitEncoder::VitEncoder(const VitConfig& config, Backend& backend, const WeightStore& w,
                       const std::string& prefix)
    : config_(config), backend_(backend), attention_precision_(backend.precision()) {
  const std::int64_t d = config.hidden_size, p = config.patch_size, c = config.num_channels;
  const std::int64_t t = num_tokens(), np = t - 1;
  const float eps = static_cast<float>(config.layer_norm_eps);
  const std::string e = prefix + "embeddings.";

  {  // Conv2d weight (D, C, p, p) flattened row-major is exactly an (out, in) matrix.
    FloatBuffer weight = w.load(e + "patch_embeddings.projection.weight");
    FloatBuffer bias = w.load(e + "patch_embeddings.projection.bias");
    patch_embedding_ = backend.prepare_linear(weight.data(), WeightLayout::OutIn, c * p * p, d,
                                              bias.data(), np);
  }
  // ref: ViTSelfAttention: scores = (Q·Kᵀ) · head_dim^-0.5. A power-of-two scale (head_dim 64,
  // 256, ...) is folded into the query weights and bias, which is exact; any other stays a
  // multiplication of the scores.
  const float scale = 1.0f / std::sqrt(static_cast<float>(d / config.num_attention_heads));
  int exponent = 0;
  const float fold = std::frexp(scale, &exponent) == 0.5f ? scale : 1.0f;
  scale_ = scale / fold;

  cls_token_ = w.load(e + "cls_token");
  position_embeddings_ = w.load(e + "position_embeddings");

  for (std::int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string n = fmt::format("{}encoder.layer.{}.", prefix, l);
    Layer layer;
    layer.layernorm_before = load_layer_norm(w, n + "layernorm_before", eps);
    layer.layernorm_after = load_layer_norm(w, n + "layernorm_after", eps);
    {  // Fuse query, key, value into one (3D, D) nn.Linear weight: rows are output features.
      FloatBuffer weight(static_cast<std::size_t>(3 * d * d)), bias(static_cast<std::size_t>(3 * d));
      bias.zero();
      int k = 0;
      for (const char* proj : {"query", "key", "value"}) {
        const std::string name = n + "attention.attention." + proj;
        FloatBuffer pw = w.load(name + ".weight");
        std::memcpy(weight.data() + k * d * d, pw.data(), sizeof(float) * d * d);
        if (w.has(name + ".bias")) {
          FloatBuffer pb = w.load(name + ".bias");
          std::memcpy(bias.data() + k * d, pb.data(), sizeof(float) * d);
        }
        ++k;
      }
      for (std::int64_t i = 0; i < d * d; ++i) weight.data()[i] *= fold;  // query rows come first
      for (std::int64_t i = 0; i < d; ++i) bias.data()[i] *= fold;
      layer.qkv = backend.prepare_linear(weight.data(), WeightLayout::OutIn, d, 3 * d, bias.data(), t);
    }
    layer.output = load_linear(backend, w, n + "attention.output.dense", d, d, t);
    layer.intermediate = load_linear(backend, w, n + "intermediate.dense", d, config.intermediate_size, t);
    layer.mlp_output = load_linear(backend, w, n + "output.dense", config.intermediate_size, d, t);
    layers_.push_back(std::move(layer));
  }
  final_layernorm_ = load_layer_norm(w, prefix + "layernorm", eps);
  reserve(1);
}

void VitEncoder::reserve(std::int64_t batch) {
  if (batch <= batch_capacity_) return;
  const std::int64_t d = config_.hidden_size, p = config_.patch_size, c = config_.num_channels;
  const auto b = static_cast<std::size_t>(batch), t = static_cast<std::size_t>(num_tokens());
  const auto np = t - 1;
  patches_.resize(b * np * static_cast<std::size_t>(c * p * p));
  embedded_.resize(b * np * static_cast<std::size_t>(d));
  normed_.resize(b * t * static_cast<std::size_t>(d));
  qkv_.resize(b * t * static_cast<std::size_t>(3 * d));
  context_.resize(b * t * static_cast<std::size_t>(d));
  scores_.resize(static_cast<std::size_t>(config_.num_attention_heads) * t * t);
  mlp_.resize(b * t * static_cast<std::size_t>(config_.intermediate_size));
  batch_capacity_ = batch;
}

void VitEncoder::forward(const float* pixels, float* out, std::int64_t batch) {
  const std::int64_t d = config_.hidden_size, p = config_.patch_size, c = config_.num_channels;
  const std::int64_t size = config_.image_size, g = grid_rows(), t = num_tokens(), np = t - 1;
  const std::int64_t heads = config_.num_attention_heads, hd = d / heads;
  reserve(batch);

  // im2col: patch (gy, gx) -> row gy*g+gx, columns ordered (channel, ky, kx) like the conv kernel.
  float* patch_row = patches_.data();
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* image = pixels + b * c * size * size;
    for (std::int64_t gy = 0; gy < g; ++gy)
      for (std::int64_t gx = 0; gx < g; ++gx)
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t ky = 0; ky < p; ++ky) {
            const float* src = image + (ch * size + gy * p + ky) * size + gx * p;
            std::memcpy(patch_row, src, sizeof(float) * p);
            patch_row += p;
          }
  }

  // x = [CLS; patches·W + b] + position embeddings.   x lives in `out`: (B, T, D).
  ops::linear(backend_, *patch_embedding_, patches_.data(), batch * np, embedded_.data());
  const float* pos = position_embeddings_.data();
  for (std::int64_t b = 0; b < batch; ++b) {
    float* x = out + b * t * d;
    std::memcpy(x, cls_token_.data(), sizeof(float) * d);
    std::memcpy(x + d, embedded_.data() + b * np * d, sizeof(float) * np * d);
    for (std::int64_t i = 0; i < t * d; ++i) x[i] += pos[i];
  }

  const std::int64_t rows = batch * t;
  for (auto& layer : layers_) {
    ops::layer_norm(backend_, layer.layernorm_before, out, normed_.data(), rows);
    ops::linear(backend_, *layer.qkv, normed_.data(), rows, qkv_.data());
    for (std::int64_t b = 0; b < batch; ++b) {
      const float* qkv = qkv_.data() + b * t * 3 * d;
      ops::attention(backend_, {qkv, 3 * d, qkv + d, 3 * d, qkv + 2 * d, 3 * d, t, t, heads, hd,
                                scale_, scores_.data(), context_.data() + b * t * d, d, attention_precision_});
    }
    ops::linear(backend_, *layer.output, context_.data(), rows, out, Activation::None, true);
    ops::layer_norm(backend_, layer.layernorm_after, out, normed_.data(), rows);
    ops::linear(backend_, *layer.intermediate, normed_.data(), rows, mlp_.data(), config_.activation);
    ops::linear(backend_, *layer.mlp_output, mlp_.data(), rows, out, Activation::None, true);
  }
  ops::layer_norm(backend_, final_layernorm_, out, out, rows);
}

}  // namespace xcaption
