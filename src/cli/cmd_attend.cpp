// xcaption attend IMAGE... : where each generated word looked, as PNG overlays or JSON maps.
#include <cctype>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/cli/cli.hpp"
#include "src/cli/collection.hpp"
#include "src/io/result_json.hpp"

namespace xcaption::cli {

namespace {

// File-name-safe ASCII form of a word: letters, digits and '-' kept, anything else '_'.
std::string file_word(const std::string& word) {
  std::string out;
  for (char c : viz::hershey_text(word)) {
    const auto u = static_cast<unsigned char>(c);
    out += std::isalnum(u) || c == '-' ? c : '_';
    if (out.size() >= 32) break;
  }
  return out.empty() ? "_" : out;
}

std::string label_of(const viz::TokenAttention& t) {
  if (!t.word.empty()) return t.word;
  return t.token.empty() ? "(empty)" : "(space)";
}

nlohmann::ordered_json to_json(const std::string& image, const CaptionResult& r,
                               const std::vector<viz::TokenAttention>& tokens) {
  nlohmann::ordered_json j;
  j["image"] = image;
  j["caption"] = r.caption;
  j["prompt_ids"] = r.prompt_ids;
  put_task_fields(j, r);  // a task model's task and answer, as caption --json gives them
  j["grid"] = {r.cross_attention.grid_rows, r.cross_attention.grid_cols};
  j["tokens"] = nlohmann::ordered_json::array();
  for (const auto& t : tokens) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (int y = 0; y < t.map.rows; ++y) {
      nlohmann::ordered_json row = nlohmann::ordered_json::array();
      // The shortest decimal that reads back as the same float (at most 9 significant digits),
      // rather than the 17 digits of its double widening.
      for (int x = 0; x < t.map.cols; ++x) row.push_back(std::stod(fmt::format("{}", t.map.at(y, x))));
      rows.push_back(std::move(row));
    }
    j["tokens"].push_back({{"token", t.token}, {"id", t.id}, {"map", std::move(rows)}});
  }
  return j;
}

}  // namespace

// "N", "mean" or "last" -> the index, or unset for the mean.
std::optional<int> parse_map_index(const po::variables_map& vm, const char* key, std::int64_t count) {
  const std::string v = vm[key].as<std::string>();
  if (v == "mean") return std::nullopt;
  if (v == "last") return static_cast<int>(count - 1);
  std::size_t used = 0;
  int n = -1;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty())
    throw UsageError(fmt::format("--{} takes a number, 'mean' or 'last', got '{}'", key, v));
  if (n < 0 || n >= count)
    throw UsageError(fmt::format("--{} {} out of range: the model's decoder has {} {}s (0..{})", key, n, count,
                                 key, count - 1));
  return n;
}

int cmd_attend(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("output,o", po::value<std::string>()->value_name("FILE"),
       "panel grid PNG (one image only). Default: IMAGE_STEM.attention.png in the current folder, "
       "unless --json or --per-token is given")
      ("per-token", po::value<std::string>()->value_name("DIR"),
       "also write one overlay PNG per token at the image's resolution: DIR/STEM.NN.WORD.png")
      ("layer", po::value<std::string>()->default_value("last")->value_name("N|mean|last"),
       "decoder layer whose cross-attention is shown (0-based), or the mean over layers")
      ("head", po::value<std::string>()->default_value("mean")->value_name("N|mean|last"),
       "attention head (0-based), or the mean over heads")
      ("rollout", "combine the layers by attention rollout instead (see below); excludes --layer N")
      ("json", "print one JSON object per image and line with the maps (see below)")
      ("colormap", po::value<std::string>()->default_value("inferno")->value_name("NAME"),
       "inferno, viridis, turbo or jet")
      ("alpha", po::value<double>()->default_value(0.55, "0.55")->value_name("X"),
       "heat colour weight in the blend, 0..1")
      ("flat-floor", po::value<double>()->default_value(4.0, "4")->value_name("K"),
       "the colour scale tops out at the map's peak or at K times the uniform weight, whichever is larger, "
       "so evenly spread attention shows dim (0 = always at the peak)")
      ("columns", po::value<int>()->default_value(0)->value_name("N"), "panels per row (0 = up to 5)")
      ("panel-size", po::value<int>()->default_value(320)->value_name("PX"),
       "longest side of a panel in the grid, in pixels (0 = the image's own size)")
      ("all-tokens", "also draw panels for special tokens (end of text)")
      ("image", po::value<std::vector<std::string>>()->multitoken(), "image files and directories")
      ("recursive,r", "descend into subdirectories")
      ("input-list", po::value<std::vector<std::string>>()->value_name("FILE"), "read paths from FILE (- = stdin)");
  add_model_options(options);
  add_generation_options(options);
  add_image_limit_options(options);
  po::positional_options_description positional;
  positional.add("image", -1);
  try {
    const auto vm = parse("attend", argc, argv, options, positional);
    const ImageLimits limits = image_limits(vm);
    if (vm.count("help")) {
      print_help(
          "xcaption attend IMAGE|DIR... [OPTIONS]",
          "Captions each image and shows where the decoder's cross-attention looked for every generated\n"
          "token: the map over the image's patch grid (CLS token excluded, renormalised to sum 1),\n"
          "upsampled bicubically to the original image, coloured and blended over it. The PNG is a grid of\n"
          "panels: the image, then one panel per word with the word under it and the caption above.\n"
          "Beam search shows the returned beam's maps.",
          options,
          "Maps. --layer/--head pick one layer/head or average them (defaults: last, mean). --rollout\n"
          "weighs decoder layer l (1..L) by 2^(l-1) / (2^L - 1), the share of the output that reaches the\n"
          "image through layer l when every layer splits its flow evenly between its residual path and\n"
          "its cross-attention (attention rollout along the decoder position's own path; the decoder's\n"
          "self-attention is not captured and counts as identity).\n\n"
          "--json prints, per image, {\"image\": PATH, \"caption\": TEXT, \"grid\": [ROWS, COLS], \"tokens\":\n"
          "[{\"token\": VOCAB_STRING, \"id\": N, \"map\": [[COLS floats] x ROWS]}]}: every generated token\n"
          "(end of text included), each map summing to 1; cell (r, c) covers the same fraction of the\n"
          "original image (the model resizes the whole image, no crop).\n\n"
          "Words are drawn with OpenCV's Hershey fonts (ASCII): accented Latin letters are transliterated\n"
          "(é -> e), other characters appear as \\u{XXXX}, broken UTF-8 bytes as \\x{XX}.\n"
          "Files are written atomically. Plain output is the caption (\"FILE: caption\" for several images);\n"
          "written files are listed on stderr.\n\n"
          "Inputs as for `xcaption caption`: files, directories (--recursive), --input-list. Exit status 8\n"
          "when some images failed and others succeeded.\n");
      return kOk;
    }
    InputOptions in;
    in.recursive = vm.count("recursive") > 0;
    if (vm.count("input-list")) in.lists = vm["input-list"].as<std::vector<std::string>>();
    const auto args = vm.count("image") ? vm["image"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (args.empty() && in.lists.empty()) throw UsageError("attend: no image given (see xcaption attend --help)");
    std::vector<std::string> notes;
    const std::vector<InputItem> items = collect_inputs(args, in, notes);
    for (const auto& n : notes) std::fprintf(stderr, "xcaption: %s\n", n.c_str());
    if (items.empty())
      throw FormatError("attend: no image found in the inputs given (a folder is searched for image files; -r "
                        "descends into subfolders)");
    const bool several = items.size() > 1 || args.size() != 1 || !in.lists.empty();
    const bool json = vm.count("json") > 0;
    const bool per_token = vm.count("per-token") > 0;
    if (vm.count("output") && several)
      throw UsageError("attend: -o names one file; with several images leave it out (each image then writes "
                       "STEM.attention.png)");
    const bool grid = vm.count("output") || (!json && !per_token);
    viz::OverlayOptions overlay;
    overlay.colormap = viz::parse_colormap(vm["colormap"].as<std::string>());
    overlay.alpha = static_cast<float>(vm["alpha"].as<double>());
    if (!(overlay.alpha >= 0 && overlay.alpha <= 1)) throw UsageError("--alpha must lie in [0, 1]");
    overlay.flat_floor = static_cast<float>(vm["flat-floor"].as<double>());
    if (!(overlay.flat_floor >= 0)) throw UsageError("--flat-floor must be >= 0");
    viz::PanelGridOptions grid_options;
    grid_options.columns = vm["columns"].as<int>();
    grid_options.max_panel_side = vm["panel-size"].as<int>();
    if (grid_options.columns < 0 || grid_options.max_panel_side < 0)
      throw UsageError("--columns and --panel-size must be >= 0");
    const bool all_tokens = vm.count("all-tokens") > 0;

    CaptionRequest request = caption_request(vm);
    request.capture_cross_attention = true;
    Captioner captioner = load_captioner(vm);
    const ModelInfo info = captioner.info();
    viz::MapOptions map;
    map.layer = parse_map_index(vm, "layer", info.decoder_layers);
    map.head = parse_map_index(vm, "head", info.decoder_heads);
    map.rollout = vm.count("rollout") > 0;
    if (map.rollout) map.layer.reset();
    if (map.rollout && !vm["layer"].defaulted() && vm["layer"].as<std::string>() != "mean") throw UsageError("attend: --rollout combines all layers; drop --layer");
    if (per_token) std::filesystem::create_directories(vm["per-token"].as<std::string>());

    int first_code = kOk;
    std::int64_t failures = 0;
    for (const auto& item : items) {
      const std::string& image_path = item.name;
      try {
        if (!item.exists) throw FormatError(fmt::format("{}: no such file", image_path));
        const RgbImage image = load_image(item.path, limits);
        const CaptionResult r = captioner.caption(image, request);
        const auto tokens = viz::token_attentions(captioner, r, map);
        const std::string stem = std::filesystem::path(image_path).stem().string();

        if (grid) {
          // Overlays for the grid are drawn at panel size: the same picture as reducing a
          // full-resolution overlay, without blending megapixels per word.
          const int side = grid_options.max_panel_side;
          const RgbImage base = side > 0 && side < std::max(image.width, image.height) ? viz::fit_image(image, side) : image;
          std::vector<viz::Panel> panels;
          panels.push_back({base, "(image)"});
          for (const auto& t : tokens)
            if (all_tokens || !t.special) panels.push_back({viz::overlay(base, t.map, overlay), label_of(t)});
          grid_options.title = r.caption;
          const std::filesystem::path out =
              vm.count("output") ? std::filesystem::path(vm["output"].as<std::string>()) : std::filesystem::path(stem + ".attention.png");
          viz::write_png(out, viz::panel_grid(panels, grid_options));
          std::fprintf(stderr, "xcaption: wrote %s\n", out.c_str());
        }
        if (per_token) {
          const std::filesystem::path dir = vm["per-token"].as<std::string>();
          const int digits = tokens.size() > 100 ? 3 : 2;
          for (std::size_t i = 0; i < tokens.size(); ++i) {
            if (!all_tokens && tokens[i].special) continue;
            const auto out = dir / fmt::format("{}.{:0{}}.{}.png", stem, i, digits, file_word(label_of(tokens[i])));
            viz::write_png(out, viz::overlay(image, tokens[i].map, overlay));
            std::fprintf(stderr, "xcaption: wrote %s\n", out.c_str());
          }
        }
        print_image_result(json ? std::optional(to_json(image_path, r, tokens)) : std::nullopt, image_path,
                           r.caption, several);
      } catch (const FormatError& e) {
        const int code = report_error(e);
        if (first_code == kOk) first_code = code;
        ++failures;
      }
    }
    if (failures == 0) return kOk;
    if (failures == static_cast<std::int64_t>(items.size())) return first_code;
    std::fprintf(stderr, "xcaption: %lld of %zu images failed (errors above)\n", static_cast<long long>(failures),
                 items.size());
    return kSomeFailed;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
