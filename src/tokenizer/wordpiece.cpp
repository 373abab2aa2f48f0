#include "src/tokenizer/wordpiece.hpp"

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {
namespace {

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::size_t pos = s.find(from);
  if (pos == std::string::npos) return;
  std::string out;
  std::size_t done = 0;
  for (; pos != std::string::npos; pos = s.find(from, done)) {
    out.append(s, done, pos - done);
    out += to;
    done = pos + from.size();
  }
  out.append(s, done, std::string::npos);
  s = std::move(out);
}

}  // namespace

WordPieceModel::WordPieceModel(const Vocab& vocab, WordPieceOptions options, std::string source)
    : vocab_(&vocab), options_(std::move(options)), source_(std::move(source)) {
  if (const auto it = vocab.find(options_.unk_token); it != vocab.end()) unk_id_ = it->second;
}

void WordPieceModel::push_unk(std::string_view word, std::vector<std::int64_t>& out) const {
  if (!unk_id_) {
    throw FormatError(fmt::format(
        "tokenizer '{}': word '{}' needs the WordPiece unk_token '{}', which is not in the "
        "vocabulary",
        source_, word, options_.unk_token));
  }
  out.push_back(*unk_id_);
}

void WordPieceModel::tokenize(std::string_view word, std::vector<std::int64_t>& out) const {
  std::size_t chars = 0;
  for (char c : word) chars += is_continuation_byte(c) ? 0 : 1;
  if (chars > options_.max_input_chars_per_word) {
    push_unk(word, out);
    return;
  }
  const std::size_t first_piece = out.size();
  std::string candidate;
  std::size_t start = 0;
  while (start < word.size()) {
    std::size_t end = word.size();
    bool found = false;
    while (start < end) {
      candidate.assign(start > 0 ? options_.continuing_subword_prefix : std::string());
      candidate.append(word.substr(start, end - start));
      if (const auto it = vocab_->find(candidate); it != vocab_->end()) {
        out.push_back(it->second);
        found = true;
        break;
      }
      do {  // one code point shorter
        --end;
      } while (end > start && is_continuation_byte(word[end]));
    }
    if (!found) {  // one uncovered part makes the whole word unknown
      out.resize(first_piece);
      push_unk(word, out);
      return;
    }
    start = end;
  }
}

std::string wordpiece_cleanup(std::string token) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},       {" ?", "?"},   {" !", "!"},   {" ,", ","},
      {" ' ", "'"},      {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"},
      {" 's", "'s"},     {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) replace_all(token, from, to);
  return token;
}

std::string decode_wordpiece(const std::vector<const std::string*>& tokens, std::string_view prefix,
                             bool cleanup) {
  std::string out;
  std::string piece;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& token = *tokens[i];
    if (i == 0) {
      piece = token;
    } else if (token.compare(0, prefix.size(), prefix) == 0) {
      piece = token.substr(prefix.size());
    } else {
      piece = " " + token;
    }
    out += cleanup ? wordpiece_cleanup(std::move(piece)) : piece;
  }
  return out;
}

}  // namespace xcaption
