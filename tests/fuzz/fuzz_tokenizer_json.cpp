// libFuzzer target for tokenizer loading: the input is tokenizer.json (optionally followed by
// "\n--config--\n" and tokenizer_config.json), loaded with Tokenizer::load from a scratch folder.
// A tokenizer that loads then encodes a fixed text (with and without special tokens) and decodes
// the ids, and decodes every id of its vocabulary, so that an inconsistent vocabulary, merge list
// or added token reached at load time but used only later shows up too.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xcaption/errors.hpp>

#include "src/tokenizer/tokenizer.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto [tokenizer, config] = fuzz::split(input, "\n--config--\n");
  fuzz::write_file("tokenizer.json", tokenizer);
  if (config.empty()) fuzz::remove_file("tokenizer_config.json");
  else fuzz::write_file("tokenizer_config.json", config);
  try {
    const Tokenizer t = Tokenizer::load(fuzz::scratch_dir());
    for (const bool special : {false, true}) {
      const auto ids = t.encode("a Cat, \xc3\xa9t\xc3\xa9 [CLS] <|endoftext|> 42  x", special);
      t.decode(ids, false);
      t.decode(ids, true);
    }
    const std::int64_t n = std::min<std::int64_t>(t.vocab_size(), 4096);
    std::vector<std::int64_t> all(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
    t.decode(all, false);
    for (std::int64_t i = 0; i < n; ++i) t.token_id(t.token_string(i));
  } catch (const Error&) {
  }
  return 0;
}
