// Attention overlays: reduce the cross-attention a caption was generated with to one map per token
// over the image's patch grid, upsample it to the original image, colour it and blend it in, and
// lay out panels with the words under them.
//
// A map is "where the decoder looked while choosing this token": step s of
// CaptionResult::cross_attention is the forward pass that produced token s (for beam search, the
// returned beam's history). The model resizes the whole image to its square input without
// cropping, so patch (r, c) of a rows x cols grid covers the original image's region
// x in [c * W / cols, (c + 1) * W / cols), y in [r * H / rows, (r + 1) * H / rows).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>

namespace xcaption::viz {

// ---- Reducing the captured weights to one map per token ----------------------------------------

/// Which weights make a token's map.
///
/// Every reduction is linear over the full probability vectors (CLS included): the selected
/// layer(s) and head(s) are averaged, then the CLS entry is dropped and the patch entries are
/// rescaled to sum to 1. (A map whose patch entries are all zero becomes uniform.)
///
/// Rollout. Attention rollout (Abnar & Zuidema 2020) follows attention through the residual
/// stream, giving the residual path and the attention equal weight at each layer. Here the decoder
/// position's own path runs through the L decoder layers, and layer l reads the image through its
/// cross-attention map a_l. The decoder's self-attention (the mixing with earlier positions) is
/// not captured, so it is taken as the identity. Walking back from the output, layer L sends half
/// of the flow to the image (a_L) and half down the residual to layer L-1, and so on; the half
/// left after layer 1 reaches the token embedding, which holds no image content. The flow that
/// reaches the image is sum_l 2^-(L-l+1) a_l; renormalised, rollout = sum_l 2^(l-1) a_l / (2^L - 1):
/// for 2 layers (a_1 + 2 a_2) / 3, for 3 layers (a_1 + 2 a_2 + 4 a_3) / 7. Each a_l is the
/// selected head or the head mean of layer l. Later layers therefore count more, which matches
/// where the flow to the output is largest, while the agreement of early layers still shows.
struct MapOptions {
  std::optional<int> layer;  // decoder layer (0-based); unset = mean over layers
  std::optional<int> head;   // head (0-based); unset = mean over heads
  bool rollout = false;      // residual rollout over all layers (see above); excludes `layer`
};

/// One token's attention over the patch grid, row-major, values >= 0 summing to 1.
struct AttentionMap {
  int rows = 0;
  int cols = 0;
  std::vector<float> values;  // (rows, cols)
  float at(int r, int c) const { return values[static_cast<std::size_t>(r) * cols + c]; }
};

/// The map of generated token `step` (0-based index into CaptionResult::token_ids).
/// Throws InputError when the attention is empty (not captured), when `step`, `layer` or `head`
/// is out of range, or when `rollout` is combined with `layer`; ShapeError when encoder_tokens
/// cannot hold the grid from grid_offset on or the weights do not have the advertised size.
AttentionMap token_map(const CrossAttention& attention, std::int64_t step, const MapOptions& options = {});

/// token_map for every step.
std::vector<AttentionMap> token_maps(const CrossAttention& attention, const MapOptions& options = {});

/// The mean of several maps of one grid size, renormalised to sum 1.
/// Throws InputError for an empty list, ShapeError for maps of different grids.
AttentionMap mean_map(std::span<const AttentionMap> maps);

// ---- From a map to pixels ----------------------------------------------------------------------

/// The map upsampled to width x height as heat in [0, 1]: separable cubic interpolation
/// (Catmull-Rom) between patch centres, the centre of patch (r, c) sitting at
/// ((c + 0.5) * width / cols, (r + 0.5) * height / rows). Beyond the outer centres the grid is
/// mirrored (reflect-101), so a patch on the border peaks at its centre like an inner one instead of
/// smearing (and ringing) towards the edge. Negative overshoot is clamped to 0.
/// The values are then divided by the top of the colour scale, max(peak, flat_floor / (rows * cols)):
/// with flat_floor = 0 the heat is relative to the map's own peak (1 there); with flat_floor = k a map
/// whose peak is below k times the uniform weight 1 / (rows * cols) stays below 1 everywhere, so
/// attention spread evenly over the image (as for function words) shows as dim, not as hot all over.
/// Returns width * height floats, row-major. Throws InputError for a size < 1, an empty map or a
/// negative flat_floor.
std::vector<float> upsample_map(const AttentionMap& map, int width, int height, float flat_floor = 0.0f);

enum class Colormap {
  Inferno,  // perceptually uniform, black -> purple -> orange -> pale yellow (default)
  Viridis,  // perceptually uniform, purple -> teal -> yellow
  Turbo,    // rainbow-like, blue -> green -> red
  Jet,      // classic rainbow (not perceptually uniform)
};

/// "inferno", "viridis", "turbo", "jet" (InputError otherwise).
Colormap parse_colormap(std::string_view name);

/// The colour of t in [0, 1] (clamped), as R, G, B.
std::array<std::uint8_t, 3> colormap_rgb(Colormap colormap, float t);

struct OverlayOptions {
  Colormap colormap = Colormap::Inferno;
  /// Weight of the heat colour: out = (1 - alpha) * image + alpha * colour(heat). 0.55 keeps the
  /// image readable while the peak stands out; with inferno the unattended areas turn dark.
  float alpha = 0.55f;
  /// upsample_map's flat_floor: the colour scale tops out at the map's peak or at 4 times the
  /// uniform weight, whichever is larger. On the bundled model, words that look at one object peak
  /// at 8-25 times the uniform weight, words that look nowhere in particular at 1-1.5 times.
  float flat_floor = 4.0f;
};

/// The map blended over the image at the image's own resolution and aspect.
/// Throws InputError for an empty image, alpha outside [0, 1], a negative flat_floor or an empty map.
RgbImage overlay(const RgbImage& image, const AttentionMap& map, const OverlayOptions& options = {});

// ---- Token text --------------------------------------------------------------------------------

/// The bytes a byte-level BPE vocabulary entry stands for (GPT-2's byte-to-unicode alphabet
/// reversed: "Ġcat" -> " cat", "Ċ" -> "\n"). Characters outside the alphabet are kept as they are.
/// The result may be invalid UTF-8 (a token can hold part of a multi-byte character).
std::string byte_level_token_bytes(std::string_view token);

/// ASCII text that OpenCV's Hershey fonts can draw, from UTF-8 (or broken UTF-8):
/// - printable ASCII is kept, except '\' which becomes "\\";
/// - Latin letters with diacritics and the ligature-like letters of U+00C0-U+017F are
///   transliterated to their base letters ("é" -> "e", "ß" -> "ss", "Æ" -> "AE", "ł" -> "l");
///   a few punctuation marks too (no-break space -> " ", curly quotes -> ' and ", en and em dash
///   -> "-", ellipsis -> "...");
/// - any other code point, control characters included, becomes \u{XXXX} (upper-case hex, at
///   least 4 digits), so it is visible and recoverable;
/// - a byte that is not part of valid UTF-8 becomes \x{XX}.
std::string hershey_text(std::string_view utf8);

/// How a generated token is labelled: the word it spells, UTF-8 (possibly broken), trimmed of
/// surrounding white space. Byte-level BPE tokens are decoded with byte_level_token_bytes (the
/// 'Ġ' space marker goes away); a WordPiece continuation piece loses its `continuing_prefix`
/// ("##graph" -> "graph" for BERT's "##"); other vocabularies' tokens are taken as written.
std::string token_word(std::string_view token, bool byte_level, std::string_view continuing_prefix = {});

/// Everything an overlay needs about one generated token.
struct TokenAttention {
  std::int64_t id = 0;
  std::string token;    // vocabulary string, e.g. "Ġcat"
  std::string word;     // token_word(token), e.g. "cat"
  bool special = false; // a special token (end of text): dropped from the caption text
  AttentionMap map;
};

/// The tokens of `result` with their maps. `result` must come from `captioner` with
/// capture_cross_attention set (InputError otherwise). Special tokens are those that
/// Captioner::decode_tokens drops with skip_special_tokens; byte-level decoding is used when
/// the model's tokenizer is BPE.
std::vector<TokenAttention> token_attentions(const Captioner& captioner, const CaptionResult& result,
                                             const MapOptions& options = {});

/// True for a word that carries content in an overlay of "main words": not special, contains a
/// letter or digit, and is not one of a short list of English function words (a, an, the, of, to,
/// and, or, in, on, at, with, by, for, from, is, are, was, were, be, it, its, this, that, there,
/// some, his, her, their, as). Case-insensitive.
bool is_content_word(const TokenAttention& token);

/// The mean map of the content words (is_content_word); when there are none, of all non-special
/// tokens; when there are none of those either, of all tokens. Throws InputError for an empty list.
AttentionMap main_words_map(std::span<const TokenAttention> tokens);

// ---- Drawing -----------------------------------------------------------------------------------

/// One image of a panel grid with the text printed under it (UTF-8; drawn through hershey_text).
struct Panel {
  RgbImage image;
  std::string label;
};

struct PanelGridOptions {
  /// Panels per row; 0 = min(panel count, 5).
  int columns = 0;
  /// Each panel is scaled (aspect kept) so that its longer side has this many pixels, small
  /// images enlarged, large ones reduced. 0 = keep the first image's size.
  int max_panel_side = 320;
  /// Text drawn above the grid (wrapped to the grid width), e.g. the caption. Empty = none.
  std::string title;
};

/// Panels in rows on a white background, each with its label centred under it (shrunk to fit).
/// All panels are drawn at the size of the first one. Throws InputError for no panels or an
/// empty image.
RgbImage panel_grid(std::span<const Panel> panels, const PanelGridOptions& options = {});

/// The image scaled (aspect kept) so that its longer side is `max_side` pixels: area averaging
/// when reducing, bicubic when enlarging. Use it to overlay at display size when the original is
/// much larger than a panel (the result looks the same and costs far less).
/// Throws InputError for an empty image or max_side < 1.
RgbImage fit_image(const RgbImage& image, int max_side);

/// Draws `text` (UTF-8, through hershey_text) on a dark translucent band along the bottom of the
/// image, wrapped to at most `max_lines` lines, in place. Font size follows the image height.
void draw_caption_band(RgbImage& image, std::string_view text, int max_lines = 2);

/// A task's shapes (TaskResult::shapes: boxes, quadrilaterals, polygons, in pixels of `image`)
/// drawn on a copy of `image`, each outline in its own colour with its label (through
/// hershey_text) above it. Line width and font size follow the image size.
RgbImage draw_task_shapes(const RgbImage& image, const TaskResult& result);

/// The image as PNG file bytes (zlib level 6). Throws InputError for an empty image.
std::string encode_png(const RgbImage& image);

/// Encodes the image as PNG and writes it atomically (temporary file in the same folder, then
/// rename): on failure no file and no temporary is left. Throws FormatError naming the path.
void write_png(const std::filesystem::path& path, const RgbImage& image);

/// Writes `bytes` to `path` atomically, as write_png does. Throws FormatError naming the path.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

}  // namespace xcaption::viz
