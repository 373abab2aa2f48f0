// xcaption tokenize : text -> ids and ids -> text with the model folder's tokenizer.
#include <iostream>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/cli/cli.hpp"
#include "src/tokenizer/cleanup.hpp"
#include "src/tokenizer/tokenizer.hpp"

namespace xcaption::cli {

int cmd_tokenize(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("model,m", po::value<std::string>()->value_name("DIR|ORG/NAME[@REV]"),
       "model folder, or name of a model in the Hugging Face cache, whose tokenizer to use. "
       "Default: $XCAPTION_MODEL, else the bundled model")
      ("decode,d", "arguments are token ids: print the text they decode to")
      ("skip-special", "with --decode: drop special tokens (as captions do)")
      ("tokens", "print the token strings next to the ids")
      ("arg", po::value<std::vector<std::string>>()->multitoken(), "texts, or ids with --decode");
  po::positional_options_description positional;
  positional.add("arg", -1);
  try {
    const auto vm = parse("tokenize", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help("xcaption tokenize [--model DIR] TEXT...\n       xcaption tokenize [--model DIR] --decode ID...",
                 "Prints the token ids of each TEXT, space-separated, one line per TEXT; with --decode,\n"
                 "the text that the given ids decode to. For debugging prompts and tokenizers; loads the\n"
                 "tokenizer only, not the weights.",
                 options);
      return kOk;
    }
    if (!vm.count("arg")) throw UsageError("tokenize: nothing to tokenize (see xcaption tokenize --help)");
    const auto args = vm["arg"].as<std::vector<std::string>>();
    const Tokenizer tok = Tokenizer::load(model_dir(vm));
    if (vm.count("decode")) {
      std::vector<std::int64_t> ids;
      for (const auto& a : args) {
        std::size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(a, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != a.size()) throw UsageError(fmt::format("tokenize --decode: '{}' is not a token id", a));
        if (v < 0 || v >= tok.vocab_size())
          throw InputError(fmt::format("token id {} is outside the vocabulary (size {})", v, tok.vocab_size()));
        ids.push_back(v);
      }
      std::string text = tok.decode(ids, vm.count("skip-special") > 0);
      if (clean_up_tokenization_spaces(model_dir(vm))) text = clean_up_tokenization(std::move(text));
      std::cout << text << "\n";
      return kOk;
    }
    const bool show_tokens = vm.count("tokens") > 0;
    for (const auto& text : args) {
      const auto ids = tok.encode(text);
      std::string line;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
        if (show_tokens) line += "(" + tok.token_string(ids[i]) + ")";
      }
      std::cout << line << "\n";
    }
    return kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
