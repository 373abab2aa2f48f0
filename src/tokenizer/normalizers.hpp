// Normalizers of Hugging Face `tokenizers` beyond Lowercase, as free functions on valid UTF-8.
// Exposed for the tokenizer tests; the Tokenizer class composes them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace xcaption::normalize {

/// BertNormalizer's settings (tokenizer.json field names; the defaults are the library's).
struct BertOptions {
  bool clean_text = true;            // drop NUL, U+FFFD and controls; whitespace -> ' '
  bool handle_chinese_chars = true;  // ' ' around each CJK ideograph
  std::optional<bool> strip_accents;  // NFD, then drop nonspacing marks; unset: = lowercase
  bool lowercase = true;
};

/// BertNormalizer (ref: tokenizers normalizers/bert.rs): clean_text, handle_chinese_chars,
/// strip_accents, lowercase, in that order. Precondition: `text` is valid UTF-8.
std::string bert(std::string_view text, const BertOptions& options);

}  // namespace xcaption::normalize
