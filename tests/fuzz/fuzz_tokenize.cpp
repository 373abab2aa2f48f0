// libFuzzer target for encoding arbitrary bytes with the committed tokenizers: byte-level BPE
// (GPT-2 style, tests/data/tokenizer/bpe/json), BERT WordPiece (tests/data/tokenizer/wordpiece)
// and WordLevel (tests/data/tokenizer/wordlevel). Invalid UTF-8 must give InputError; valid text
// must encode to ids inside the vocabulary and decode without error. For byte-level BPE without
// special tokens in the text, decode(encode(x)) == x (the byte-level round trip).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <xcaption/errors.hpp>

#include "src/tokenizer/tokenizer.hpp"

namespace {

const xcaption::Tokenizer& tokenizer(int which) {
  static const xcaption::Tokenizer bpe = xcaption::Tokenizer::load(XCAPTION_TEST_DATA "/tokenizer/bpe/json");
  static const xcaption::Tokenizer wordpiece = xcaption::Tokenizer::load(XCAPTION_TEST_DATA "/tokenizer/wordpiece");
  static const xcaption::Tokenizer wordlevel = xcaption::Tokenizer::load(XCAPTION_TEST_DATA "/tokenizer/wordlevel");
  return which == 0 ? bpe : which == 1 ? wordpiece : wordlevel;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_tokenize: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  if (size < 1) return 0;
  const int which = data[0] % 3;
  const bool special = data[0] & 4;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const Tokenizer& t = tokenizer(which);
  std::vector<std::int64_t> ids;
  try {
    ids = t.encode(text, special);
  } catch (const InputError&) {
    return 0;  // not UTF-8
  }
  for (const std::int64_t id : ids)
    if (id < 0 || id >= t.vocab_size()) fail("an id outside the vocabulary");
  const std::string back = t.decode(ids, false);
  t.decode(ids, true);
  if (which == 0 && !special && text.find("<|") == std::string_view::npos && back != text)
    fail("byte-level BPE: decode(encode(text)) differs from the text");
  return 0;
}
