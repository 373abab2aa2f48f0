#include "src/tokenizer/unicode.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "src/tokenizer/unicode_tables.hpp"

namespace xcaption::unicode {
namespace {

using unicode_tables::CodepointRange;

template <std::size_t N>
bool in_table(const CodepointRange (&table)[N], char32_t c) {
  const auto cp = static_cast<std::uint32_t>(c);
  // First range whose last >= cp; inside it when first <= cp.
  const auto* it =
      std::lower_bound(std::begin(table), std::end(table), cp,
                       [](const CodepointRange& r, std::uint32_t v) { return r.last < v; });
  return it != std::end(table) && it->first <= cp;
}

// Length a well-formed sequence starting with `lead` must have (0 for a byte that cannot start
// one), and the allowed range of its second byte (RFC 3629 / Unicode Table 3-7).
struct LeadInfo {
  int length;
  unsigned char second_lo;
  unsigned char second_hi;
};

LeadInfo lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes at `p` (of `n` available) that form a well-formed prefix of a sequence, and
// whether the sequence is complete. A result of {0, false} means the first byte is invalid.
struct PrefixResult {
  int valid;      // bytes that belong to a well-formed (possibly incomplete) prefix
  bool complete;  // the prefix is a whole character
};

PrefixResult valid_prefix(const unsigned char* p, std::size_t n) {
  const LeadInfo info = lead_info(p[0]);
  if (info.length == 0) return {0, false};
  if (info.length == 1) return {1, true};
  int valid = 1;
  for (int k = 1; k < info.length; ++k) {
    if (static_cast<std::size_t>(k) >= n) return {valid, false};
    const unsigned char lo = k == 1 ? info.second_lo : 0x80;
    const unsigned char hi = k == 1 ? info.second_hi : 0xBF;
    if (p[k] < lo || p[k] > hi) return {valid, false};
    ++valid;
  }
  return {valid, true};
}

char32_t decode_at(const unsigned char* p, int length) {
  switch (length) {
    case 1:
      return p[0];
    case 2:
      return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3:
      return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
             (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

}  // namespace

bool is_letter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return in_table(unicode_tables::kLetter, c);
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_table(unicode_tables::kNumber, c);
}

bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return in_table(unicode_tables::kSpace, c);
}

bool is_word(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  return in_table(unicode_tables::kWord, c);
}

bool is_bert_punctuation(char32_t c) {
  if (c < 0x80) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  }
  return in_table(unicode_tables::kBertPunctuation, c);
}

bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return in_table(unicode_tables::kBertControl, c);
}

bool is_nonspacing_mark(char32_t c) {
  return c >= 0x300 && in_table(unicode_tables::kNonspacingMark, c);
}

bool is_cjk_ideograph(char32_t c) {
  // ref: tokenizers normalizers/bert.rs is_chinese_char (0x2B920, where transformers' Python
  // BasicTokenizer has 0x2B820).
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

unsigned combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const auto cp = static_cast<std::uint32_t>(c);
  const auto& table = unicode_tables::kCombiningClass;
  const auto* it = std::lower_bound(
      std::begin(table), std::end(table), cp,
      [](const unicode_tables::CombiningClassRun& r, std::uint32_t v) { return r.last < v; });
  return it != std::end(table) && it->first <= cp ? it->ccc : 0;
}

namespace {

// Hangul syllable arithmetic (The Unicode Standard, section 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr char32_t kSCount = 19 * kNCount;

void decompose(char32_t c, std::vector<char32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (c >= 0xC0) {
    const auto cp = static_cast<std::uint32_t>(c);
    const auto& table = unicode_tables::kDecomposition;
    const auto* it = std::lower_bound(
        std::begin(table), std::end(table), cp,
        [](const unicode_tables::Decomposition& d, std::uint32_t v) { return d.cp < v; });
    if (it != std::end(table) && it->cp == cp) {
      decompose(static_cast<char32_t>(it->first), out);
      if (it->second != 0) decompose(static_cast<char32_t>(it->second), out);
      return;
    }
  }
  out.push_back(c);
}

}  // namespace

void nfd(const std::vector<char32_t>& src, std::vector<char32_t>& dst) {
  dst.clear();
  dst.reserve(src.size());
  for (char32_t c : src) decompose(c, dst);
  // Canonical ordering: each run of non-starters sorted by combining class, stably.
  std::size_t i = 0;
  while (i < dst.size()) {
    if (combining_class(dst[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < dst.size() && combining_class(dst[j]) != 0) ++j;
    std::stable_sort(dst.begin() + static_cast<std::ptrdiff_t>(i),
                     dst.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::optional<std::size_t> decode_utf8(std::string_view text, std::vector<char32_t>& out) {
  out.clear();
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t i = 0;
  while (i < text.size()) {
    const PrefixResult r = valid_prefix(p + i, text.size() - i);
    if (!r.complete) return i;
    out.push_back(decode_at(p + i, r.valid));
    i += static_cast<std::size_t>(r.valid);
  }
  return std::nullopt;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const PrefixResult r = valid_prefix(p + i, bytes.size() - i);
    if (r.complete) {
      out.append(bytes.substr(i, static_cast<std::size_t>(r.valid)));
      i += static_cast<std::size_t>(r.valid);
    } else {
      // One U+FFFD per maximal subpart: the well-formed prefix, or the single bad byte.
      append_utf8(out, 0xFFFD);
      i += static_cast<std::size_t>(std::max(r.valid, 1));
    }
  }
  return out;
}

void append_lowercase(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    return;
  }
  const auto cp = static_cast<std::uint32_t>(c);
  for (const auto& m : unicode_tables::kLowercaseMulti) {
    if (m.cp == cp) {
      for (std::uint32_t low : m.lower) {
        if (low == 0) break;
        append_utf8(out, low);
      }
      return;
    }
  }
  const auto& table = unicode_tables::kLowercase;
  const auto* it = std::lower_bound(
      std::begin(table), std::end(table), cp,
      [](const unicode_tables::LowercaseRun& r, std::uint32_t v) { return r.last < v; });
  if (it != std::end(table) && it->first <= cp && (cp - it->first) % it->stride == 0) {
    append_utf8(out, static_cast<char32_t>(static_cast<std::int64_t>(cp) + it->delta));
    return;
  }
  append_utf8(out, c);
}

std::string to_lowercase(std::string_view text) {
  std::vector<char32_t> cps;
  decode_utf8(text, cps);  // callers pass validated text
  std::string out;
  out.reserve(text.size());
  for (char32_t c : cps) append_lowercase(out, c);
  return out;
}

}  // namespace xcaption::unicode
