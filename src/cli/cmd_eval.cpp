// xcaption eval: captions a shapes-world dataset and scores the captions (exact match, BLEU-4,
// CIDEr-D, object P/R/F1, relation/order/count accuracy, parse rate, attention pointing game).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/cli/cli.hpp"
#include "src/eval/metrics.hpp"
#include "src/eval/pointing.hpp"
#include "src/eval/summary.hpp"

namespace xcaption::cli {

namespace {

using Json = nlohmann::ordered_json;

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw FormatError(fmt::format("eval: cannot open '{}' for writing", tmp.string()));
    out << text;
    out.close();
    if (!out) throw FormatError(fmt::format("eval: writing '{}' failed (disk full?)", tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw FormatError(fmt::format("eval: cannot rename '{}' to '{}': {}", tmp.string(), path.string(), ec.message()));
}

std::string dump(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// What eval keeps of one image.
struct ImageRecord {
  std::string caption;
  scenes::CaptionScore score;
  scenes::ParsedCaption parsed;
  std::vector<eval::PointingTrial> trials;
};

Json cell_json(const eval::PointResult& p) {
  Json j;
  j["cell"] = {p.cell.row, p.cell.col};
  j["point"] = {p.x, p.y};
  j["hit"] = p.hit;
  return j;
}

Json details_json(const scenes::Scene& scene, const ImageRecord& r, double cider, const eval::LayerChoice& layer) {
  Json j;
  j["file"] = scene.file;
  j["caption"] = r.caption;
  j["references"] = scene.captions;
  Json parse;
  parse["ok"] = r.parsed.ok;
  Json objects = Json::array();
  for (const auto& o : r.parsed.objects) objects.push_back({{"shape", o.shape}, {"color", o.color}, {"size", o.size}});
  parse["objects"] = std::move(objects);
  parse["relation"] = r.parsed.relation;
  j["parse"] = std::move(parse);
  Json score;
  score["exact_match"] = r.score.exact_match;
  score["scene_objects"] = r.score.scene_objects;
  score["caption_objects"] = r.score.caption_objects;
  score["matched_objects"] = r.score.matched_objects;
  score["matching"] = r.score.matching;
  score["count_correct"] = r.score.count_correct;
  score["relation_correct"] = r.score.relation_correct ? Json(*r.score.relation_correct) : Json(nullptr);
  score["order_correct"] = r.score.order_correct ? Json(*r.score.order_correct) : Json(nullptr);
  score["fully_correct"] = r.score.fully_correct;
  score["cider_d"] = cider;
  j["score"] = std::move(score);
  Json pointing = Json::array();
  for (const auto& t : r.trials) {
    Json p = cell_json(t.chosen(layer));
    p["word"] = t.target.word;
    p["step"] = t.target.step;
    p["caption_object"] = t.target.caption_object;
    p["scene_object"] = t.target.scene_object;
    p["bbox"] = scene.objects[static_cast<std::size_t>(t.target.scene_object)].bbox;
    Json layer_hits = Json::array();
    for (const auto& l : t.per_layer) layer_hits.push_back(l.hit);
    p["layer_hits"] = std::move(layer_hits);
    p["mean_hit"] = t.mean.hit;
    pointing.push_back(std::move(p));
  }
  j["pointing"] = std::move(pointing);
  return j;
}

struct Threshold {
  const char* option;
  const char* metric;
  double value;
};

}  // namespace

int cmd_eval(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("data,d", po::value<std::string>()->value_name("DIR"), "dataset folder with scenes.jsonl and its images (required)")
      ("style", po::value<std::string>()->value_name("train|wide|unseen"),
       "instead of --data: render --count scenes of --seed in this renderer style into a temporary folder "
       "(removed afterwards) and evaluate those")
      ("seed", po::value<std::uint64_t>()->default_value(2026)->value_name("S"), "with --style: dataset seed")
      ("count", po::value<std::int64_t>()->default_value(200)->value_name("N"), "with --style: number of scenes")
      ("limit", po::value<std::int64_t>()->value_name("N"), "evaluate only the first N scenes")
      ("layer", po::value<std::string>()->default_value("last")->value_name("L|last|mean"),
       "decoder layer whose cross-attention plays the pointing game (0-based or 'last'), or 'mean' over layers")
      ("json", po::value<std::string>()->value_name("FILE"), "write the metrics as JSON (atomically)")
      ("details", po::value<std::string>()->value_name("FILE"), "write one JSON line per image (caption, parse, pointing)")
      ("min-object-f1", po::value<double>()->value_name("X"), "exit 7 if object F1 < X")
      ("min-relation-accuracy", po::value<double>()->value_name("X"), "exit 7 if relation accuracy < X")
      ("min-pointing", po::value<double>()->value_name("X"), "exit 7 if the pointing-game hit rate (--layer) < X");
  add_model_options(options);
  add_generation_options(options);
  add_image_limit_options(options);
  try {
    const auto vm = parse("eval", argc, argv, options, {});
    const ImageLimits limits = image_limits(vm);
    if (vm.count("help")) {
      print_help(
          "xcaption eval --data DIR [OPTIONS]",
          "Captions every scene of DIR/scenes.jsonl (written by `xcaption scenes`) and prints:\n"
          "  exact match      normalised caption equals one of the scene's reference captions\n"
          "  BLEU-4           corpus BLEU as coco-caption computes it (clipped n-grams pooled over the set,\n"
          "                   brevity penalty against the closest reference length)\n"
          "  CIDEr-D          coco-caption's CIDEr-D (n = 1..4, sigma 6, idf from this set's references, x10)\n"
          "  object P/R/F1    matched objects / named objects, / scene objects, pooled over the set\n"
          "  relation acc.    2-object scenes whose caption names both objects with the right relation\n"
          "  order acc.       3-object scenes whose caption names all objects left to right\n"
          "  count acc.       captions naming as many objects as the scene has\n"
          "  parse rate       captions that follow the shapes grammar\n"
          "  pointing game    shape words whose step's cross-attention (over patches, mean of heads, last\n"
          "                   decoder layer unless --layer says otherwise) peaks in a grid cell that\n"
          "                   touches the named object's box (the cell centre lies in the box grown by\n"
          "                   half a cell per side); only words of captions that parse and name a\n"
          "                   matched object count. Per-layer rates are printed as well.\n"
          "Captions are tokenised for BLEU/CIDEr-D by lower-casing, splitting on spaces, with ',' a token\n"
          "and '.' dropped. Progress goes to stderr when it is a terminal.",
          options,
          "Exit codes: 0 ok; 2 bad command line; 3 unreadable scenes.jsonl, image or model file; 4/5/6 model\n"
          "errors as for `caption`; 7 a --min-* threshold was missed (each miss is printed on stderr,\n"
          "after the report and the --json/--details files are written).\n");
      return kOk;
    }
    if (vm.count("data") == vm.count("style"))
      throw UsageError("eval: give either --data DIR or --style STYLE (see xcaption eval --help)");
    std::filesystem::path data;
    std::string style_label = "data";
    struct Cleanup {
      std::filesystem::path dir;
      ~Cleanup() {
        std::error_code ec;
        if (!dir.empty()) std::filesystem::remove_all(dir, ec);
      }
    } cleanup;
    if (vm.count("style")) {
      scenes::RenderOptions ro;
      try {
        ro.style = scenes::parse_style(vm["style"].as<std::string>());
      } catch (const InputError& e) {
        throw UsageError(fmt::format("eval: --style: {}", e.what()));
      }
      ro.seed = vm["seed"].as<std::uint64_t>();
      ro.count = vm["count"].as<std::int64_t>();
      if (ro.count < 1) throw UsageError("eval: --count must be >= 1");
      style_label = std::string(scenes::style_name(ro.style));
      data = std::filesystem::temp_directory_path() / fmt::format("xcaption-eval-{}-{}", style_label, ::getpid());
      cleanup.dir = data;
      scenes::render_scenes(ro, data);
    } else {
      data = vm["data"].as<std::string>();
    }
    eval::LayerChoice layer;
    const bool last_layer = vm["layer"].as<std::string>() == "last";  // resolved once the model is loaded
    try {
      if (!last_layer) layer = eval::parse_layer_choice(vm["layer"].as<std::string>());
    } catch (const InputError&) {
      throw UsageError(fmt::format("eval: --layer takes a layer index, 'last' or 'mean', got '{}'",
                                   vm["layer"].as<std::string>()));
    }
    CaptionRequest request = caption_request(vm);
    request.capture_cross_attention = true;
    std::optional<std::int64_t> limit;
    if (vm.count("limit")) {
      limit = vm["limit"].as<std::int64_t>();
      if (*limit < 0) throw UsageError("eval: --limit must be >= 0");
    }
    std::vector<Threshold> thresholds;
    for (const auto& [option, metric] : {std::pair{"min-object-f1", "object F1"},
                                         std::pair{"min-relation-accuracy", "relation accuracy"},
                                         std::pair{"min-pointing", "pointing game"}})
      if (vm.count(option)) thresholds.push_back({option, metric, vm[option].as<double>()});

    std::vector<scenes::Scene> scenes = scenes::read_scenes_jsonl(data / "scenes.jsonl");
    if (limit && static_cast<std::size_t>(*limit) < scenes.size()) scenes.resize(static_cast<std::size_t>(*limit));

    Captioner captioner = load_captioner(vm);
    const ModelInfo info = captioner.info();
    if (last_layer) layer = info.decoder_layers - 1;
    if (layer && *layer >= info.decoder_layers)
      throw UsageError(fmt::format("eval: --layer {} but the decoder has {} layers (0..{})", *layer,
                                   info.decoder_layers, info.decoder_layers - 1));

    const bool show_progress = isatty(fileno(stderr)) != 0;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<ImageRecord> records(scenes.size());
    std::vector<std::string> captions(scenes.size());
    std::vector<scenes::CaptionScore> scores(scenes.size());
    eval::PointingTally tally;
    tally.layer_hits.assign(static_cast<std::size_t>(info.decoder_layers), 0);
    std::int64_t exact_so_far = 0;
    for (std::size_t i = 0; i < scenes.size(); ++i) {
      const scenes::Scene& scene = scenes[i];
      ImageRecord& rec = records[i];
      const CaptionResult result = captioner.caption(load_image(data / scene.file, limits), request);
      rec.caption = result.caption;
      rec.score = scenes::score_caption(scene, result.caption);
      rec.parsed = scenes::parse_caption(result.caption);
      // Which step produced each word: decode growing prefixes of the generated ids.
      std::vector<std::string> prefixes;
      prefixes.reserve(result.token_ids.size());
      for (std::size_t s = 1; s <= result.token_ids.size(); ++s)
        prefixes.push_back(captioner.decode_tokens(std::span(result.token_ids.data(), s), true));
      const auto words = eval::align_words(result.caption, prefixes);
      for (const auto& target : eval::pointing_targets(words, rec.score)) {
        if (target.step >= result.cross_attention.steps) continue;
        rec.trials.push_back(eval::play_pointing(result.cross_attention, scene, target));
        tally.add(rec.trials.back());
      }
      captions[i] = rec.caption;
      scores[i] = rec.score;
      exact_so_far += rec.score.exact_match;
      if (show_progress)
        std::fprintf(stderr, "\reval: %zu/%zu images, exact match so far %.3f", i + 1, scenes.size(),
                     static_cast<double>(exact_so_far) / static_cast<double>(i + 1));
    }
    if (show_progress && !scenes.empty()) std::fprintf(stderr, "\n");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const eval::EvalSummary summary = eval::summarize(scenes, captions, scores, tally, layer);
    const auto& st = summary.structure;
    const auto& b = summary.bleu;

    // ---- Report ----
    std::string report = fmt::format("eval: {} images from {} (model {}, {:.1f} s)\n", scenes.size(), data.string(),
                                     info.dir.string(), seconds);
    auto row = [&](const char* name, double value, const std::string& note) {
      report += fmt::format("  {:<20} {:>8.4f}{}\n", name, value, note.empty() ? "" : "   " + note);
    };
    row("exact match", st.exact_match, fmt::format("({}/{})", st.exact, st.images));
    row("BLEU-4", b.bleu[3],
        fmt::format("(BLEU-1 {:.4f}, -2 {:.4f}, -3 {:.4f}; length ratio {:.3f})", b.bleu[0], b.bleu[1], b.bleu[2],
                    b.reference_length ? static_cast<double>(b.candidate_length) / b.reference_length : 0.0));
    row("CIDEr-D", summary.cider.mean, "");
    row("object precision", st.object_precision, fmt::format("({}/{} named objects)", st.matched_objects, st.caption_objects));
    row("object recall", st.object_recall, fmt::format("({}/{} scene objects)", st.matched_objects, st.scene_objects));
    row("object F1", st.object_f1, "");
    row("relation accuracy", st.relation_accuracy, fmt::format("({}/{} two-object scenes)", st.relation_correct, st.relation_scenes));
    row("order accuracy", st.order_accuracy, fmt::format("({}/{} three-object scenes)", st.order_correct, st.order_scenes));
    row("count accuracy", st.count_accuracy, fmt::format("({}/{})", st.count_correct, st.images));
    row("parse rate", st.parse_rate, fmt::format("({}/{})", st.parsed, st.images));
    row("pointing game", tally.rate(layer),
        fmt::format("({}/{} shape words, layer {})", tally.hits(layer), tally.total, eval::layer_choice_name(layer)));
    std::string per_layer = "  pointing per layer: ";
    for (std::size_t l = 0; l < tally.layer_hits.size(); ++l)
      per_layer += fmt::format("{}: {:.3f}  ", l, tally.rate(static_cast<std::int64_t>(l)));
    per_layer += fmt::format("mean: {:.3f}\n", tally.rate(std::nullopt));
    report += per_layer;
    const auto groups = eval::breakdown(scenes, scores);
    std::string last_group;
    for (const auto& g : groups) {
      if (g.group != last_group) report += fmt::format("  recall by {}:", g.group);
      last_group = g.group;
      report += fmt::format("  {} {:.3f} ({}/{}{})", g.value, g.recall(), g.matched, g.objects,
                            g.group == "aspect" ? fmt::format(", {}/{} scenes fully correct", g.fully_correct, g.scenes)
                                                : std::string());
      if (&g == &groups.back() || (&g + 1)->group != g.group) report += "\n";
    }
    std::cout << report;
    std::cout.flush();

    // ---- Thresholds ----
    auto metric_value = [&](const std::string& option) {
      if (option == "min-object-f1") return st.object_f1;
      if (option == "min-relation-accuracy") return st.relation_accuracy;
      return tally.rate(layer);
    };
    Json threshold_json = Json::object();
    std::vector<std::string> misses;
    for (const auto& t : thresholds) {
      const double v = metric_value(t.option);
      const bool ok = v >= t.value;
      threshold_json[t.option] = {{"minimum", t.value}, {"value", v}, {"passed", ok}};
      if (!ok) misses.push_back(fmt::format("{} {:.4f} < --{} {}", t.metric, v, t.option, t.value));
    }

    // ---- JSON ----
    if (vm.count("json")) {
      Json j;
      j["data"] = vm.count("style") ? Json(nullptr) : Json(data.string());
      j["style"] = vm.count("style") ? Json({{"style", style_label}, {"seed", vm["seed"].as<std::uint64_t>()},
                                             {"count", vm["count"].as<std::int64_t>()}})
                                     : Json(nullptr);
      j["model"] = info.dir.string();
      j["images"] = scenes.size();
      j["seconds"] = seconds;
      Json gen;
      gen["num_beams"] = request.generation.num_beams ? Json(*request.generation.num_beams) : Json(info.num_beams);
      gen["max_new_tokens"] = request.generation.max_new_tokens ? Json(*request.generation.max_new_tokens)
                              : info.max_new_tokens                ? Json(*info.max_new_tokens)
                                                                   : Json(nullptr);
      j["generation"] = std::move(gen);
      Json m;
      m["exact_match"] = st.exact_match;
      m["bleu"] = {{"bleu_1", b.bleu[0]}, {"bleu_2", b.bleu[1]}, {"bleu_3", b.bleu[2]}, {"bleu_4", b.bleu[3]},
                   {"brevity_penalty", b.brevity_penalty}, {"candidate_length", b.candidate_length},
                   {"reference_length", b.reference_length}, {"correct", b.correct}, {"guess", b.guess},
                   {"variant", "coco-caption corpus BLEU, closest reference length"}};
      m["cider_d"] = summary.cider.mean;
      m["object_precision"] = st.object_precision;
      m["object_recall"] = st.object_recall;
      m["object_f1"] = st.object_f1;
      m["relation_accuracy"] = st.relation_accuracy;
      m["order_accuracy"] = st.order_accuracy;
      m["count_accuracy"] = st.count_accuracy;
      m["parse_rate"] = st.parse_rate;
      m["counts"] = {{"exact", st.exact},
                     {"parsed", st.parsed},
                     {"count_correct", st.count_correct},
                     {"caption_objects", st.caption_objects},
                     {"scene_objects", st.scene_objects},
                     {"matched_objects", st.matched_objects},
                     {"relation_scenes", st.relation_scenes},
                     {"relation_correct", st.relation_correct},
                     {"order_scenes", st.order_scenes},
                     {"order_correct", st.order_correct}};
      Json p;
      p["layer"] = eval::layer_choice_name(layer);
      p["hits"] = tally.hits(layer);
      p["total"] = tally.total;
      p["rate"] = tally.rate(layer);
      Json layers = Json::array();
      for (std::size_t l = 0; l < tally.layer_hits.size(); ++l)
        layers.push_back({{"layer", l}, {"hits", tally.layer_hits[l]}, {"rate", tally.rate(static_cast<std::int64_t>(l))}});
      p["per_layer"] = std::move(layers);
      p["mean_layers"] = {{"hits", tally.mean_hits}, {"rate", tally.rate(std::nullopt)}};
      m["pointing"] = std::move(p);
      Json groups_json = Json::array();
      for (const auto& g : groups) {
        Json gj = {{"group", g.group}, {"value", g.value}, {"objects", g.objects}, {"matched", g.matched},
                   {"recall", g.recall()}};
        if (g.group == "aspect") gj["scenes"] = g.scenes, gj["fully_correct"] = g.fully_correct;
        groups_json.push_back(std::move(gj));
      }
      m["breakdown"] = std::move(groups_json);
      j["metrics"] = std::move(m);
      j["thresholds"] = std::move(threshold_json);
      write_text_atomically(vm["json"].as<std::string>(), dump(j, 2) + "\n");
    }
    if (vm.count("details")) {
      std::string text;
      for (std::size_t i = 0; i < scenes.size(); ++i)
        text += dump(details_json(scenes[i], records[i], summary.cider.per_image[i], layer)) + "\n";
      write_text_atomically(vm["details"].as<std::string>(), text);
    }

    for (const auto& miss : misses) std::fprintf(stderr, "xcaption: eval: threshold missed: %s\n", miss.c_str());
    return misses.empty() ? kOk : kThresholdMissed;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
