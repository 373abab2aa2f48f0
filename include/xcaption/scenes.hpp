// The "shapes world": a deterministic, seeded renderer of simple scenes (1 to 3 coloured shapes on a
// neutral background) with captions from a small grammar, a parser for that grammar and the scoring
// used to evaluate generated captions. It produces the training and evaluation data of the shipped
// model (models/shapes-small); the grammar is documented in models/shapes-small/README-grammar.md.
//
// This header is OpenCV-free; src/scenes/render.hpp offers the same renderer with cv::Mat output.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption::scenes {

/// One drawn object. `bbox` is {x0, y0, x1, y1} in pixels, x1/y1 exclusive: every pixel whose centre
/// lies within 3 px of the shape's geometric extent (clipped to the canvas), so it contains every
/// pixel the antialiased fill touches and is at most ~3 px larger than the visible shape per side.
/// `center` is the centre of the geometric extent in pixel coordinates (pixel i covers
/// [i - 0.5, i + 0.5]), a multiple of 1/32; relations and left-to-right order are decided from it.
/// `size` is defined in the squashed square image the model sees: the larger of (extent width /
/// canvas width) and (extent height / canvas height) is 0.15-0.20 for "small", 0.30-0.38 for "large".
struct SceneObject {
  std::string shape;  // one of shapes()
  std::string color;  // one of colors()
  std::string size;   // one of sizes(): "small" or "large"
  std::array<int, 4> bbox{};
  std::array<double, 2> center{};
};

/// A scene description: the image file name (relative to the JSONL), canvas size, the objects
/// (in generation order, not caption order) and every valid reference caption, canonical first.
struct Scene {
  std::string file;
  int width = 0;
  int height = 0;
  std::vector<SceneObject> objects;
  std::vector<std::string> captions;
};

/// Renderer parameterisations, all with the same grammar and the same size words (documented in
/// models/shapes-small/README-grammar.md, "Styles"):
/// - Train: the distribution the shipped model was trained on (sizes 15-20% / 30-38%, canvases
///   up to 5:4, tilts within 20 degrees). Unchanged: the same seed gives the same scenes as before.
/// - Wide: the wider training world for the next model: sizes 9-22% / 28-48%, canvases 96-400 px
///   from 9:16 to 16:9, tilts within 25 degrees, stronger shade jitter, colours pulled 0-35%
///   towards the background grey (per scene), backgrounds 85-190, noise up to 10, Gaussian blur
///   (3 or 5 px kernel) on 30% of scenes, JPEG quality 40-90.
/// - Unseen: an evaluation style no model is trained on: sizes 11-21% / 29-44% drawn from other
///   ranges, canvases 9:16 to 16:9, tilts within 25 degrees, softer shades (colours pulled 25%
///   towards the background grey), backgrounds 90-190, noise up to 9, blur on half the scenes.
enum class Style { Train, Wide, Unseen };

/// "train", "wide", "unseen"; throws InputError naming the valid values otherwise.
Style parse_style(std::string_view name);
std::string_view style_name(Style style);

struct RenderOptions {
  Style style = Style::Train;
  std::uint64_t seed = 1;
  std::int64_t count = 100;        // number of scenes render_scenes writes (>= 0)
  std::int64_t start_index = 0;    // first scene index (>= 0); scene i depends only on (seed, i)
  int min_objects = 1;             // 1 <= min_objects <= max_objects <= 3
  int max_objects = 3;
  double jpeg_probability = 0.2;   // chance that a scene goes through an in-memory JPEG round trip
};

/// Interleaved 8-bit B, G, R pixels, row-major, no padding (bgr.size() == width * height * 3).
struct SceneImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> bgr;
};

/// Builds scene `index` for `options.seed` (count and start_index are ignored). The same (seed,
/// index, min/max objects, jpeg_probability) gives the same Scene on every machine; the pixels are
/// the same for the same OpenCV/libjpeg build. When `image_out` is null no pixels are rendered (the
/// description is still exact, so this is a cheap way to enumerate scenes).
/// Throws InputError for invalid options or a negative index.
Scene make_scene(const RenderOptions& options, std::int64_t index, SceneImage* image_out = nullptr);

/// "scene_000042.png" (at least six digits).
std::string scene_file_name(std::int64_t index);

/// Renders scenes start_index .. start_index + count - 1 into `out_dir` (created if missing): one
/// PNG per scene named scene_file_name(index) and `scenes.jsonl` with one JSON object per line
/// {file, width, height, objects: [{shape, color, size, bbox, center}], captions}. Every file is
/// written to a temporary name and renamed, so a crash never leaves a truncated JSONL. `progress`
/// (may be empty) is called on the calling thread with (done, total). Uses OpenMP threads.
/// Throws InputError for invalid options, FormatError naming the path when a file cannot be written.
void render_scenes(const RenderOptions& options, const std::filesystem::path& out_dir,
                   const std::function<void(std::int64_t, std::int64_t)>& progress = {});

/// Reads a scenes.jsonl written by render_scenes. Empty lines are skipped. Throws FormatError naming
/// the file and 1-based line for unreadable files, bad JSON, missing keys, wrong types or words
/// outside the grammar.
std::vector<Scene> read_scenes_jsonl(const std::filesystem::path& jsonl);

/// Serialises one scene as the single-line JSON object used in scenes.jsonl (no newline).
std::string scene_to_json(const Scene& scene);

// ---- Grammar --------------------------------------------------------------------------------

const std::vector<std::string>& shapes();   // circle square triangle star diamond cross
const std::vector<std::string>& colors();   // red green blue yellow purple orange white black
const std::vector<std::string>& sizes();    // small large

/// Relation names as ParsedCaption::relation reports them.
inline constexpr std::string_view kLeftOf = "left of";
inline constexpr std::string_view kRightOf = "right of";
inline constexpr std::string_view kAbove = "above";
inline constexpr std::string_view kBelow = "below";

/// Relation of `a` to `b` from their centres: if |dx| > |dy| then "left of" (a.x < b.x) or
/// "right of", else "above" (a.y < b.y, image y grows downwards) or "below".
std::string relation_between(const SceneObject& a, const SceneObject& b);

/// All reference captions for a set of objects, canonical first:
/// - 1 object: "a large red circle".
/// - 2 objects: "<left or top object> to the left of|above <other>" then the inverse order with the
///   inverse relation ("... to the right of|below ..."); both objects always carry a size word.
/// - 3 objects: one caption naming them left to right by centre x, "a red circle, a blue square and
///   a green triangle"; size words appear on all three objects when their sizes are not all equal
///   and on none when all three share one size.
/// The article is "an" before a word starting with a vowel (only "orange"), else "a".
std::vector<std::string> captions_for(const std::vector<SceneObject>& objects);

/// Every word the grammar emits, plus "," as its own token, in a fixed order (for a WordLevel
/// vocabulary): a an small large <colors> <shapes> to the left right of above below and ,
std::vector<std::string> vocabulary();

struct ParsedObject {
  std::string shape;
  std::string color;
  std::string size;  // empty when the caption gives none
};

struct ParsedCaption {
  bool ok = false;                   // the text follows the grammar
  std::vector<ParsedObject> objects; // in caption order (1 to 3)
  std::string relation;              // 2 objects: kLeftOf/kRightOf/kAbove/kBelow; else empty
};

/// Parses a caption. Tolerant of ASCII case, surrounding/repeated whitespace, a space before the
/// comma ("circle , a" as a WordLevel decoder joins tokens), an optional final period and a/an
/// used either way; anything else outside the grammar gives ok = false (and no objects).
ParsedCaption parse_caption(std::string_view caption);

/// Lower-case, single-spaced form with "," attached to the previous word and no final period; the
/// form of the reference captions. Returns the trimmed lower-cased input when it does not parse.
std::string normalize_caption(std::string_view caption);

// ---- Scoring --------------------------------------------------------------------------------

/// How a generated caption fits a scene.
/// A caption object *matches* a scene object when shape and color are equal and, if the caption
/// gives a size, the size is equal too (an omitted size is not checked). Objects are matched
/// one-to-one with a maximum matching; among maximum matchings the one that makes the relation
/// (or order) correct is preferred.
struct CaptionScore {
  bool parsed = false;           // caption follows the grammar
  int scene_objects = 0;         // objects in the scene
  int caption_objects = 0;       // objects the caption names (0 when not parsed)
  bool count_correct = false;    // parsed and caption_objects == scene_objects
  int matched_objects = 0;       // size of the maximum one-to-one matching
  // The chosen matching: for caption object i (caption order), the index in scene.objects of the
  // scene object it is matched to, or -1. Size caption_objects (empty when not parsed).
  std::vector<int> matching;
  int sizes_given = 0;           // matched caption objects that carried a size word
  bool all_matched = false;      // count_correct and every object matched
  // Scene and caption both have 2 objects: true iff both are matched and the caption's relation
  // (subject = first named) equals relation_between(subject, object) of the matched scene objects.
  std::optional<bool> relation_correct;
  // Scene and caption both have 3 objects: true iff all are matched and named in increasing
  // centre x.
  std::optional<bool> order_correct;
  bool exact_match = false;      // normalize_caption(caption) equals one of scene.captions
  bool fully_correct = false;    // all_matched and (relation/order correct where they apply)
};

CaptionScore score_caption(const Scene& scene, std::string_view caption);

/// Dataset-level rates (0..1) over many scores; object precision/recall are pooled over objects.
struct ScoreSummary {
  std::int64_t count = 0;
  double parse_rate = 0;
  double count_accuracy = 0;
  double object_precision = 0;   // sum matched / sum caption objects
  double object_recall = 0;      // sum matched / sum scene objects
  double relation_accuracy = 0;  // over scores with a relation_correct value
  std::int64_t relation_count = 0;
  double order_accuracy = 0;     // over scores with an order_correct value
  std::int64_t order_count = 0;
  double exact_match_rate = 0;
  double fully_correct_rate = 0;
};

ScoreSummary summarize_scores(const std::vector<CaptionScore>& scores);

}  // namespace xcaption::scenes
