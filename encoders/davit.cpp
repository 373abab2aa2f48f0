#include "encoders/davit.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/ops/image_ops.hpp"
#include "src/ops/ops.hpp"

namespace xcaption {

using namespace config;

// ---------------------------------------------------------------------------------------------
// Configuration

namespace {

const json* find_value(const Node& n, std::string_view key) {
  const json* v = n.find(key);
  return (v && !v->is_null()) ? v : nullptr;
}

std::vector<std::int64_t> int_list(const Node& n, std::string_view key, std::vector<std::int64_t> def, bool required) {
  const json* v = find_value(n, key);
  if (!v) {
    if (required) throw FormatError(fmt::format("{}: missing (a list of integers per stage)", n.where(key)));
    return def;
  }
  if (!v->is_array()) type_error(n, key, "a list of integers", *v);
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < v->size(); ++i) out.push_back(to_int(n, fmt::format("{}[{}]", key, i), (*v)[i]));
  return out;
}

std::vector<bool> bool_list(const Node& n, std::string_view key, std::vector<bool> def) {
  const json* v = find_value(n, key);
  if (!v) return def;
  if (!v->is_array()) type_error(n, key, "a list of booleans", *v);
  std::vector<bool> out;
  for (std::size_t i = 0; i < v->size(); ++i) out.push_back(to_bool(n, fmt::format("{}[{}]", key, i), (*v)[i]));
  return out;
}

// A remote-code embedding block: {"type": <expected>, <size_key>: N}.
std::int64_t embedding_block(const Node& n, const char* key, const char* type, const char* size_key) {
  const json* v = find_value(n, key);
  if (!v)
    throw InputError(fmt::format("{}: missing; Florence-2's remote code requires it (type \"{}\")", n.where(key), type));
  if (!v->is_object()) type_error(n, key, "an object", *v);
  const Node sub{v, n.file, n.prefix + key + "."};
  const std::string t = get_string(sub, "type", "");
  if (t != type)
    throw InputError(fmt::format("{}: \"{}\" is unsupported (Florence-2 implements \"{}\" only)", sub.where("type"), t,
                                 type));
  const json* size = find_value(sub, size_key);
  if (!size) throw FormatError(fmt::format("{}: missing", sub.where(size_key)));
  const std::int64_t value = to_int(sub, size_key, *size);
  require_positive(sub, size_key, value);
  return value;
}

Conv2dSpec conv(std::string name, std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                std::int64_t padding, std::int64_t groups) {
  return {std::move(name), in, out, kernel, stride, padding, groups};
}

}  // namespace

std::vector<std::int64_t> Florence2VisionSpec::stage_sides() const {
  std::vector<std::int64_t> sides;
  std::int64_t side = image_size;
  for (const auto& s : stages) {
    const Conv2dShape shape{s.embed.in, s.embed.out, s.embed.kernel, s.embed.stride, s.embed.padding, s.embed.groups};
    side = side + 2 * shape.padding < shape.kernel ? 0 : shape.out_size(side);
    sides.push_back(side);
  }
  return sides;
}

std::int64_t Florence2VisionSpec::grid() const {
  const auto sides = stage_sides();
  return sides.empty() ? 0 : sides.back();
}

std::int64_t Florence2VisionSpec::num_tokens() const {
  const std::int64_t cells = grid() * grid();
  std::int64_t n = 0;
  for (auto f : feature_sources) n += f == Florence2FeatureSource::spatial_avg_pool ? 1 : cells;
  return n;
}

Florence2VisionSpec florence2_vision_spec(const Node& config, Florence2Layout layout, const WeightStore* backing) {
  const bool remote = layout == Florence2Layout::remote;
  const Node v = sub_object(config, "vision_config");
  Florence2VisionSpec s;
  s.layout = layout;

  if (const json* mt = find_value(v, "model_type")) {
    const std::string t = to_string(v, "model_type", *mt);
    const char* want = remote ? "davit" : "florence_vision";
    if (t != want)
      throw InputError(fmt::format("{}: \"{}\" is not Florence-2's vision tower (\"{}\" in the {} layout)",
                                   v.where("model_type"), t, want, remote ? "remote-code" : "transformers-native"));
  }
  // ref: configuration_florence2.py (remote: dim_embed; native Florence2VisionConfig: embed_dim).
  const char* dim_key = remote ? "dim_embed" : "embed_dim";
  const std::vector<std::int64_t> dims = int_list(v, dim_key, {128, 256, 512, 1024}, remote);
  const std::vector<std::int64_t> depths = int_list(v, "depths", {1, 1, 9, 1}, remote);
  const std::vector<std::int64_t> heads = int_list(v, "num_heads", {4, 8, 16, 32}, remote);
  const std::vector<std::int64_t> groups = int_list(v, "num_groups", {4, 8, 16, 32}, remote);
  const std::vector<std::int64_t> patch = int_list(v, "patch_size", {7, 3, 3, 3}, false);
  const std::vector<std::int64_t> stride = int_list(v, "patch_stride", {4, 2, 2, 2}, false);
  const std::vector<std::int64_t> padding = int_list(v, "patch_padding", {3, 1, 1, 1}, false);
  const std::vector<bool> prenorm = bool_list(v, "patch_prenorm", {false, true, true, true});
  s.window_size = get_int(v, "window_size", 12);
  require_positive(v, "window_size", s.window_size);

  const std::size_t n = dims.size();
  if (n == 0) throw ShapeError(fmt::format("{}: no stages", v.where(dim_key)));
  for (const auto& [key, size] : {std::pair<const char*, std::size_t>{"depths", depths.size()},
                                  {"num_heads", heads.size()}, {"num_groups", groups.size()},
                                  {"patch_size", patch.size()}, {"patch_stride", stride.size()},
                                  {"patch_padding", padding.size()}, {"patch_prenorm", prenorm.size()}})
    if (size != n)
      throw ShapeError(fmt::format("{}: {} values for {} stages ({} has {})", v.where(key), size, n, dim_key, n));

  // Native configs carry mlp_ratio, qkv_bias and activation_function; the remote DaViT is built
  // with its constructor's mlp_ratio 4, qkv_bias True and nn.GELU whatever the config says.
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  std::int64_t in_channels = 3;
  if (!remote) {
    mlp_ratio = get_double(v, "mlp_ratio", 4.0);
    if (!(mlp_ratio > 0) || !std::isfinite(mlp_ratio))
      throw InputError(fmt::format("{}: {} is not a positive ratio", v.where("mlp_ratio"), mlp_ratio));
    qkv_bias = get_bool(v, "qkv_bias", true);
    s.activation = parse_activation(v, "activation_function", get_string(v, "activation_function", "gelu"));
    in_channels = get_int(v, "in_channels", 3);
  }
  if (in_channels != 3)
    throw InputError(fmt::format("{}: {} channels is unsupported (xcaption feeds RGB images: 3)", v.where("in_channels"),
                                 in_channels));

  const std::string t = remote ? "vision_tower." : "model.vision_tower.";
  std::int64_t in = in_channels;
  for (std::size_t i = 0; i < n; ++i) {
    const auto key = [&](const char* k) { return fmt::format("{}[{}]", k, i); };
    for (const auto& [k, value] : {std::pair<const char*, std::int64_t>{dim_key, dims[i]}, {"depths", depths[i]},
                                   {"num_heads", heads[i]}, {"num_groups", groups[i]}, {"patch_size", patch[i]},
                                   {"patch_stride", stride[i]}})
      require_positive(v, key(k), value);
    // a million blocks would take minutes and gigabytes to describe: refuse them first
    if (backing) backing->require_layers(v.where(key("depths")), depths[i]);
    if (padding[i] < 0) throw InputError(fmt::format("{}: {} is negative", v.where(key("patch_padding")), padding[i]));
    if (dims[i] % heads[i] != 0)
      throw ShapeError(fmt::format("{}: {} is not a multiple of num_heads[{}] {}", v.where(key(dim_key)), dims[i], i,
                                   heads[i]));
    if (dims[i] % groups[i] != 0)
      throw ShapeError(fmt::format("{}: {} is not a multiple of num_groups[{}] {}", v.where(key(dim_key)), dims[i], i,
                                   groups[i]));
    if (i == 0 && prenorm[0])
      // The remote ConvEmbed skips a pre-norm on the 4-D image while the native one applies it:
      // the layouts disagree, and no released checkpoint does it.
      throw InputError(fmt::format("{}: a LayerNorm before the first convolution is unsupported",
                                   v.where(key("patch_prenorm"))));
    const std::int64_t d = dims[i];
    const std::int64_t hidden = static_cast<std::int64_t>(static_cast<double>(d) * mlp_ratio);  // int() truncates
    if (hidden < 1) throw InputError(fmt::format("{}: an MLP of {} features", v.where("mlp_ratio"), hidden));
    Florence2StageSpec st;
    st.dim = d;
    st.heads = heads[i];
    st.groups = groups[i];
    st.prenorm = prenorm[i];
    const std::string c = fmt::format("{}convs.{}.", t, i);
    st.embed = conv(c + (remote ? "proj" : "conv"), in, d, patch[i], stride[i], padding[i], 1);
    st.embed_norm = {c + "norm", st.prenorm ? in : d, s.eps};
    for (std::int64_t j = 0; j < depths[i]; ++j) {
      const std::string b = fmt::format("{}blocks.{}.{}.", t, i, j);
      for (const bool spatial : {true, false}) {
        const std::string m = b + (spatial ? "spatial_block." : "channel_block.");
        const std::string attn = m + (spatial ? "window_attn." : "channel_attn.");
        Florence2MixerSpec mx;
        const blocks::Bias bias = qkv_bias ? blocks::Bias::Required : blocks::Bias::None;
        if (remote) {
          // ref: remote SpatialBlock/ChannelBlock: PreNorm(None, DepthWiseConv2d) -> conv1.fn.dw,
          // PreNorm(LayerNorm, attention) -> <attn>.norm / <attn>.fn, PreNorm(LayerNorm, Mlp) -> ffn.norm / ffn.fn.net.
          mx.conv1 = conv(m + "conv1.fn.dw", d, d, 3, 1, 1, d);
          mx.conv2 = conv(m + "conv2.fn.dw", d, d, 3, 1, 1, d);
          mx.norm1 = {attn + "norm", d, s.eps};
          mx.norm2 = {m + "ffn.norm", d, s.eps};
          mx.qkv = blocks::linear(attn + "fn.qkv", d, 3 * d, WeightLayout::OutIn, bias);
          mx.proj = blocks::linear(attn + "fn.proj", d, d);
          mx.fc1 = blocks::linear(m + "ffn.fn.net.fc1", d, hidden);
          mx.fc2 = blocks::linear(m + "ffn.fn.net.fc2", hidden, d);
        } else {
          // ref: transformers convert_florence2_original_pytorch_to_hf.py vision_spatial_block / _channel_block.
          mx.conv1 = conv(m + "conv1", d, d, 3, 1, 1, d);
          mx.conv2 = conv(m + "conv2", d, d, 3, 1, 1, d);
          mx.norm1 = {m + "norm1", d, s.eps};
          mx.norm2 = {m + "norm2", d, s.eps};
          mx.qkv = blocks::linear(attn + "qkv", d, 3 * d, WeightLayout::OutIn, bias);
          mx.proj = blocks::linear(attn + "proj", d, d);
          mx.fc1 = blocks::linear(m + "ffn.fc1", d, hidden);
          mx.fc2 = blocks::linear(m + "ffn.fc2", hidden, d);
        }
        (spatial ? st.spatial : st.channel).push_back(std::move(mx));
      }
    }
    s.stages.push_back(std::move(st));
    in = d;
  }

  const std::int64_t width = dims.back();
  if (remote) {
    s.projection_dim = get_int(v, "projection_dim", get_int(config, "projection_dim", 0));
    if (s.projection_dim == 0) throw FormatError(fmt::format("{}: missing", v.where("projection_dim")));
    // ref: remote Florence2ForConditionalGeneration._build_image_projection_layers / _encode_image.
    s.max_pos_embeddings = embedding_block(v, "image_pos_embed", "learned_abs_2d", "max_pos_embeddings");
    s.max_temporal_embeddings =
        embedding_block(v, "visual_temporal_embedding", "COSINE", "max_temporal_embeddings");
    s.row_embeddings = "image_pos_embed.row_embeddings.weight";
    s.column_embeddings = "image_pos_embed.column_embeddings.weight";
    s.temporal_table = "visual_temporal_embed.pos_idx_to_embed";
    s.projection = blocks::linear("image_projection", width, s.projection_dim, WeightLayout::InOut,
                                  blocks::Bias::None);  // a bare nn.Parameter (D, P): x @ W
    s.projection_norm = {"image_proj_norm", s.projection_dim, s.eps};
    const json* src = find_value(v, "image_feature_source");
    if (!src) {
      s.feature_sources = {Florence2FeatureSource::spatial_avg_pool, Florence2FeatureSource::temporal_avg_pool};
    } else {
      if (!src->is_array() || src->empty()) type_error(v, "image_feature_source", "a non-empty list of strings", *src);
      for (std::size_t i = 0; i < src->size(); ++i) {
        const std::string name = to_string(v, fmt::format("image_feature_source[{}]", i), (*src)[i]);
        if (name == "spatial_avg_pool") s.feature_sources.push_back(Florence2FeatureSource::spatial_avg_pool);
        else if (name == "temporal_avg_pool") s.feature_sources.push_back(Florence2FeatureSource::temporal_avg_pool);
        else if (name == "last_frame") s.feature_sources.push_back(Florence2FeatureSource::last_frame);
        else
          throw InputError(fmt::format(
              "{}: \"{}\" is not a feature source (spatial_avg_pool, temporal_avg_pool or last_frame)",
              v.where(fmt::format("image_feature_source[{}]", i)), name));
      }
    }
  } else {
    // ref: transformers Florence2MultiModalProjector: always [spatial mean; grid] with both embeddings.
    s.projection_dim = get_int(v, "projection_dim", 1024);
    s.max_pos_embeddings = get_int(v, "max_position_embeddings", 50);
    s.max_temporal_embeddings = get_int(v, "max_temporal_embeddings", 100);
    require_positive(v, "max_position_embeddings", s.max_pos_embeddings);
    require_positive(v, "max_temporal_embeddings", s.max_temporal_embeddings);
    const std::string p = "model.multi_modal_projector.";
    s.row_embeddings = p + "image_position_embed.row_embeddings.weight";
    s.column_embeddings = p + "image_position_embed.column_embeddings.weight";
    s.temporal_table = p + "visual_temporal_embed.pos_idx_to_embed";
    s.projection = blocks::linear(p + "image_projection", width, s.projection_dim, WeightLayout::OutIn,
                                  blocks::Bias::None);
    s.projection_norm = {p + "image_proj_norm", s.projection_dim, s.eps};
    s.feature_sources = {Florence2FeatureSource::spatial_avg_pool, Florence2FeatureSource::temporal_avg_pool};
  }
  require_positive(v, "projection_dim", s.projection_dim);
  s.temporal_embedding = true;
  return s;
}

Florence2VisionSpec florence2_vision_spec(const nlohmann::json& config, Florence2Layout layout, const std::string& file,
                                          const WeightStore* backing) {
  return florence2_vision_spec(Node{&config, file, ""}, layout, backing);
}

// ---------------------------------------------------------------------------------------------
// Tensor table

namespace {

void describe_conv(const Conv2dSpec& c, std::vector<ExpectedTensor>& table) {
  table.push_back({c.name + ".weight", {c.out, c.in / c.groups, c.kernel, c.kernel}});
  table.push_back({c.name + ".bias", {c.out}});
}

void describe_mixer(const Florence2MixerSpec& m, std::vector<ExpectedTensor>& table) {
  describe_conv(m.conv1, table);
  blocks::describe(m.norm1, table);
  blocks::describe(m.qkv, table);
  blocks::describe(m.proj, table);
  describe_conv(m.conv2, table);
  blocks::describe(m.norm2, table);
  blocks::describe(m.fc1, table);
  blocks::describe(m.fc2, table);
}

}  // namespace

void describe(const Florence2VisionSpec& s, std::vector<ExpectedTensor>& table) {
  for (const auto& st : s.stages) {
    describe_conv(st.embed, table);
    blocks::describe(st.embed_norm, table);
    for (std::size_t j = 0; j < st.spatial.size(); ++j) {
      describe_mixer(st.spatial[j], table);
      describe_mixer(st.channel[j], table);
    }
  }
  const std::int64_t d = s.stages.empty() ? 0 : s.stages.back().dim;
  if (!s.row_embeddings.empty()) {
    table.push_back({s.row_embeddings, {s.max_pos_embeddings, d / 2}});
    table.push_back({s.column_embeddings, {s.max_pos_embeddings, d - d / 2}});
  }
  // The cosine table is a buffer: recomputed when a checkpoint leaves it out.
  if (s.temporal_embedding && !s.temporal_table.empty())
    table.push_back({s.temporal_table, {s.max_temporal_embeddings, d}, false});
  const auto& p = s.projection;
  // A bare parameter in the remote layout (no ".weight"), an nn.Linear in the native one.
  const std::string name = s.layout == Florence2Layout::remote ? p.parts.front().name : p.parts.front().name + ".weight";
  table.push_back({name, p.layout == WeightLayout::InOut ? std::vector<std::int64_t>{p.in, p.out()}
                                                         : std::vector<std::int64_t>{p.out(), p.in}});
  blocks::describe(s.projection_norm, table);
}

std::vector<ExpectedTensor> describe(const Florence2VisionSpec& spec) {
  std::vector<ExpectedTensor> table;
  describe(spec, table);
  return table;
}

// ---------------------------------------------------------------------------------------------
// The tower

namespace {

struct Mixer {
  std::unique_ptr<PreparedConv> conv1, conv2;
  ops::LayerNorm norm1, norm2;
  std::unique_ptr<PreparedLinear> qkv, proj, fc1, fc2;
};

struct Stage {
  std::int64_t dim = 0, heads = 0, groups = 0, in_side = 0, side = 0, in_dim = 0;
  bool prenorm = false;
  std::unique_ptr<PreparedConv> embed;
  ops::LayerNorm embed_norm;
  std::vector<Mixer> spatial, channel;
  std::int64_t tokens() const { return side * side; }
};

std::unique_ptr<PreparedConv> load_conv(const Conv2dSpec& c, ImageLayout layout, const WeightStore& w, Backend& backend,
                                        std::int64_t side) {
  const FloatBuffer weight = w.load(c.name + ".weight");
  const FloatBuffer bias = w.load(c.name + ".bias");
  return backend.prepare_conv2d({c.in, c.out, c.kernel, c.stride, c.padding, c.groups}, layout, weight.data(),
                                bias.data(), side, side);
}

// Chunks of windows per window_attention call: bounds the scores workspace (chunk * T² floats)
// while each call still multiplies many windows at once.
constexpr std::int64_t kWindowChunk = 64;

}  // namespace

struct Florence2VisionTower::Impl {
  Backend& backend;
  Activation activation;
  std::int64_t window;
  std::vector<Stage> stages;
  FloatBuffer pos;       // (grid², D): [column[x], row[y]] per cell
  FloatBuffer temporal;  // (D): frame 0 of the cosine table
  std::unique_ptr<PreparedLinear> projection;
  ops::LayerNorm projection_norm;

  std::int64_t capacity = 0;
  FloatBuffer x, y;       // (B, N, C) the running state and the ping-pong partner
  FloatBuffer normed;     // (B, N, C)
  FloatBuffer windows;    // (B, windows, T, C)
  FloatBuffer qkv;        // (rows, 3C), rows = max(B·N, B·windows·T)
  FloatBuffer context;    // (rows, C)
  FloatBuffer mlp;        // (B·N, hidden)
  FloatBuffer scores;     // window chunks (chunk, T, T) or channel groups (g, d, d)
  FloatBuffer features;   // (B, grid², D): the grid with its embeddings
  FloatBuffer tokens;     // (B, num_tokens, D): the projector's input

  explicit Impl(Backend& b) : backend(b) {}

  void reserve(std::int64_t batch, std::int64_t num_tokens) {
    if (batch <= capacity) return;
    const std::int64_t t = window * window;
    std::int64_t state = 0, rows = 0, hidden = 0, score = 0;
    for (const auto& s : stages) {
      const std::int64_t n = s.tokens(), win_rows = ops::window_count(s.side, s.side, window) * t;
      state = std::max({state, n * s.dim, s.in_side * s.in_side * s.in_dim});
      rows = std::max({rows, n * s.dim, win_rows * s.dim});
      if (!s.spatial.empty()) hidden = std::max(hidden, n * s.spatial.front().fc1->out_features());
      const std::int64_t d = s.dim / s.groups;
      score = std::max({score, std::min<std::int64_t>(kWindowChunk, batch * win_rows / t) * t * t, s.groups * d * d});
    }
    const auto b = static_cast<std::size_t>(batch);
    x.resize(b * static_cast<std::size_t>(state));
    y.resize(b * static_cast<std::size_t>(state));
    normed.resize(b * static_cast<std::size_t>(state));
    windows.resize(b * static_cast<std::size_t>(rows));
    qkv.resize(3 * b * static_cast<std::size_t>(rows));
    context.resize(b * static_cast<std::size_t>(rows));
    mlp.resize(b * static_cast<std::size_t>(hidden));
    scores.resize(static_cast<std::size_t>(score));
    const Stage& last = stages.back();
    features.resize(b * static_cast<std::size_t>(last.tokens() * last.dim));
    tokens.resize(b * static_cast<std::size_t>(num_tokens * last.dim));
    capacity = batch;
  }

  // x (B·N, C) += dwconv(x): the ConvPosEnc residual, through y.
  void conv_residual(const PreparedConv& conv, std::int64_t batch, std::int64_t side) {
    ops::conv2d(backend, conv, x.data(), batch, side, side, x.data(), y.data());
    std::swap(x, y);
  }

  void mlp_residual(const Mixer& m, std::int64_t rows) {
    ops::layer_norm(backend, m.norm2, x.data(), normed.data(), rows);
    ops::linear(backend, *m.fc1, normed.data(), rows, mlp.data(), activation);
    ops::linear(backend, *m.fc2, mlp.data(), rows, x.data(), Activation::None, /*accumulate=*/true);
  }

  // ref: Florence2VisionSpatialBlock: x += dw(x); x += window_attn(norm1(x)); x += dw(x); x += ffn(norm2(x)).
  void spatial(const Stage& s, const Mixer& m, std::int64_t batch) {
    const std::int64_t c = s.dim, rows = batch * s.tokens(), t = window * window;
    conv_residual(*m.conv1, batch, s.side);
    ops::layer_norm(backend, m.norm1, x.data(), normed.data(), rows);
    // Padding comes after the norm: padded tokens are zeros, whose keys and values (the biases)
    // every token sees, unmasked, as in the reference.
    const std::int64_t count = batch * ops::window_partition(backend, normed.data(), batch, s.side, s.side, c, window,
                                                             windows.data());
    const std::int64_t win_rows = count * t;
    ops::linear(backend, *m.qkv, windows.data(), win_rows, qkv.data());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c / s.heads));
    for (std::int64_t first = 0; first < count; first += kWindowChunk) {
      const std::int64_t n = std::min(kWindowChunk, count - first);
      ops::window_attention(backend, {qkv.data() + first * t * 3 * c, 3 * c, n, t, s.heads, c / s.heads, scale,
                                      scores.data(), context.data() + first * t * c, c});
    }
    ops::linear(backend, *m.proj, context.data(), win_rows, windows.data());
    ops::window_merge(backend, windows.data(), batch, s.side, s.side, c, window, x.data(), /*accumulate=*/true);
    conv_residual(*m.conv2, batch, s.side);
    mlp_residual(m, rows);
  }

  // ref: Florence2VisionChannelBlock, the channel attention scaled by tokens^-0.5.
  void channel(const Stage& s, const Mixer& m, std::int64_t batch) {
    const std::int64_t c = s.dim, n = s.tokens(), rows = batch * n;
    conv_residual(*m.conv1, batch, s.side);
    ops::layer_norm(backend, m.norm1, x.data(), normed.data(), rows);
    ops::linear(backend, *m.qkv, normed.data(), rows, qkv.data());
    const float scale = 1.0f / std::sqrt(static_cast<float>(n));
    for (std::int64_t b = 0; b < batch; ++b)
      ops::channel_attention(backend, {qkv.data() + b * n * 3 * c, 3 * c, n, c, s.groups, scale, scores.data(),
                                       context.data() + b * n * c, c});
    ops::linear(backend, *m.proj, context.data(), rows, x.data(), Activation::None, /*accumulate=*/true);
    conv_residual(*m.conv2, batch, s.side);
    mlp_residual(m, rows);
  }

  // The backbone over `batch` images; its output is in x. `capture`, when set, receives each
  // stage's output of image 0.
  void backbone(const float* pixels, std::int64_t batch, std::int64_t image_size, std::vector<FloatBuffer>* capture) {
    for (std::size_t i = 0; i < stages.size(); ++i) {
      const Stage& s = stages[i];
      const std::int64_t rows = batch * s.tokens();
      if (i == 0) {
        ops::conv2d(backend, *s.embed, pixels, batch, image_size, image_size, nullptr, x.data());
      } else if (s.prenorm) {
        ops::layer_norm(backend, s.embed_norm, x.data(), normed.data(), batch * s.in_side * s.in_side);
        ops::conv2d(backend, *s.embed, normed.data(), batch, s.in_side, s.in_side, nullptr, x.data());
      } else {
        ops::conv2d(backend, *s.embed, x.data(), batch, s.in_side, s.in_side, nullptr, y.data());
        std::swap(x, y);
      }
      if (!s.prenorm) ops::layer_norm(backend, s.embed_norm, x.data(), x.data(), rows);
      for (std::size_t j = 0; j < s.spatial.size(); ++j) {
        spatial(s, s.spatial[j], batch);
        channel(s, s.channel[j], batch);
      }
      if (capture) {
        FloatBuffer out(static_cast<std::size_t>(s.tokens() * s.dim));
        ops::copy_rows(backend, x.data(), s.dim, s.tokens(), nullptr, s.tokens(), s.dim, out.data(), s.dim);
        capture->push_back(std::move(out));
      }
    }
  }
};

Florence2VisionTower::Florence2VisionTower(const Florence2VisionSpec& spec, const WeightStore& w, Backend& backend)
    : spec_(spec), impl_(std::make_unique<Impl>(backend)) {
  Impl& m = *impl_;
  if (spec.stages.empty()) throw ShapeError("Florence-2 vision tower: no stages");
  m.activation = spec.activation;
  m.window = spec.window_size;
  const auto sides = spec.stage_sides();
  std::int64_t in_side = spec.image_size, in_dim = 3;
  for (std::size_t i = 0; i < spec.stages.size(); ++i) {
    const Florence2StageSpec& s = spec.stages[i];
    if (sides[i] < 1)
      throw ShapeError(fmt::format("Florence-2 vision tower: a {}x{} image leaves no grid at stage {}", spec.image_size,
                                   spec.image_size, i));
    Stage st;
    st.dim = s.dim;
    st.heads = s.heads;
    st.groups = s.groups;
    st.in_side = in_side;
    st.in_dim = in_dim;
    st.side = sides[i];
    st.prenorm = s.prenorm;
    st.embed = load_conv(s.embed, i == 0 ? ImageLayout::NCHW : ImageLayout::NHWC, w, backend, in_side);
    st.embed_norm = blocks::load(s.embed_norm, w);
    const std::int64_t n = st.side * st.side, t = spec.window_size * spec.window_size;
    const std::int64_t win_rows = ops::window_count(st.side, st.side, spec.window_size) * t;
    for (std::size_t j = 0; j < s.spatial.size(); ++j) {
      for (const bool spatial : {true, false}) {
        const Florence2MixerSpec& ms = spatial ? s.spatial[j] : s.channel[j];
        Mixer mx;
        mx.conv1 = load_conv(ms.conv1, ImageLayout::NHWC, w, backend, st.side);
        mx.conv2 = load_conv(ms.conv2, ImageLayout::NHWC, w, backend, st.side);
        mx.norm1 = blocks::load(ms.norm1, w);
        mx.norm2 = blocks::load(ms.norm2, w);
        mx.qkv = blocks::load(ms.qkv, w, backend, spatial ? win_rows : n);
        mx.proj = blocks::load(ms.proj, w, backend, spatial ? win_rows : n);
        mx.fc1 = blocks::load(ms.fc1, w, backend, n);
        mx.fc2 = blocks::load(ms.fc2, w, backend, n);
        (spatial ? st.spatial : st.channel).push_back(std::move(mx));
      }
    }
    m.stages.push_back(std::move(st));
    in_side = sides[i];
    in_dim = s.dim;
  }

  // Projector tables. ref: LearnedAbsolutePositionEmbedding2D: cell (y, x) gets
  // [column_embeddings[x], row_embeddings[y]]; PositionalEmbeddingCosine1D row 0 for one frame.
  const std::int64_t g = spec.grid(), d = m.stages.back().dim;
  if (!spec.row_embeddings.empty()) {
    if (g > spec.max_pos_embeddings)
      throw ShapeError(fmt::format("Florence-2 vision tower: a {}x{} grid needs more than the {} learned positions "
                                   "(image_pos_embed max_pos_embeddings)",
                                   g, g, spec.max_pos_embeddings));
    const FloatBuffer rows = w.load(spec.row_embeddings), cols = w.load(spec.column_embeddings);
    const std::int64_t half = d / 2, rest = d - half;
    m.pos.resize(static_cast<std::size_t>(g * g * d));
    for (std::int64_t yy = 0; yy < g; ++yy)
      for (std::int64_t xx = 0; xx < g; ++xx) {
        float* cell = m.pos.data() + (yy * g + xx) * d;
        ops::copy_rows(backend, cols.data() + xx * rest, rest, 1, nullptr, 1, rest, cell, rest);
        ops::copy_rows(backend, rows.data() + yy * half, half, 1, nullptr, 1, half, cell + rest, half);
      }
  }
  if (spec.temporal_embedding) {
    m.temporal.resize(static_cast<std::size_t>(d));
    if (!spec.temporal_table.empty() && w.has(spec.temporal_table)) {
      const FloatBuffer table = w.load(spec.temporal_table);
      ops::copy_rows(backend, table.data(), d, 1, nullptr, 1, d, m.temporal.data(), d);
    } else {
      // sin(0) at even columns, cos(0) at odd ones.
      for (std::int64_t c = 0; c < d; ++c) m.temporal.data()[c] = c % 2 == 0 ? 0.0f : 1.0f;
    }
  }
  {
    const blocks::LinearSpec& p = spec.projection;
    const std::string name = spec.layout == Florence2Layout::remote ? p.parts.front().name : p.parts.front().name + ".weight";
    const FloatBuffer weight = w.load(name);
    m.projection = backend.prepare_linear(weight.data(), p.layout, p.in, p.out(), nullptr, num_tokens());
  }
  m.projection_norm = blocks::load(spec.projection_norm, w);
  m.reserve(1, num_tokens());
}

Florence2VisionTower::~Florence2VisionTower() = default;

TokenGrid Florence2VisionTower::grid() const {
  // The first grid-sized source holds the cells; a spatial mean before it is one token.
  std::int64_t first = 0;
  for (auto f : spec_.feature_sources) {
    if (f != Florence2FeatureSource::spatial_avg_pool) break;
    ++first;
  }
  const std::int64_t g = spec_.grid();
  if (first == static_cast<std::int64_t>(spec_.feature_sources.size())) return {num_tokens(), 0, 0, 0};
  return {num_tokens(), first, g, g};
}

void Florence2VisionTower::forward(const float* pixels, std::int64_t batch, float* out) {
  Impl& m = *impl_;
  Backend& be = m.backend;
  const std::int64_t t = num_tokens(), side = spec_.image_size;
  // One image at a time: at 768x768 a stage-0 map is already 36,864 rows for every linear layer,
  // so batching gains nothing there, while the workspaces (about 230 MB for Florence-2-base)
  // would grow with the batch.
  m.reserve(1, t);
  const Stage& last = m.stages.back();
  const std::int64_t d = last.dim, cells = last.tokens();
  for (std::int64_t b = 0; b < batch; ++b) {
    m.backbone(pixels + b * 3 * side * side, 1, side, nullptr);
    // ref: _encode_image (remote) / Florence2MultiModalProjector (native): x + pos, + temporal
    // row 0, then the feature sources of one frame, projection, LayerNorm.
    float* f = m.features.data();
    ops::copy_rows(be, m.x.data(), d, cells, nullptr, cells, d, f, d);
    if (m.pos.size() > 0) ops::add_rows(be, m.pos.data(), d, cells, d, f, d);
    if (m.temporal.size() > 0) ops::add_rows(be, m.temporal.data(), 0, cells, d, f, d);
    float* row = m.tokens.data();
    for (auto source : spec_.feature_sources) {
      if (source == Florence2FeatureSource::spatial_avg_pool) {
        ops::mean_rows(be, f, d, cells, d, row);
        row += d;
      } else {  // the temporal mean and the last frame of a single frame are the frame
        ops::copy_rows(be, f, d, cells, nullptr, cells, d, row, d);
        row += cells * d;
      }
    }
    float* o = out + b * t * spec_.projection_dim;
    ops::linear(be, *m.projection, m.tokens.data(), t, o);
    ops::layer_norm(be, m.projection_norm, o, o, t);
  }
}

std::vector<FloatBuffer> Florence2VisionTower::stage_outputs(const float* pixels) {
  Impl& m = *impl_;
  m.reserve(1, num_tokens());
  std::vector<FloatBuffer> out;
  m.backbone(pixels, 1, spec_.image_size, &out);
  return out;
}

double Florence2VisionTower::flops() const {
  const Impl& m = *impl_;
  double f = 0;
  const std::int64_t t = m.window * m.window;
  for (const auto& s : m.stages) {
    const double n = static_cast<double>(s.tokens()), c = static_cast<double>(s.dim);
    const Conv2dShape& e = s.embed->shape();
    f += 2 * n * static_cast<double>(e.out * e.in / e.groups * e.kernel * e.kernel);
    const double win_rows = static_cast<double>(ops::window_count(s.side, s.side, m.window) * t);
    for (std::size_t j = 0; j < s.spatial.size(); ++j) {
      const double hidden = static_cast<double>(s.spatial[j].fc1->out_features());
      const double mlp = 2 * n * 2 * c * hidden, dw = 2 * 2 * n * c * 9;
      // spatial: qkv and proj over the padded windows, QKᵀ and PV inside each window
      f += dw + mlp + 2 * win_rows * 4 * c * c + 2 * 2 * win_rows * static_cast<double>(t) * c;
      // channel: qkv, proj, and the (d x d) products over all tokens per group
      f += dw + mlp + 2 * n * 4 * c * c + 2 * 2 * n * c * (c / static_cast<double>(s.groups));
    }
  }
  f += 2 * static_cast<double>(num_tokens()) * static_cast<double>(m.projection->in_features() * m.projection->out_features());
  return f;
}

std::string Florence2VisionTower::describe() const {
  std::string dims, depths;
  for (const auto& s : impl_->stages) {
    dims += (dims.empty() ? "" : "/") + std::to_string(s.dim);
    depths += (depths.empty() ? "" : "/") + std::to_string(s.spatial.size());
  }
  return fmt::format("DaViT {}x{} (Florence-2, {} layout), {} stages, dims {}, depths {}, window {}, {}x{} grid -> "
                     "{} tokens of {}",
                     spec_.image_size, spec_.image_size, spec_.layout == Florence2Layout::remote ? "remote" : "native",
                     impl_->stages.size(), dims, depths, spec_.window_size, spec_.grid(), spec_.grid(), num_tokens(),
                     spec_.projection_dim);
}

std::int64_t Florence2VisionTower::num_layers() const {
  std::int64_t n = 0;
  for (const auto& s : impl_->stages) n += static_cast<std::int64_t>(s.spatial.size());
  return n;
}

std::int64_t Florence2VisionTower::num_heads() const { return impl_->stages.back().heads; }

std::int64_t Florence2VisionTower::patch_size() const {
  // Pixels per cell of the final grid: the product of the strides (32 for DaViT).
  std::int64_t p = 1;
  for (const auto& s : impl_->stages) p *= s.embed->shape().stride;
  return p;
}

}  // namespace xcaption
