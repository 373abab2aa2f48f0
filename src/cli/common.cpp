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
      ("model,m", po::value<std::string>()->value_name("DIR"),
       "Hugging Face model folder (config.json, model.safetensors, tokenizer, ...). "
       "Default: $XCAPTION_MODEL, else the bundled model")
      ("threads,t", po::value<int>()->default_value(0)->value_name("N"),
       "compute threads (0 = all cores)")
      ("dtype", po::value<std::string>()->default_value("f32")->value_name("f32|bf16"),
       "linear layers in float32 (exact transformers parity) or bfloat16 (faster, weights "
       "converted at load)");
}

std::filesystem::path model_dir(const po::variables_map& vm) {
  if (vm.count("model")) return vm["model"].as<std::string>();
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

int report_error(const std::exception& e) {
  int code = kFailure;
  if (dynamic_cast<const UsageError*>(&e)) code = kUsage;
  else if (dynamic_cast<const FormatError*>(&e)) code = kBadFile;
  else if (dynamic_cast<const ShapeError*>(&e)) code = kBadShape;
  else if (dynamic_cast<const InputError*>(&e)) code = kBadInput;
  else if (dynamic_cast<const BackendError*>(&e)) code = kBackend;
  std::fprintf(stderr, "xcaption: error: %s\n", e.what());
  return code;
}

}  // namespace xcaption::cli
