#include "src/eval/pointing.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/eval/metrics.hpp"

namespace xcaption::eval {

LayerChoice parse_layer_choice(std::string_view text) {
  if (text == "mean") return std::nullopt;
  std::int64_t layer = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), layer);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || layer < 0)
    throw InputError(fmt::format("layer '{}': expected 'mean' or a layer index >= 0", text));
  return layer;
}

std::string layer_choice_name(const LayerChoice& layer) {
  return layer ? std::to_string(*layer) : std::string("mean");
}

namespace {

void check_attention(const CrossAttention& a, std::int64_t step) {
  if (a.grid_rows <= 0 || a.grid_cols <= 0 || a.grid_offset < 0 ||
      a.encoder_tokens < a.grid_offset + a.grid_rows * a.grid_cols)
    throw ShapeError(fmt::format("cross-attention: {} encoder tokens cannot hold a {}x{} patch grid from token {}",
                                 a.encoder_tokens, a.grid_rows, a.grid_cols, a.grid_offset));
  if (a.steps < 0 || a.layers <= 0 || a.heads <= 0 ||
      a.weights.size() != static_cast<std::size_t>(a.steps * a.layers * a.heads * a.encoder_tokens))
    throw ShapeError(fmt::format("cross-attention: {} weights, expected steps {} x layers {} x heads {} x tokens {}",
                                 a.weights.size(), a.steps, a.layers, a.heads, a.encoder_tokens));
  if (step < 0 || step >= a.steps)
    throw InputError(fmt::format("cross-attention: step {} out of range [0, {})", step, a.steps));
}

}  // namespace

Cell attention_argmax(const CrossAttention& a, std::int64_t step, const LayerChoice& layer) {
  check_attention(a, step);
  if (layer && *layer >= a.layers)
    throw InputError(fmt::format("cross-attention: layer {} out of range (the decoder has {} layers)", *layer, a.layers));
  const std::int64_t first = layer ? *layer : 0, last = layer ? *layer + 1 : a.layers;
  const std::int64_t patches = a.grid_rows * a.grid_cols;
  // A sum has the same argmax as the mean.
  std::vector<double> sum(static_cast<std::size_t>(patches), 0.0);
  for (std::int64_t l = first; l < last; ++l)
    for (std::int64_t h = 0; h < a.heads; ++h) {
      const auto w = a.at(step, l, h);
      for (std::int64_t p = 0; p < patches; ++p) sum[p] += w[a.grid_offset + p];
    }
  const auto best = std::max_element(sum.begin(), sum.end()) - sum.begin();  // first maximum
  return {best / a.grid_cols, best % a.grid_cols};
}

std::array<double, 2> cell_centre(const Cell& cell, std::int64_t grid_rows, std::int64_t grid_cols, int width,
                                  int height) {
  return {(static_cast<double>(cell.col) + 0.5) * width / static_cast<double>(grid_cols),
          (static_cast<double>(cell.row) + 0.5) * height / static_cast<double>(grid_rows)};
}

bool point_in_box(double x, double y, const std::array<int, 4>& bbox, double tol_x, double tol_y) {
  return x >= bbox[0] - tol_x && x <= bbox[2] + tol_x && y >= bbox[1] - tol_y && y <= bbox[3] + tol_y;
}

PointResult point_at(const CrossAttention& a, std::int64_t step, const LayerChoice& layer, int width, int height,
                     const std::array<int, 4>& bbox) {
  PointResult r;
  r.cell = attention_argmax(a, step, layer);
  const auto centre = cell_centre(r.cell, a.grid_rows, a.grid_cols, width, height);
  r.x = centre[0];
  r.y = centre[1];
  const double half_cell_x = 0.5 * width / static_cast<double>(a.grid_cols);
  const double half_cell_y = 0.5 * height / static_cast<double>(a.grid_rows);
  r.hit = point_in_box(r.x, r.y, bbox, half_cell_x, half_cell_y);
  return r;
}

std::vector<WordSpan> align_words(std::string_view caption, const std::vector<std::string>& prefix_texts) {
  std::vector<WordSpan> words;
  // Same splitting as tokenize(), keeping byte offsets.
  auto is_space = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; };
  std::size_t i = 0;
  while (i < caption.size()) {
    const char ch = caption[i];
    if (is_space(ch) || ch == '.') {
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    if (ch != ',')
      while (j < caption.size() && !is_space(caption[j]) && caption[j] != ',' && caption[j] != '.') ++j;
    WordSpan w;
    w.begin = i;
    w.end = j;
    w.word = tokenize(caption.substr(i, j - i)).front();
    words.push_back(std::move(w));
    i = j;
  }
  for (auto& w : words) {
    for (std::size_t s = 0; s < prefix_texts.size(); ++s) {
      const std::string& p = prefix_texts[s];
      if (p.size() > w.begin && std::string_view(p).substr(0, w.begin + 1) == caption.substr(0, w.begin + 1)) {
        w.step = static_cast<std::int64_t>(s);
        break;
      }
    }
  }
  return words;
}

std::vector<PointingTarget> pointing_targets(const std::vector<WordSpan>& words, const scenes::CaptionScore& score) {
  std::vector<PointingTarget> targets;
  if (!score.parsed) return targets;
  const auto& shapes = scenes::shapes();
  std::vector<const WordSpan*> shape_words;
  for (const auto& w : words)
    if (std::find(shapes.begin(), shapes.end(), w.word) != shapes.end()) shape_words.push_back(&w);
  if (static_cast<int>(shape_words.size()) != score.caption_objects ||
      score.matching.size() != shape_words.size())
    return targets;
  for (std::size_t k = 0; k < shape_words.size(); ++k) {
    if (score.matching[k] < 0 || shape_words[k]->step < 0) continue;
    PointingTarget t;
    t.word = shape_words[k]->word;
    t.step = shape_words[k]->step;
    t.caption_object = static_cast<int>(k);
    t.scene_object = score.matching[k];
    targets.push_back(std::move(t));
  }
  return targets;
}

const PointResult& PointingTrial::chosen(const LayerChoice& layer) const {
  if (!layer) return mean;
  if (*layer < 0 || *layer >= static_cast<std::int64_t>(per_layer.size()))
    throw InputError(fmt::format("layer {} out of range (the decoder has {} layers)", *layer, per_layer.size()));
  return per_layer[static_cast<std::size_t>(*layer)];
}

PointingTrial play_pointing(const CrossAttention& attention, const scenes::Scene& scene, const PointingTarget& target) {
  if (target.scene_object < 0 || target.scene_object >= static_cast<int>(scene.objects.size()))
    throw InputError(fmt::format("{}: pointing target refers to object {} of {}", scene.file, target.scene_object,
                                 scene.objects.size()));
  const auto& bbox = scene.objects[static_cast<std::size_t>(target.scene_object)].bbox;
  PointingTrial trial;
  trial.target = target;
  for (std::int64_t l = 0; l < attention.layers; ++l)
    trial.per_layer.push_back(point_at(attention, target.step, l, scene.width, scene.height, bbox));
  trial.mean = point_at(attention, target.step, std::nullopt, scene.width, scene.height, bbox);
  return trial;
}

void PointingTally::add(const PointingTrial& trial) {
  ++total;
  if (layer_hits.size() < trial.per_layer.size()) layer_hits.resize(trial.per_layer.size(), 0);
  for (std::size_t l = 0; l < trial.per_layer.size(); ++l) layer_hits[l] += trial.per_layer[l].hit;
  mean_hits += trial.mean.hit;
}

std::int64_t PointingTally::hits(const LayerChoice& layer) const {
  if (!layer) return mean_hits;
  if (*layer < 0 || *layer >= static_cast<std::int64_t>(layer_hits.size()))
    throw InputError(fmt::format("layer {} out of range (the decoder has {} layers)", *layer, layer_hits.size()));
  return layer_hits[static_cast<std::size_t>(*layer)];
}

double PointingTally::rate(const LayerChoice& layer) const {
  return total == 0 ? 0.0 : static_cast<double>(hits(layer)) / static_cast<double>(total);
}

}  // namespace xcaption::eval
