// xcaption scenes: renders a shapes-world dataset (PNG images + scenes.jsonl).
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>

#include <fmt/format.h>

#include <xcaption/errors.hpp>
#include <xcaption/scenes.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace {

// Boost's lexical_cast wraps "-1" into a huge unsigned value, so the seed is parsed by hand.
std::uint64_t parse_seed(const std::string& text) {
  std::uint64_t seed = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seed);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw UsageError(fmt::format("scenes: --seed must be an integer in [0, {}], got '{}' (see xcaption scenes --help)",
                                 std::numeric_limits<std::uint64_t>::max(), text));
  return seed;
}

}  // namespace

int cmd_scenes(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("count,n", po::value<std::int64_t>()->value_name("N"), "number of scenes to render (required, >= 0)")
      ("seed,s", po::value<std::string>()->value_name("S"), "dataset seed, an unsigned 64-bit integer (required)")
      ("out,o", po::value<std::string>()->value_name("DIR"), "output folder, created if missing (required)")
      ("start-index", po::value<std::int64_t>()->default_value(0)->value_name("I"),
       "index of the first scene; scene i depends only on (seed, i)")
      ("min-objects", po::value<int>()->default_value(1)->value_name("A"), "fewest objects per scene (1-3)")
      ("max-objects", po::value<int>()->default_value(3)->value_name("B"), "most objects per scene (1-3)")
      ("style", po::value<std::string>()->default_value("train")->value_name("train|wide|unseen"),
       "renderer parameterisation (same grammar): train (the shipped model's), wide (the wider training "
       "world), unseen (the evaluation style no model trains on); see README-grammar.md")
      ("jpeg-probability", po::value<double>()->default_value(0.2, "0.2")->value_name("P"),
       "chance that a scene goes through a JPEG round trip (0-1)");
  try {
    const auto vm = parse("scenes", argc, argv, options, {});
    if (vm.count("help")) {
      print_help("xcaption scenes --count N --seed S --out DIR [OPTIONS]",
                 "Renders shapes-world scenes start-index .. start-index + N - 1 into DIR: one PNG per\n"
                 "scene (scene_000042.png) and DIR/scenes.jsonl with the objects (shape, color, size,\n"
                 "bbox, center) and every reference caption of each scene. The same seed, index and\n"
                 "options always give the same scene; the grammar is in models/shapes-small/README-grammar.md.\n"
                 "Files are written to temporary names and renamed. Progress goes to stderr when it is a\n"
                 "terminal; a summary line goes to stdout.",
                 options);
      return kOk;
    }
    for (const char* required : {"count", "seed", "out"})
      if (!vm.count(required))
        throw UsageError(fmt::format("scenes: --{} is required (see xcaption scenes --help)", required));

    scenes::RenderOptions render;
    render.count = vm["count"].as<std::int64_t>();
    render.seed = parse_seed(vm["seed"].as<std::string>());
    render.start_index = vm["start-index"].as<std::int64_t>();
    render.min_objects = vm["min-objects"].as<int>();
    render.max_objects = vm["max-objects"].as<int>();
    render.jpeg_probability = vm["jpeg-probability"].as<double>();
    try {
      render.style = scenes::parse_style(vm["style"].as<std::string>());
    } catch (const xcaption::InputError& e) {
      throw UsageError(fmt::format("scenes: --style: {}", e.what()));
    }
    const std::string out = vm["out"].as<std::string>();
    if (render.count < 0) throw UsageError(fmt::format("scenes: --count must be >= 0, got {}", render.count));
    if (render.start_index < 0)
      throw UsageError(fmt::format("scenes: --start-index must be >= 0, got {}", render.start_index));
    if (render.min_objects < 1 || render.max_objects > 3 || render.min_objects > render.max_objects)
      throw UsageError(fmt::format("scenes: need 1 <= --min-objects <= --max-objects <= 3, got {} and {}",
                                   render.min_objects, render.max_objects));
    if (!(render.jpeg_probability >= 0.0 && render.jpeg_probability <= 1.0))
      throw UsageError(fmt::format("scenes: --jpeg-probability must be in [0, 1], got {}", render.jpeg_probability));
    if (out.empty()) throw UsageError("scenes: --out must not be empty");

    const bool show_progress = isatty(fileno(stderr)) != 0;
    const auto t0 = std::chrono::steady_clock::now();
    scenes::render_scenes(render, out, [&](std::int64_t done, std::int64_t total) {
      if (show_progress) std::fprintf(stderr, "\rscenes: %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
    });
    if (show_progress && render.count > 0) std::fprintf(stderr, "\n");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string range = render.count > 0 ? fmt::format(", indices {}..{}", render.start_index,
                                                             render.start_index + render.count - 1)
                                               : std::string();
    std::cout << fmt::format("scenes: wrote {} scenes (seed {}{}) to {} in {:.1f} s\n", render.count, render.seed,
                             range, (std::filesystem::path(out) / "scenes.jsonl").string(), seconds);
    return kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
