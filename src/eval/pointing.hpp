// The attention pointing game: does the decoder's cross-attention, at the step that generates a
// shape word, peak on the object that the word names?
//
// For a generated token that starts a shape word (circle, square, ...) of a caption that parses,
// where the caption object of that word is matched to a scene object (scenes::score_caption's
// matching), take that step's cross-attention over the patches (CLS excluded), averaged over heads,
// for one decoder layer or averaged over all layers; take its argmax cell (r, c) (ties: the first in
// row-major order); map the cell centre to original-image coordinates
//   x = (c + 0.5) * width / grid_cols,  y = (r + 0.5) * height / grid_rows
// (the image processor resizes the whole image, no crop; pixel i spans [i, i + 1)); it is a hit when
// that point lies in the object's box [x0, x1] x [y0, y1] grown by half a cell on every side, i.e.
// when the argmax cell touches the box. The half-cell tolerance absorbs the quantisation of the
// patch grid: an object smaller than a cell, or straddling two cells, can still be hit.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <xcaption/captioner.hpp>
#include <xcaption/scenes.hpp>

namespace xcaption::eval {

/// Which decoder layer's attention to use: an index, or the mean over layers (nullopt).
using LayerChoice = std::optional<std::int64_t>;

/// "mean" or a non-negative integer. Throws InputError for anything else.
LayerChoice parse_layer_choice(std::string_view text);
std::string layer_choice_name(const LayerChoice& layer);

struct Cell {
  std::int64_t row = 0, col = 0;
  bool operator==(const Cell&) const = default;
};

/// The patch with the largest cross-attention at `step`, averaged over heads and, for a nullopt
/// layer, over layers; CLS (encoder token 0) is excluded. Throws ShapeError when the attention's
/// encoder_tokens is not 1 + grid_rows * grid_cols or its weights have the wrong size, InputError
/// when step or layer is out of range.
Cell attention_argmax(const CrossAttention& attention, std::int64_t step, const LayerChoice& layer);

/// Centre of a grid cell in original-image pixel coordinates (pixel i spans [i, i + 1)).
std::array<double, 2> cell_centre(const Cell& cell, std::int64_t grid_rows, std::int64_t grid_cols, int width,
                                  int height);

/// True when (x, y) lies in [x0 - tol_x, x1 + tol_x] x [y0 - tol_y, y1 + tol_y], bbox = {x0, y0, x1, y1}
/// with x1/y1 exclusive pixel indices (so the box spans [x0, x1) in continuous coordinates).
bool point_in_box(double x, double y, const std::array<int, 4>& bbox, double tol_x, double tol_y);

struct PointResult {
  Cell cell;
  double x = 0, y = 0;  // cell centre in image pixels
  bool hit = false;
};

/// One pointing trial: argmax cell for (step, layer), its centre, and whether it hits `bbox` with the
/// half-cell tolerance. width/height: the original image size.
PointResult point_at(const CrossAttention& attention, std::int64_t step, const LayerChoice& layer, int width,
                     int height, const std::array<int, 4>& bbox);

// ---- Words of a generated caption and the steps that produced them ------------------------------

/// A word of a caption (tokenize()'s rules: lower-cased, "," a word of its own, "." dropped) with its
/// byte range in the caption and the generation step that produced its first byte (-1 if unknown).
struct WordSpan {
  std::string word;
  std::size_t begin = 0, end = 0;
  std::int64_t step = -1;
};

/// Splits `caption` into words and finds each word's step. prefix_texts[s] is the decoding of the
/// first s + 1 generated tokens (with the same decoder settings as `caption`, which is the decoding of
/// all of them). The step of a word starting at byte b is the first s whose prefix text agrees with
/// the caption on bytes [0, b]: the token that emitted the word's first character. Robust to
/// tokenisers that merge or re-space text on decoding (the prefix texts need not be prefixes of
/// each other).
std::vector<WordSpan> align_words(std::string_view caption, const std::vector<std::string>& prefix_texts);

/// A shape word of a generated caption that refers to a scene object.
struct PointingTarget {
  std::string word;
  std::int64_t step = -1;
  int caption_object = -1;  // index in the parsed caption
  int scene_object = -1;    // index in scene.objects
};

/// The shape words of `words` paired with scene objects through `score.matching`: the k-th shape word
/// is caption object k (the grammar names exactly one shape per object). Empty when the caption did
/// not parse or its shape words do not line up with score.caption_objects; words whose caption
/// object is unmatched, or whose step is unknown, are left out.
std::vector<PointingTarget> pointing_targets(const std::vector<WordSpan>& words, const scenes::CaptionScore& score);

/// The pointing game over all layers for one target.
struct PointingTrial {
  PointingTarget target;
  std::vector<PointResult> per_layer;  // one per decoder layer
  PointResult mean;                    // attention averaged over layers
  const PointResult& chosen(const LayerChoice& layer) const;
};

PointingTrial play_pointing(const CrossAttention& attention, const scenes::Scene& scene,
                            const PointingTarget& target);

/// Hits over many trials.
struct PointingTally {
  std::int64_t total = 0;
  std::vector<std::int64_t> layer_hits;  // per decoder layer
  std::int64_t mean_hits = 0;            // layer-averaged attention
  void add(const PointingTrial& trial);
  std::int64_t hits(const LayerChoice& layer) const;
  double rate(const LayerChoice& layer) const;  // hits / total, 0 when total is 0
};

}  // namespace xcaption::eval
