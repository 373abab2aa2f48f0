#include "src/tokenizer/normalizers.hpp"

#include <vector>

#include "src/tokenizer/unicode.hpp"

namespace xcaption::normalize {

std::string bert(std::string_view text, const BertOptions& options) {
  std::vector<char32_t> cps;
  unicode::decode_utf8(text, cps);  // callers pass validated text
  std::vector<char32_t> work;
  work.reserve(cps.size());
  if (options.clean_text) {
    for (char32_t c : cps) {
      if (c == 0 || c == 0xFFFD || unicode::is_bert_control(c)) continue;
      work.push_back(unicode::is_space(c) ? U' ' : c);
    }
    cps.swap(work);
  }
  if (options.handle_chinese_chars) {
    work.clear();
    for (char32_t c : cps) {
      if (unicode::is_cjk_ideograph(c)) {
        work.insert(work.end(), {U' ', c, U' '});
      } else {
        work.push_back(c);
      }
    }
    cps.swap(work);
  }
  if (options.strip_accents.value_or(options.lowercase)) {
    unicode::nfd(cps, work);
    std::erase_if(work, unicode::is_nonspacing_mark);
    cps.swap(work);
  }
  std::string out;
  out.reserve(text.size() + 8);
  for (char32_t c : cps) {
    if (options.lowercase) {
      unicode::append_lowercase(out, c);
    } else {
      unicode::append_utf8(out, c);
    }
  }
  return out;
}

}  // namespace xcaption::normalize
