// UTF-8 and Unicode character-class helpers for the tokenizer. The classes follow the regex
// engines Hugging Face `tokenizers` uses (see tools/gen_unicode_tables.py for the definitions and
// src/tokenizer/unicode_tables.hpp for the generated data and its Unicode version).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption::unicode {

bool is_letter(char32_t c);  // \p{L}
bool is_number(char32_t c);  // \p{N}
bool is_space(char32_t c);   // \s = White_Space
bool is_word(char32_t c);    // Unicode \w: Alphabetic | Mark | Nd | Pc | Join_Control

// BERT classes as Hugging Face `tokenizers` sees them (its crates carry Unicode 8.0 category
// tables and Unicode 9.0 normalization tables; see tools/xcaption_ref/hf_unicode.py).
bool is_bert_punctuation(char32_t c);  // ASCII punctuation (33-47, 58-64, 91-96, 123-126) | P*
bool is_bert_control(char32_t c);      // Cc | Cf | Co, except tab, newline, carriage return
bool is_nonspacing_mark(char32_t c);   // Mn
bool is_cjk_ideograph(char32_t c);     // BertNormalizer's "chinese character" ranges

/// Canonical combining class (0 for starters and for characters newer than Unicode 9.0).
unsigned combining_class(char32_t c);

/// Canonical decomposition (NFD) of `src` into `dst`: full decomposition, Hangul syllables
/// included, then canonical ordering of each run of non-starters.
void nfd(const std::vector<char32_t>& src, std::vector<char32_t>& dst);

/// Appends the UTF-8 encoding of `c` (a Unicode scalar value) to `out`.
void append_utf8(std::string& out, char32_t c);

/// Decodes well-formed UTF-8. Returns the byte offset of the first ill-formed sequence, or
/// std::nullopt when `text` is valid (then `out` holds its code points).
std::optional<std::size_t> decode_utf8(std::string_view text, std::vector<char32_t>& out);

/// Converts arbitrary bytes to valid UTF-8, replacing each maximal ill-formed subpart with U+FFFD
/// (the Unicode "best practice" used by both Rust's String::from_utf8_lossy and Python's
/// bytes.decode("utf-8", errors="replace")).
std::string utf8_lossy(std::string_view bytes);

/// Appends the full per-character lowercase mapping of `c` (may be several code points, e.g.
/// U+0130 -> "i\u0307"); no context-dependent rules (as Rust's char::to_lowercase).
void append_lowercase(std::string& out, char32_t c);

/// Lowercases a valid UTF-8 string character by character.
std::string to_lowercase(std::string_view text);

}  // namespace xcaption::unicode
