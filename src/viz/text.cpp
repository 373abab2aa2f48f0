// Token text for labels: byte-level BPE decoding and Hershey-safe ASCII (include/xcaption/viz.hpp).
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>

#include <fmt/format.h>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

namespace xcaption::viz {

namespace {

// Base letters of U+00C0-U+00FF and U+0100-U+017F: the Unicode canonical decomposition with the
// combining marks removed, and a conventional spelling for letters that have none (ß, æ, ø, ł,
// þ, ð, ŋ, ...). nullptr: not a letter (× and ÷), escaped instead.
constexpr const char* kLatin1[64] = {
    "A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I",         // U+00C0
    "D", "N", "O", "O", "O", "O", "O", nullptr, "O", "U", "U", "U", "U", "Y", "Th", "ss",   // U+00D0
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",         // U+00E0
    "d", "n", "o", "o", "o", "o", "o", nullptr, "o", "u", "u", "u", "u", "y", "th", "y",   // U+00F0
};
constexpr const char* kLatinExtendedA[128] = {
    "A", "a", "A", "a", "A", "a", "C", "c", "C", "c", "C", "c", "C", "c", "D", "d",         // U+0100
    "D", "d", "E", "e", "E", "e", "E", "e", "E", "e", "E", "e", "G", "g", "G", "g",         // U+0110
    "G", "g", "G", "g", "H", "h", "H", "h", "I", "i", "I", "i", "I", "i", "I", "i",         // U+0120
    "I", "i", "IJ", "ij", "J", "j", "K", "k", "k", "L", "l", "L", "l", "L", "l", "L",       // U+0130
    "l", "L", "l", "N", "n", "N", "n", "N", "n", "'n", "NG", "ng", "O", "o", "O", "o",      // U+0140
    "O", "o", "OE", "oe", "R", "r", "R", "r", "R", "r", "S", "s", "S", "s", "S", "s",       // U+0150
    "S", "s", "T", "t", "T", "t", "T", "t", "U", "u", "U", "u", "U", "u", "U", "u",         // U+0160
    "U", "u", "U", "u", "W", "w", "Y", "y", "Y", "Z", "z", "Z", "z", "Z", "z", "s",         // U+0170
};

const char* punctuation(char32_t cp) {
  switch (cp) {
    case 0x00A0: return " ";    // no-break space
    case 0x2018: case 0x2019: case 0x201A: case 0x2032: return "'";
    case 0x201C: case 0x201D: case 0x201E: case 0x2033: return "\"";
    case 0x2010: case 0x2011: case 0x2012: case 0x2013: case 0x2014: case 0x2212: return "-";
    case 0x2026: return "...";
    default: return nullptr;
  }
}

const char* transliterate(char32_t cp) {
  if (cp >= 0xC0 && cp < 0x100) return kLatin1[cp - 0xC0];
  if (cp >= 0x100 && cp < 0x180) return kLatinExtendedA[cp - 0x100];
  return punctuation(cp);
}

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when the byte does not start a
// valid, shortest-form sequence of a scalar value.
std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n;
  char32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// GPT-2's byte alphabet: bytes 33-126, 161-172 and 174-255 stand for themselves; the other 68
// bytes (0-32, 127-160, 173) take code points 256, 257, ... in increasing byte order.
// ref: openai/gpt-2 encoder.py bytes_to_unicode
const std::array<int, 68>& shifted_bytes() {
  static const std::array<int, 68> t = [] {
    std::array<int, 68> a{};
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      if (!direct) a[static_cast<std::size_t>(n++)] = b;
    }
    return a;
  }();
  return t;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

std::string byte_level_token_bytes(std::string_view token) {
  std::string out;
  for (std::size_t i = 0; i < token.size();) {
    char32_t cp = 0;
    const std::size_t n = decode_utf8(token, i, cp);
    if (n == 0) {  // not UTF-8: keep the byte
      out += token[i++];
      continue;
    }
    const bool direct = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255);
    if (direct)
      out += static_cast<char>(cp);
    else if (cp >= 256 && cp < 256 + 68)
      out += static_cast<char>(shifted_bytes()[cp - 256]);
    else
      out.append(token.substr(i, n));
    i += n;
  }
  return out;
}

std::string hershey_text(std::string_view utf8) {
  std::string out;
  for (std::size_t i = 0; i < utf8.size();) {
    char32_t cp = 0;
    const std::size_t n = decode_utf8(utf8, i, cp);
    if (n == 0) {
      out += fmt::format("\\x{{{:02X}}}", static_cast<unsigned char>(utf8[i]));
      ++i;
      continue;
    }
    i += n;
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp >= 0x20 && cp < 0x7F) {
      out += static_cast<char>(cp);
    } else if (const char* t = transliterate(cp)) {
      out += t;
    } else {
      out += fmt::format("\\u{{{:04X}}}", static_cast<std::uint32_t>(cp));
    }
  }
  return out;
}

std::string token_word(std::string_view token, bool byte_level, std::string_view continuing_prefix) {
  if (!continuing_prefix.empty() && token.size() > continuing_prefix.size() && token.starts_with(continuing_prefix))
    token.remove_prefix(continuing_prefix.size());
  std::string w = byte_level ? byte_level_token_bytes(token) : std::string(token);
  const auto b = std::find_if_not(w.begin(), w.end(), is_space);
  const auto e = std::find_if_not(w.rbegin(), w.rend(), is_space).base();
  return b < e ? std::string(b, e) : std::string();
}

std::vector<TokenAttention> token_attentions(const Captioner& captioner, const CaptionResult& result,
                                             const MapOptions& options) {
  const auto& a = result.cross_attention;
  if (a.steps != static_cast<std::int64_t>(result.token_ids.size()))
    throw InputError(fmt::format("token_attentions: the caption has {} tokens but its attention covers {} steps "
                                 "(was capture_cross_attention set?)",
                                 result.token_ids.size(), a.steps));
  const std::string kind = captioner.info().tokenizer_kind;
  const bool byte_level = kind == "bpe";
  // BERT's WordPiece marks a piece that continues the previous word with "##".
  const std::string_view prefix = kind == "wordpiece" ? "##" : "";
  const auto maps = token_maps(a, options);
  std::vector<TokenAttention> out;
  out.reserve(maps.size());
  for (std::size_t s = 0; s < maps.size(); ++s) {
    TokenAttention t;
    t.id = result.token_ids[s];
    t.token = s < result.tokens.size() ? result.tokens[s] : captioner.token_string(t.id);
    t.word = token_word(t.token, byte_level, prefix);
    const std::int64_t id[1] = {t.id};
    t.special = captioner.decode_tokens(id, /*skip_special_tokens=*/true).empty() &&
                !captioner.decode_tokens(id, /*skip_special_tokens=*/false).empty();
    t.map = maps[s];
    out.push_back(std::move(t));
  }
  return out;
}

bool is_content_word(const TokenAttention& token) {
  if (token.special) return false;
  std::string w;
  bool alnum = false;
  for (char c : token.word) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || u >= 0x80) alnum = true;
    w += static_cast<char>(std::tolower(u));
  }
  if (!alnum) return false;
  static const char* kFunctionWords[] = {"a",    "an",  "the",  "of",   "to",   "and",  "or",    "in",
                                         "on",   "at",  "with", "by",   "for",  "from", "is",    "are",
                                         "was",  "were", "be",  "it",   "its",  "this", "that",  "there",
                                         "some", "his", "her",  "their", "as"};
  return std::none_of(std::begin(kFunctionWords), std::end(kFunctionWords), [&](const char* f) { return w == f; });
}

AttentionMap main_words_map(std::span<const TokenAttention> tokens) {
  if (tokens.empty()) throw InputError("main_words_map: no tokens given");
  std::vector<AttentionMap> pick;
  for (const auto& t : tokens)
    if (is_content_word(t)) pick.push_back(t.map);
  if (pick.empty())
    for (const auto& t : tokens)
      if (!t.special) pick.push_back(t.map);
  if (pick.empty())
    for (const auto& t : tokens) pick.push_back(t.map);
  return mean_map(pick);
}

}  // namespace xcaption::viz
