// xcaption info : what a model folder holds and the generation defaults it implies.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

int cmd_info(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("json", "print the information as one JSON object");
  add_model_options(options);
  try {
    const auto vm = parse("info", argc, argv, options, {});
    if (vm.count("help")) {
      print_help("xcaption info [--model DIR|ORG/NAME[@REV]] [--json]",
                 "Loads the model (validating every tensor) and prints the folder it was read from, its\n"
                 "family, sizes, the weight format, file(s) and stored dtype, the tokenizer, the effective\n"
                 "generation defaults and how long loading took.",
                 options);
      return kOk;
    }
    const Captioner captioner = load_captioner(vm);
    const ModelInfo i = captioner.info();
    const std::string eos = fmt::format("{}", fmt::join(i.eos_token_ids, ", "));
    if (vm.count("json")) {
      nlohmann::json j = {
          {"dir", i.dir.string()}, {"family", i.family}, {"architecture", i.architecture},
          {"weights", i.weights_file}, {"weights_format", i.weights_format},
          {"dtype", i.weights_dtype}, {"parameters", i.parameters},
          {"image_size", {i.image_height, i.image_width}}, {"patch_size", i.patch_size},
          {"grid", {i.grid_rows, i.grid_cols}},
          {"encoder", {{"description", i.encoder_description}, {"hidden", i.encoder_hidden},
                       {"layers", i.encoder_layers}, {"heads", i.encoder_heads}, {"tokens", i.encoder_tokens}}},
          {"prompt_rule", i.prompt_rule},
          {"decoder", {{"description", i.decoder_description}, {"hidden", i.decoder_hidden}, {"layers", i.decoder_layers}, {"heads", i.decoder_heads},
                       {"vocab_size", i.vocab_size}, {"n_positions", i.n_positions}}},
          {"enc_to_dec_proj", i.enc_to_dec_proj},
          {"tokenizer", {{"kind", i.tokenizer_kind}, {"file", i.tokenizer_file}}},
          {"resample", i.resample},
          {"generation", {{"num_beams", i.num_beams}, {"max_length", i.max_length},
                          {"min_length", i.min_length}, {"length_penalty", i.length_penalty},
                          {"early_stopping", i.early_stopping},
                          {"no_repeat_ngram_size", i.no_repeat_ngram_size},
                          {"repetition_penalty", i.repetition_penalty},
                          {"decoder_start_token_id", i.decoder_start_token_id},
                          {"eos_token_id", i.eos_token_ids}}},
          {"backend", i.backend}, {"compute_dtype", i.compute_dtype}, {"load_ms", i.load_ms},
          {"warnings", i.warnings}};
      if (!i.tasks.empty()) j["tasks"] = {{"default", i.default_task}, {"all", i.tasks}};
      std::cout << j.dump(2) << "\n";
      return kOk;
    }
    std::cout << fmt::format(
        "model        {}\n"
        "family       {} ({})\n"
        "weights      {}: {}, stored as {}, {:.2f} M parameters\n"
        "image        {}x{} pixels, {} resampling, patch {} -> {}x{} grid\n"
        "encoder      {}\n"
        "{}"
        "decoder      {}\n"
        "prompt       {}\n"
        "tokenizer    {} ({})\n"
        "generation   beams {}, max_length {} (= {} new tokens), min_length {}, length_penalty {},\n"
        "             early_stopping {}, no_repeat_ngram_size {}, repetition_penalty {},\n"
        "             decoder_start {}, eos [{}]\n"
        "backend      {} ({} linear layers), loaded in {:.0f} ms\n",
        i.dir.string(), i.family, i.architecture, i.weights_format, i.weights_file, i.weights_dtype, i.parameters / 1e6, i.image_width,
        i.image_height, i.resample, i.patch_size, i.grid_rows, i.grid_cols, i.encoder_description,
        i.enc_to_dec_proj ? fmt::format("projection   enc_to_dec_proj {} -> {}\n", i.encoder_hidden, i.decoder_hidden) : "",
        i.decoder_description, i.prompt_rule, i.tokenizer_kind, i.tokenizer_file, i.num_beams, i.max_length,
        i.max_new_tokens.value_or(i.max_length - 1), i.min_length, i.length_penalty, i.early_stopping,
        i.no_repeat_ngram_size, i.repetition_penalty, i.decoder_start_token_id, eos, i.backend, i.compute_dtype,
        i.load_ms);
    if (!i.tasks.empty())
      std::cout << fmt::format("tasks        {} (default {})\n", fmt::join(i.tasks, " "), i.default_task);
    for (const auto& w : i.warnings) std::cout << "warning      " << w << "\n";
    return kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
