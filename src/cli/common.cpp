#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

po::variables_map parse(const std::string& command, int argc, char** argv,
                        const po::options_description& options,
                        const po::positional_options_description& positional) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(fmt::format("{}: {} (see xcaption {} --help)", command, e.what(), command));
  }
  return vm;
}

void print_help(const std::string& usage, const std::string& summary,
                const po::options_description& options, const std::string& details) {
  std::cout << "usage: " << usage << "\n\n" << summary << "\n\n" << options;
  if (!details.empty()) std::cout << "\n" << details;
  std::cout.flush();
}

void add_model_options(po::options_description& options) {
  options.add_options()
      ("model,m", po::value<std::string>()->value_name("DIR|ORG/NAME[@REV]"),
       "Hugging Face model folder (config.json, model.safetensors, tokenizer, ...), or the name of "
       "a model already in the Hugging Face cache (e.g. nlpconnect/vit-gpt2-image-captioning, "
       "found under $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; @REV picks a "
       "branch, tag or commit; nothing is downloaded). An existing folder wins. "
       "Default: $XCAPTION_MODEL (either form), else the bundled model")
      ("threads,t", po::value<int>()->default_value(0)->value_name("N"),
       "compute threads (0 = all cores)")
      ("dtype", po::value<std::string>()->default_value("f32")->value_name("f32|bf16"),
       "float32 (exact transformers parity) or bfloat16 (faster: weights converted at load, "
       "the encoder's products on bf16 inputs)");
}

std::filesystem::path model_dir(const po::variables_map& vm) {
  if (vm.count("model")) return resolve_model(vm["model"].as<std::string>());
  return default_model_dir();
}

ComputeType compute_type(const po::variables_map& vm) {
  const std::string d = vm["dtype"].as<std::string>();
  if (d == "f32") return ComputeType::F32;
  if (d == "bf16") return ComputeType::BF16;
  throw UsageError(fmt::format("--dtype must be f32 or bf16, got '{}'", d));
}

Captioner load_captioner(const po::variables_map& vm) {
  LoadOptions options;
  options.threads = vm["threads"].as<int>();
  if (options.threads < 0) throw UsageError("--threads must be >= 0");
  options.dtype = compute_type(vm);
  return Captioner::load(model_dir(vm), options);
}

void add_image_limit_options(po::options_description& o) {
  const ImageLimits d;
  o.add_options()
      ("max-pixels", po::value<std::int64_t>()->default_value(d.max_pixels)->value_name("N"),
       "refuse an image whose header declares more than N pixels (width x height), checked before "
       "decoding (a decompression bomb costs nothing); the default is Pillow's MAX_IMAGE_PIXELS")
      ("max-image-mb", po::value<std::int64_t>()->default_value(d.max_bytes >> 20)->value_name("N"),
       "refuse an image file larger than N MiB without reading it");
}

ImageLimits image_limits(const po::variables_map& vm) {
  ImageLimits l;
  l.max_pixels = vm["max-pixels"].as<std::int64_t>();
  const std::int64_t mb = vm["max-image-mb"].as<std::int64_t>();
  if (l.max_pixels < 1) throw UsageError("--max-pixels must be at least 1");
  if (mb < 1 || mb > (std::int64_t{1} << 40)) throw UsageError("--max-image-mb must lie in [1, 2^40]");
  l.max_bytes = mb << 20;
  return l;
}

void add_generation_options(po::options_description& o) {
  o.add_options()
      ("beams,b", po::value<std::int64_t>()->value_name("N"), "beam count (1 = greedy); default from the model folder")
      ("max-new-tokens", po::value<std::int64_t>()->value_name("N"), "most tokens to generate")
      ("min-new-tokens", po::value<std::int64_t>()->value_name("N"), "fewest tokens before end-of-text may be chosen")
      ("length-penalty", po::value<double>()->value_name("X"),
       "beam score = sum of log-probs / length^X (0 = no length normalisation)")
      ("early-stopping", po::value<std::string>()->value_name("true|false|never"),
       "when beam search stops (HF semantics)")
      ("no-repeat-ngram-size", po::value<std::int64_t>()->value_name("N"), "forbid repeating any N-gram")
      ("repetition-penalty", po::value<double>()->value_name("X"), "penalise tokens already generated (1 = off)")
      ("prompt", po::value<std::string>()->value_name("TEXT"),
       "text the caption starts with, fed to the decoder before generating (BLIP: \"a picture of\"; "
       "vit-gpt2: a GPT-2 prefix); the caption printed includes it")
      ("task", po::value<std::string>()->value_name("TOKEN"),
       "a task model's task (Florence-2: <CAPTION> (default), <DETAILED_CAPTION>, <MORE_DETAILED_CAPTION>, <OCR>, "
       "<OCR_WITH_REGION>, <OD>, <DENSE_REGION_CAPTION>, <REGION_PROPOSAL>, <CAPTION_TO_PHRASE_GROUNDING>, ...; "
       "`xcaption info` lists them); --json adds its structured result")
      ("text", po::value<std::string>()->value_name("TEXT"),
       "the input of a --task that takes one (a phrase to ground, a region as <loc_N> tokens)");
}

CaptionRequest caption_request(const po::variables_map& vm) {
  CaptionRequest r;
  r.generation = generation_options(vm);
  if (vm.count("prompt")) r.prompt = vm["prompt"].as<std::string>();
  if (vm.count("task")) r.task = vm["task"].as<std::string>();
  if (vm.count("text")) r.task_text = vm["text"].as<std::string>();
  return r;
}

GenerationOptions generation_options(const po::variables_map& vm) {
  GenerationOptions g;
  if (vm.count("beams")) g.num_beams = vm["beams"].as<std::int64_t>();
  if (vm.count("max-new-tokens")) g.max_new_tokens = vm["max-new-tokens"].as<std::int64_t>();
  if (vm.count("min-new-tokens")) g.min_new_tokens = vm["min-new-tokens"].as<std::int64_t>();
  if (vm.count("length-penalty")) g.length_penalty = vm["length-penalty"].as<double>();
  if (vm.count("early-stopping")) g.early_stopping = vm["early-stopping"].as<std::string>();
  if (vm.count("no-repeat-ngram-size")) g.no_repeat_ngram_size = vm["no-repeat-ngram-size"].as<std::int64_t>();
  if (vm.count("repetition-penalty")) g.repetition_penalty = vm["repetition-penalty"].as<double>();
  return g;
}

void print_image_result(const std::optional<nlohmann::json>& json, const std::string& path,
                        const std::string& caption, bool several_images) {
  if (json)
    std::cout << json->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  else if (several_images)
    std::cout << path << ": " << caption << "\n";
  else
    std::cout << caption << "\n";
  std::cout.flush();
}

int report_error(const std::exception& e) {
  const int code = exit_code_of(e);
  std::fprintf(stderr, "xcaption: error: %s\n", e.what());
  return code;
}

int exit_code_of(const std::exception& e) {
  int code = kFailure;
  if (dynamic_cast<const UsageError*>(&e)) code = kUsage;
  else if (dynamic_cast<const FormatError*>(&e)) code = kBadFile;
  else if (dynamic_cast<const ShapeError*>(&e)) code = kBadShape;
  else if (dynamic_cast<const InputError*>(&e)) code = kBadInput;
  else if (dynamic_cast<const BackendError*>(&e)) code = kBackend;
  return code;
}

}  // namespace xcaption::cli
