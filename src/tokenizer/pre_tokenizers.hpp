// Pre-tokenizers of Hugging Face `tokenizers` that xcaption supports, as free functions on
// valid UTF-8 text. Exposed for the tokenizer tests; the Tokenizer class composes them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption::pretok {

/// Splits with GPT-2's pattern
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// (ref: tokenizers ByteLevel pre-tokenizer, openai/gpt-2 encoder.py). The pieces concatenate
/// back to `text`. Precondition: `text` is valid UTF-8.
std::vector<std::string> split_gpt2(std::string_view text);

/// HF `Whitespace`: the matches of \w+|[^\w\s]+ (whitespace dropped, Unicode \w).
std::vector<std::string> split_whitespace(std::string_view text);

/// HF `WhitespaceSplit`: runs of non-White_Space characters.
std::vector<std::string> split_on_whitespace(std::string_view text);

/// HF `BertPreTokenizer`: split on White_Space (removed), then every BERT punctuation character
/// (unicode::is_bert_punctuation) becomes a piece of its own.
std::vector<std::string> split_bert(std::string_view text);

/// GPT-2's reversible byte -> printable character map ("bytes_to_unicode"): bytes 0x21..0x7E,
/// 0xA1..0xAC and 0xAE..0xFF map to themselves, the other 68 bytes to U+0100 onwards in order.
const std::array<char32_t, 256>& byte_to_char();

/// Maps every byte of `bytes` to its byte-level character, UTF-8 encoded ("Ġ" for a space).
std::string byte_level_encode(std::string_view bytes);

/// Inverse of the byte map for one character; -1 when `c` is not in the byte-level alphabet.
int char_to_byte(char32_t c);

}  // namespace xcaption::pretok
