// Compares attention-map choices (layer, head, rollout) on a shapes-world dataset, to pick the
// defaults of `xcaption attend`. For every shape word of a caption that parses and names a matched
// object, the word's map (viz::token_map) is scored two ways:
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

struct Choice {
  std::string name;
  viz::MapOptions options;
  std::int64_t hits = 0;
  double mass = 0;
};

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

    std::int64_t trials = 0;
    CaptionRequest request;
    request.capture_cross_attention = true;
    for (const auto& scene : scenes_list) {
      const RgbImage image = load_image(data / scene.file);
      const CaptionResult r = captioner.caption(image, request);
      const auto score = scenes::score_caption(scene, r.caption);
      if (!score.parsed) continue;
      const auto tokens = viz::token_attentions(captioner, r);
      int object = 0;  // the k-th shape word is caption object k
      for (std::size_t s = 0; s < tokens.size(); ++s) {
        if (!is_shape(tokens[s].word)) continue;
        const int k = object++;
        if (k >= static_cast<int>(score.matching.size()) || score.matching[k] < 0) continue;
        const auto& box = scene.objects[static_cast<std::size_t>(score.matching[k])].bbox;
        const double cw = static_cast<double>(scene.width) / r.cross_attention.grid_cols;
        const double ch = static_cast<double>(scene.height) / r.cross_attention.grid_rows;
        auto inside = [&](int row, int col) {
          const double x = (col + 0.5) * cw, y = (row + 0.5) * ch;
          return x >= box[0] - cw / 2 && x <= box[2] + cw / 2 && y >= box[1] - ch / 2 && y <= box[3] + ch / 2;
        };
        ++trials;
        for (auto& c : choices) {
          const auto m = viz::token_map(r.cross_attention, static_cast<std::int64_t>(s), c.options);
          int best = 0;
          double in = 0;
          for (int i = 0; i < m.rows * m.cols; ++i) {
            if (m.values[i] > m.values[best]) best = i;
            if (inside(i / m.cols, i % m.cols)) in += m.values[i];
          }
          c.hits += inside(best / m.cols, best % m.cols);
          c.mass += in;
        }
      }
    }
    std::printf("%lld shape words in %zu scenes\n%-14s %8s %8s\n", static_cast<long long>(trials),
                scenes_list.size(), "layer/head", "hit", "mass");
    for (const auto& c : choices)
      std::printf("%-14s %8.3f %8.3f\n", c.name.c_str(), trials ? static_cast<double>(c.hits) / trials : 0.0,
                  trials ? c.mass / trials : 0.0);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
