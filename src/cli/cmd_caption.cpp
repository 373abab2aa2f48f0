// xcaption caption IMAGE... : one caption per image, as text or JSON lines.
#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace {

nlohmann::json to_json(const std::string& image, const CaptionResult& r) {
  nlohmann::json j;
  j["image"] = image;
  j["caption"] = r.caption;
  j["prompt_ids"] = r.prompt_ids;
  j["token_ids"] = r.token_ids;
  j["tokens"] = r.tokens;
  j["logprobs"] = r.logprobs;
  j["sequence_score"] = r.sequence_score;
  j["num_beams"] = r.num_beams;
  j["timings_ms"] = {{"preprocess", r.timings.preprocess_ms},
                     {"encoder", r.timings.encoder_ms},
                     {"cross_kv", r.timings.cross_kv_ms},
                     {"decode", r.timings.decode_ms}};
  return j;
}

}  // namespace

int cmd_caption(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("json", "print one JSON object per image and line (caption, tokens, log-probs, timings)")
      ("image", po::value<std::vector<std::string>>()->multitoken(), "image files");
  add_model_options(options);
  add_generation_options(options);
  po::positional_options_description positional;
  positional.add("image", -1);
  try {
    const auto vm = parse("caption", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help("xcaption caption IMAGE... [OPTIONS]",
                 "Captions each image. Plain output is the caption alone, or \"FILE: caption\" when\n"
                 "several images are given; --json prints one object per line with the keys image,\n"
                 "caption, prompt_ids (the decoder input before the first generated token), token_ids,\n"
                 "tokens, logprobs (these three: the generated tokens), sequence_score, num_beams,\n"
                 "timings_ms. The caption is what transformers prints: prompt included.\n"
                 "Generation settings default to the model folder's generation_config.json.",
                 options,
                 "An image that cannot be read is reported on stderr and skipped; the exit code is\n"
                 "then non-zero (3 for an unreadable file).\n");
      return kOk;
    }
    if (!vm.count("image")) throw UsageError("caption: no image given (see xcaption caption --help)");
    const auto images = vm["image"].as<std::vector<std::string>>();
    const bool json = vm.count("json") > 0;
    CaptionRequest request = caption_request(vm);
    Captioner captioner = load_captioner(vm);
    int status = kOk;
    for (const auto& image : images) {
      try {
        const CaptionResult r = captioner.caption_file(image, request);
        print_image_result(json ? std::optional(to_json(image, r)) : std::nullopt, image, r.caption,
                           images.size() > 1);
      } catch (const FormatError& e) {
        const int code = report_error(e);
        if (status == kOk) status = code;
      }
    }
    return status;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
