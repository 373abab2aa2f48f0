// Compares attention-map choices (layer, head, rollout) on a shapes-world dataset, to pick the
// defaults of `xcaption attend`. Two kinds of words are scored, for captions that parse:
//   shape words   of caption objects matched to a scene object (scenes::score_caption's matching);
//   colour words  whose colour belongs to exactly one scene object (that object is the target;
//                 this counts even when the model got the shape wrong).
// Each word's map (viz::token_map) is scored two ways:
//   hit    its argmax patch touches the object's box (the patch centre lies in the box grown by
//          half a patch per side: the rule of `xcaption eval`'s pointing game);
//   mass   the share of the map on patches whose centre lies in that grown box.
// Public API only.
//
//   attention_pointing MODEL_DIR DATA_DIR [LIMIT]     (DATA_DIR from `xcaption scenes`)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>
#include <xcaption/viz.hpp>

using namespace xcaption;

namespace {

struct Tally {
  std::int64_t hits = 0;
  double mass = 0;
};

struct Choice {
  std::string name;
  viz::MapOptions options;
  Tally shape, colour;
};

bool is_colour(const std::string& w) {
  for (const auto& c : scenes::colors())
    if (c == w) return true;
  return false;
}

bool is_shape(const std::string& w) {
  for (const auto& s : scenes::shapes())
    if (s == w) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: attention_pointing MODEL_DIR DATA_DIR [LIMIT]\n");
    return 2;
  }
  try {
    Captioner captioner = Captioner::load(argv[1]);
    const std::filesystem::path data = argv[2];
    auto scenes_list = scenes::read_scenes_jsonl(data / "scenes.jsonl");
    if (argc > 3) scenes_list.resize(std::min<std::size_t>(scenes_list.size(), std::strtoul(argv[3], nullptr, 10)));
    const ModelInfo info = captioner.info();

    std::vector<Choice> choices;
    choices.push_back({"mean/mean", {}});
    choices.push_back({"rollout/mean", {.rollout = true}});
    for (int l = 0; l < info.decoder_layers; ++l) choices.push_back({"L" + std::to_string(l) + "/mean", {.layer = l}});
    for (int h = 0; h < info.decoder_heads; ++h) choices.push_back({"mean/H" + std::to_string(h), {.head = h}});
    for (int l = 0; l < info.decoder_layers; ++l)
      for (int h = 0; h < info.decoder_heads; ++h)
        choices.push_back({"L" + std::to_string(l) + "/H" + std::to_string(h), {.layer = l, .head = h}});

    std::int64_t shape_trials = 0, colour_trials = 0;
    CaptionRequest request;
    request.capture_cross_attention = true;
    for (const auto& scene : scenes_list) {
      const RgbImage image = load_image(data / scene.file);
      const CaptionResult r = captioner.caption(image, request);
      const auto score = scenes::score_caption(scene, r.caption);
      if (!score.parsed) continue;
      const auto tokens = viz::token_attentions(captioner, r);
      const double cw = static_cast<double>(scene.width) / r.cross_attention.grid_cols;
      const double ch = static_cast<double>(scene.height) / r.cross_attention.grid_rows;
      // Plays one word against one scene object for every choice.
      auto play = [&](std::size_t step, const scenes::SceneObject& target, bool shape) {
        const auto& box = target.bbox;
        auto inside = [&](int row, int col) {
          const double x = (col + 0.5) * cw, y = (row + 0.5) * ch;
          return x >= box[0] - cw / 2 && x <= box[2] + cw / 2 && y >= box[1] - ch / 2 && y <= box[3] + ch / 2;
        };
        ++(shape ? shape_trials : colour_trials);
        for (auto& c : choices) {
          const auto m = viz::token_map(r.cross_attention, static_cast<std::int64_t>(step), c.options);
          int best = 0;
          double in = 0;
          for (int i = 0; i < m.rows * m.cols; ++i) {
            if (m.values[i] > m.values[best]) best = i;
            if (inside(i / m.cols, i % m.cols)) in += m.values[i];
          }
          Tally& t = shape ? c.shape : c.colour;
          t.hits += inside(best / m.cols, best % m.cols);
          t.mass += in;
        }
      };
      int shape_words = 0;  // the k-th shape word is caption object k
      for (std::size_t s = 0; s < tokens.size(); ++s) {
        const std::string& w = tokens[s].word;
        if (is_shape(w)) {
          const int k = shape_words++;
          if (k < static_cast<int>(score.matching.size()) && score.matching[k] >= 0)
            play(s, scene.objects[static_cast<std::size_t>(score.matching[k])], true);
        } else if (is_colour(w)) {
          const scenes::SceneObject* only = nullptr;
          int n = 0;
          for (const auto& o : scene.objects)
            if (o.color == w) only = &o, ++n;
          if (n == 1) play(s, *only, false);
        }
      }
    }
    auto rate = [](double v, std::int64_t n) { return n ? v / static_cast<double>(n) : 0.0; };
    std::printf("%zu scenes: %lld shape words, %lld colour words\n%-14s %10s %10s %10s %10s\n", scenes_list.size(),
                static_cast<long long>(shape_trials), static_cast<long long>(colour_trials), "layer/head",
                "shape hit", "shape mass", "colour hit", "colour mass");
    for (const auto& c : choices)
      std::printf("%-14s %10.3f %10.3f %10.3f %10.3f\n", c.name.c_str(), rate(c.shape.hits, shape_trials),
                  rate(c.shape.mass, shape_trials), rate(c.colour.hits, colour_trials),
                  rate(c.colour.mass, colour_trials));
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
