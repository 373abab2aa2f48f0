// Dataset-level evaluation of generated captions on shapes-world scenes: caption-overlap metrics,
// structure scores from scenes::score_caption and the attention pointing game, aggregated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <xcaption/scenes.hpp>

#include "src/eval/metrics.hpp"
#include "src/eval/pointing.hpp"

namespace xcaption::eval {

/// Structure scores over a set, from scenes::CaptionScore:
/// - object precision / recall: matched objects / objects named by the captions, / objects in the
///   scenes, pooled over all objects of the set (micro); F1 = 2PR / (P + R) (0 when P + R = 0).
/// - relation accuracy: over every 2-object scene, the share whose caption names two objects, both
///   matched, with the correct relation (a caption naming one object counts as wrong; stricter than
///   scenes::summarize_scores, which only counts captions that name two objects).
/// - order accuracy: likewise over every 3-object scene (all matched, named left to right).
/// - count accuracy: parsed and names as many objects as the scene has, over all scenes.
/// - parse rate: captions that follow the grammar, over all scenes.
/// - exact match: normalize_caption(caption) equals one of the scene's references.
/// Every rate is 0 when its denominator is 0.
struct StructureSummary {
  std::int64_t images = 0;
  std::int64_t parsed = 0, count_correct = 0, exact = 0;
  std::int64_t caption_objects = 0, scene_objects = 0, matched_objects = 0;
  std::int64_t relation_scenes = 0, relation_correct = 0;
  std::int64_t order_scenes = 0, order_correct = 0;
  double parse_rate = 0, count_accuracy = 0, exact_match = 0;
  double object_precision = 0, object_recall = 0, object_f1 = 0;
  double relation_accuracy = 0, order_accuracy = 0;
};

StructureSummary summarize_structure(const std::vector<scenes::CaptionScore>& scores);

/// Error analysis: how often the scene objects of each kind are named correctly (recall: the
/// object is matched by score_caption's matching), grouped by size word, shape, colour and the
/// canvas aspect of their scene (width / height: "portrait" < 0.9, "square" 0.9-1.1, "landscape"
/// > 1.1, and the 16:9 / 9:16 ends: "wide" >= 1.6, "tall" <= 0.625); per aspect group also the
/// share of scenes whose caption is fully correct.
struct GroupScore {
  std::string group;  // "size", "shape", "color" or "aspect"
  std::string value;  // e.g. "small", "cross", "orange", "wide"
  std::int64_t objects = 0, matched = 0;
  std::int64_t scenes = 0, fully_correct = 0;  // aspect groups only
  double recall() const { return objects ? static_cast<double>(matched) / static_cast<double>(objects) : 0.0; }
};

/// aspect_group(w, h) as described above; throws nothing (w, h > 0).
std::string aspect_group(int width, int height);

/// Groups in a fixed order: sizes, shapes, colours (grammar order), then aspect groups from tall
/// to wide; groups with no object are left out. Throws InputError when the sizes differ.
std::vector<GroupScore> breakdown(const std::vector<scenes::Scene>& scenes,
                                  const std::vector<scenes::CaptionScore>& scores);

/// Everything `xcaption eval` reports.
struct EvalSummary {
  StructureSummary structure;
  BleuScore bleu;
  CiderScore cider;
  PointingTally pointing;
  LayerChoice layer;  // the layer whose pointing score is the headline one
};

/// Scores a set: captions[i] is the generated caption of scenes[i]; the references are
/// scenes[i].captions. `scores` must be score_caption(scenes[i], captions[i]) (passed in because the
/// caller usually needs them per image too). Throws InputError when the sizes differ.
EvalSummary summarize(const std::vector<scenes::Scene>& scenes, const std::vector<std::string>& captions,
                      const std::vector<scenes::CaptionScore>& scores, const PointingTally& pointing,
                      const LayerChoice& layer);

}  // namespace xcaption::eval
