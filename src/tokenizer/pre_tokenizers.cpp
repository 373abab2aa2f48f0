#include "src/tokenizer/pre_tokenizers.hpp"

#include <cstddef>

#include "src/tokenizer/unicode.hpp"

namespace xcaption::pretok {
namespace {

// Code points of a valid UTF-8 string plus the byte offset of each (offsets[n] = size).
struct Decoded {
  std::vector<char32_t> cps;
  std::vector<std::size_t> offsets;
};

Decoded decode(std::string_view text) {
  Decoded d;
  unicode::decode_utf8(text, d.cps);
  d.offsets.reserve(d.cps.size() + 1);
  std::size_t off = 0;
  for (char32_t c : d.cps) {
    d.offsets.push_back(off);
    off += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  d.offsets.push_back(off);
  return d;
}

bool is_gpt2_other(char32_t c) {
  return !unicode::is_space(c) && !unicode::is_letter(c) && !unicode::is_number(c);
}

template <class Pred>
std::size_t run_end(const std::vector<char32_t>& cps, std::size_t i, Pred pred) {
  while (i < cps.size() && pred(cps[i])) ++i;
  return i;
}

// End (exclusive) of the GPT-2 pattern's match starting at code point i. The alternatives are
// tried in pattern order; since the character classes are disjoint, the first character after an
// optional leading space decides which one applies.
std::size_t gpt2_match_end(const std::vector<char32_t>& cps, std::size_t i) {
  const std::size_t n = cps.size();
  const char32_t c = cps[i];
  if (c == U'\'' && i + 1 < n) {
    const char32_t c1 = cps[i + 1];
    if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') return i + 2;
    if (i + 2 < n) {
      const char32_t c2 = cps[i + 2];
      if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l')) {
        return i + 3;
      }
    }
  }
  // " ?X+": with a leading space only the variant that consumes it can match, since a space is
  // none of the classes X.
  const std::size_t start = (c == U' ' && i + 1 < n) ? i + 1 : i;
  const char32_t s = cps[start];
  if (unicode::is_letter(s)) return run_end(cps, start, unicode::is_letter);
  if (unicode::is_number(s)) return run_end(cps, start, unicode::is_number);
  if (is_gpt2_other(s)) return run_end(cps, start, is_gpt2_other);
  // Whitespace: "\s+(?!\S)" backtracks so that the last space stays for the next word; a single
  // space before a non-space falls through to "\s+".
  const std::size_t end = run_end(cps, i, unicode::is_space);
  if (end == n) return end;
  if (end - i >= 2) return end - 1;
  return end;
}

std::array<char32_t, 256> make_byte_map() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    map[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

}  // namespace

std::vector<std::string> split_gpt2(std::string_view text) {
  const Decoded d = decode(text);
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < d.cps.size()) {
    const std::size_t end = gpt2_match_end(d.cps, i);
    out.emplace_back(text.substr(d.offsets[i], d.offsets[end] - d.offsets[i]));
    i = end;
  }
  return out;
}

std::vector<std::string> split_whitespace(std::string_view text) {
  const Decoded d = decode(text);
  std::vector<std::string> out;
  auto other = [](char32_t c) { return !unicode::is_word(c) && !unicode::is_space(c); };
  std::size_t i = 0;
  while (i < d.cps.size()) {
    std::size_t end;
    if (unicode::is_word(d.cps[i])) {
      end = run_end(d.cps, i, unicode::is_word);
    } else if (other(d.cps[i])) {
      end = run_end(d.cps, i, other);
    } else {
      ++i;
      continue;
    }
    out.emplace_back(text.substr(d.offsets[i], d.offsets[end] - d.offsets[i]));
    i = end;
  }
  return out;
}

std::vector<std::string> split_on_whitespace(std::string_view text) {
  const Decoded d = decode(text);
  std::vector<std::string> out;
  auto not_space = [](char32_t c) { return !unicode::is_space(c); };
  std::size_t i = 0;
  while (i < d.cps.size()) {
    if (unicode::is_space(d.cps[i])) {
      ++i;
      continue;
    }
    const std::size_t end = run_end(d.cps, i, not_space);
    out.emplace_back(text.substr(d.offsets[i], d.offsets[end] - d.offsets[i]));
    i = end;
  }
  return out;
}

std::vector<std::string> split_bert(std::string_view text) {
  const Decoded d = decode(text);
  std::vector<std::string> out;
  std::size_t word_start = 0;  // code point index where the current word began
  auto flush = [&](std::size_t end) {
    if (end > word_start) {
      out.emplace_back(
          text.substr(d.offsets[word_start], d.offsets[end] - d.offsets[word_start]));
    }
  };
  for (std::size_t i = 0; i < d.cps.size(); ++i) {
    const char32_t c = d.cps[i];
    if (unicode::is_space(c)) {
      flush(i);
      word_start = i + 1;
    } else if (unicode::is_bert_punctuation(c)) {
      flush(i);
      out.emplace_back(text.substr(d.offsets[i], d.offsets[i + 1] - d.offsets[i]));
      word_start = i + 1;
    }
  }
  flush(d.cps.size());
  return out;
}

const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> map = make_byte_map();
  return map;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& map = byte_to_char();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) unicode::append_utf8(out, map[static_cast<unsigned char>(ch)]);
  return out;
}

int char_to_byte(char32_t c) {
  static const std::array<int, 324> inverse = [] {
    std::array<int, 324> inv{};
    inv.fill(-1);
    const auto& map = byte_to_char();
    for (int b = 0; b < 256; ++b) inv[map[static_cast<std::size_t>(b)]] = b;
    return inv;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

}  // namespace xcaption::pretok
