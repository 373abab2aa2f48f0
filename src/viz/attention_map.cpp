// Reduction of captured cross-attention to one patch-grid map per token (include/xcaption/viz.hpp).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

namespace xcaption::viz {

namespace {

void check_attention(const CrossAttention& a) {
  if (a.steps <= 0 || a.weights.empty())
    throw InputError("attention map: the caption carries no cross-attention (set CaptionRequest::capture_cross_attention)");
  if (a.layers <= 0 || a.heads <= 0 || a.grid_rows <= 0 || a.grid_cols <= 0)
    throw ShapeError(fmt::format("attention map: invalid dimensions layers={} heads={} grid={}x{}", a.layers,
                                 a.heads, a.grid_rows, a.grid_cols));
  if (a.grid_offset < 0 || a.encoder_tokens < a.grid_offset + a.grid_rows * a.grid_cols)
    throw ShapeError(fmt::format("attention map: {} encoder tokens cannot hold a {} x {} grid from token {}",
                                 a.encoder_tokens, a.grid_rows, a.grid_cols, a.grid_offset));
  const auto want = static_cast<std::size_t>(a.steps * a.layers * a.heads * a.encoder_tokens);
  if (a.weights.size() != want)
    throw ShapeError(fmt::format("attention map: expected {} x {} x {} x {} = {} weights, got {}", a.steps, a.layers,
                                 a.heads, a.encoder_tokens, want, a.weights.size()));
}

// acc += w * (head selection of `layer` at `step`), over all encoder tokens.
void add_layer(const CrossAttention& a, std::int64_t step, std::int64_t layer, const std::optional<int>& head,
               double w, std::vector<double>& acc) {
  if (head) {
    const auto p = a.at(step, layer, *head);
    for (std::size_t j = 0; j < p.size(); ++j) acc[j] += w * p[j];
    return;
  }
  const double wh = w / static_cast<double>(a.heads);
  for (std::int64_t h = 0; h < a.heads; ++h) {
    const auto p = a.at(step, layer, h);
    for (std::size_t j = 0; j < p.size(); ++j) acc[j] += wh * p[j];
  }
}

// The grid cells of per-token sums `acc` (cells from token `first` on), normalised to sum 1.
AttentionMap patches_of(const std::vector<double>& acc, int rows, int cols, std::int64_t first) {
  AttentionMap m;
  m.rows = rows;
  m.cols = cols;
  m.values.resize(static_cast<std::size_t>(rows) * cols);
  double sum = 0;
  const auto f = static_cast<std::size_t>(first);
  for (std::size_t i = 0; i < m.values.size(); ++i) sum += std::max(0.0, acc[i + f]);
  for (std::size_t i = 0; i < m.values.size(); ++i)
    m.values[i] = sum > 0 ? static_cast<float>(std::max(0.0, acc[i + f]) / sum)
                          : 1.0f / static_cast<float>(m.values.size());
  return m;
}

}  // namespace

AttentionMap token_map(const CrossAttention& a, std::int64_t step, const MapOptions& options) {
  check_attention(a);
  if (step < 0 || step >= a.steps)
    throw InputError(fmt::format("attention map: token {} out of range (the caption has {} tokens)", step, a.steps));
  if (options.layer && (*options.layer < 0 || *options.layer >= a.layers))
    throw InputError(fmt::format("attention map: layer {} out of range (the decoder has {} layers, 0..{})",
                                 *options.layer, a.layers, a.layers - 1));
  if (options.head && (*options.head < 0 || *options.head >= a.heads))
    throw InputError(fmt::format("attention map: head {} out of range (the decoder has {} heads, 0..{})",
                                 *options.head, a.heads, a.heads - 1));
  if (options.rollout && options.layer)
    throw InputError("attention map: rollout combines every layer; it cannot be used with a layer choice");

  std::vector<double> acc(static_cast<std::size_t>(a.encoder_tokens), 0.0);
  if (options.layer) {
    add_layer(a, step, *options.layer, options.head, 1.0, acc);
  } else if (options.rollout) {
    // Layer l (1-based) weighs 2^(l-1) / (2^L - 1); see MapOptions.
    const double total = std::ldexp(1.0, static_cast<int>(a.layers)) - 1.0;
    for (std::int64_t l = 0; l < a.layers; ++l)
      add_layer(a, step, l, options.head, std::ldexp(1.0, static_cast<int>(l)) / total, acc);
  } else {
    for (std::int64_t l = 0; l < a.layers; ++l)
      add_layer(a, step, l, options.head, 1.0 / static_cast<double>(a.layers), acc);
  }
  return patches_of(acc, static_cast<int>(a.grid_rows), static_cast<int>(a.grid_cols), a.grid_offset);
}

std::vector<AttentionMap> token_maps(const CrossAttention& a, const MapOptions& options) {
  std::vector<AttentionMap> maps;
  maps.reserve(static_cast<std::size_t>(std::max<std::int64_t>(a.steps, 0)));
  for (std::int64_t s = 0; s < a.steps; ++s) maps.push_back(token_map(a, s, options));
  if (maps.empty()) check_attention(a);  // throws the "not captured" error
  return maps;
}

AttentionMap mean_map(std::span<const AttentionMap> maps) {
  if (maps.empty()) throw InputError("mean_map: no maps given");
  const int rows = maps[0].rows, cols = maps[0].cols;
  std::vector<double> acc(1 + static_cast<std::size_t>(rows) * cols, 0.0);
  for (const auto& m : maps) {
    if (m.rows != rows || m.cols != cols || m.values.size() != static_cast<std::size_t>(rows) * cols)
      throw ShapeError(fmt::format("mean_map: maps of different grids ({}x{} and {}x{} with {} values)", rows, cols,
                                   m.rows, m.cols, m.values.size()));
    for (std::size_t i = 0; i < m.values.size(); ++i) acc[i + 1] += m.values[i];
  }
  return patches_of(acc, rows, cols, 1);
}

}  // namespace xcaption::viz
