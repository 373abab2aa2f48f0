#include "src/eval/summary.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::eval {

namespace {

double rate(std::int64_t num, std::int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace

StructureSummary summarize_structure(const std::vector<scenes::CaptionScore>& scores) {
  StructureSummary s;
  s.images = static_cast<std::int64_t>(scores.size());
  for (const auto& c : scores) {
    s.parsed += c.parsed;
    s.count_correct += c.count_correct;
    s.exact += c.exact_match;
    s.caption_objects += c.caption_objects;
    s.scene_objects += c.scene_objects;
    s.matched_objects += c.matched_objects;
    if (c.scene_objects == 2) {
      ++s.relation_scenes;
      s.relation_correct += c.relation_correct.value_or(false);
    }
    if (c.scene_objects == 3) {
      ++s.order_scenes;
      s.order_correct += c.order_correct.value_or(false);
    }
  }
  s.parse_rate = rate(s.parsed, s.images);
  s.count_accuracy = rate(s.count_correct, s.images);
  s.exact_match = rate(s.exact, s.images);
  s.object_precision = rate(s.matched_objects, s.caption_objects);
  s.object_recall = rate(s.matched_objects, s.scene_objects);
  const double pr = s.object_precision + s.object_recall;
  s.object_f1 = pr > 0 ? 2 * s.object_precision * s.object_recall / pr : 0.0;
  s.relation_accuracy = rate(s.relation_correct, s.relation_scenes);
  s.order_accuracy = rate(s.order_correct, s.order_scenes);
  return s;
}

EvalSummary summarize(const std::vector<scenes::Scene>& scenes, const std::vector<std::string>& captions,
                      const std::vector<scenes::CaptionScore>& scores, const PointingTally& pointing,
                      const LayerChoice& layer) {
  if (scenes.size() != captions.size() || scenes.size() != scores.size())
    throw InputError(fmt::format("evaluation: {} scenes, {} captions and {} scores; expected equal counts",
                                 scenes.size(), captions.size(), scores.size()));
  EvalSummary s;
  s.structure = summarize_structure(scores);
  std::vector<std::vector<std::string>> references;
  references.reserve(scenes.size());
  for (const auto& scene : scenes) references.push_back(scene.captions);
  s.bleu = corpus_bleu(captions, references);
  s.cider = cider_d(captions, references);
  s.pointing = pointing;
  s.layer = layer;
  return s;
}

std::string aspect_group(int width, int height) {
  // Integer comparisons: w/h >= 1.6 <=> 5w >= 8h, and so on.
  const std::int64_t w = width, h = height;
  if (5 * w >= 8 * h) return "wide";
  if (10 * w > 11 * h) return "landscape";
  if (8 * w <= 5 * h) return "tall";
  if (10 * w < 9 * h) return "portrait";
  return "square";
}

std::vector<GroupScore> breakdown(const std::vector<scenes::Scene>& scene_list,
                                  const std::vector<scenes::CaptionScore>& scores) {
  if (scene_list.size() != scores.size())
    throw InputError(fmt::format("eval: {} scenes but {} scores", scene_list.size(), scores.size()));
  std::vector<GroupScore> groups;
  auto add = [&](const char* group, const std::vector<std::string>& values) {
    for (const auto& v : values) groups.push_back({group, v});
  };
  add("size", scenes::sizes());
  add("shape", scenes::shapes());
  add("color", scenes::colors());
  add("aspect", {"tall", "portrait", "square", "landscape", "wide"});
  auto find = [&](const char* group, const std::string& value) -> GroupScore& {
    for (auto& g : groups)
      if (g.group == group && g.value == value) return g;
    throw InputError(fmt::format("eval: unknown {} '{}'", group, value));
  };
  for (std::size_t i = 0; i < scene_list.size(); ++i) {
    const auto& scene = scene_list[i];
    std::vector<bool> matched(scene.objects.size(), false);
    for (int m : scores[i].matching)
      if (m >= 0 && static_cast<std::size_t>(m) < matched.size()) matched[static_cast<std::size_t>(m)] = true;
    GroupScore& aspect = find("aspect", aspect_group(scene.width, scene.height));
    ++aspect.scenes;
    aspect.fully_correct += scores[i].fully_correct;
    for (std::size_t k = 0; k < scene.objects.size(); ++k) {
      const auto& o = scene.objects[k];
      for (GroupScore* g : {&find("size", o.size), &find("shape", o.shape), &find("color", o.color), &aspect}) {
        ++g->objects;
        g->matched += matched[k];
      }
    }
  }
  std::erase_if(groups, [](const GroupScore& g) { return g.objects == 0; });
  return groups;
}

}  // namespace xcaption::eval
