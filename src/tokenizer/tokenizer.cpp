// ref: huggingface/tokenizers (TokenizerImpl::encode_single_sequence / decode, AddedVocabulary,
// pre_tokenizers::{byte_level, whitespace, bert}, normalizers::bert, models::{bpe, wordlevel,
// wordpiece}, decoders::{byte_level, wordpiece}, processors::template). Loading lives in
// tokenizer_json.cpp and tokenizer_files.cpp.
#include "src/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <unordered_set>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/tokenizer/pre_tokenizers.hpp"
#include "src/tokenizer/tokenizer_impl.hpp"
#include "src/tokenizer/unicode.hpp"

namespace xcaption {

using tokenizer_detail::AddedToken;
using tokenizer_detail::DecoderKind;
using tokenizer_detail::NormKind;
using tokenizer_detail::PreTokKind;
using tokenizer_detail::Split;
using tokenizer_detail::Template;
using tokenizer_detail::TemplatePiece;

void tokenizer_detail::MatchSet::build() {
  for (auto& bucket : by_first_byte) bucket.clear();
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    by_first_byte[static_cast<unsigned char>(patterns[i].first[0])].push_back(i);
  }
  for (auto& bucket : by_first_byte) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](std::size_t a, std::size_t b) {
      return patterns[a].first.size() > patterns[b].first.size();
    });
  }
}

namespace {

// ---- small UTF-8 helpers for the added-token boundary checks -----------------------------

char32_t first_cp(std::string_view s) {
  std::vector<char32_t> cps;
  std::size_t len = 1;
  const auto b = static_cast<unsigned char>(s[0]);
  if (b >= 0xF0)
    len = 4;
  else if (b >= 0xE0)
    len = 3;
  else if (b >= 0xC0)
    len = 2;
  unicode::decode_utf8(s.substr(0, std::min(len, s.size())), cps);
  return cps.empty() ? 0 : cps[0];
}

std::size_t last_cp_start(std::string_view s) {
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

char32_t last_cp(std::string_view s) { return first_cp(s.substr(last_cp_start(s))); }

// Byte offset where the trailing whitespace of `s` starts (s.size() when none).
std::size_t trailing_space_start(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    const std::size_t start = last_cp_start(s.substr(0, end));
    if (!unicode::is_space(first_cp(s.substr(start, end - start)))) break;
    end = start;
  }
  return end;
}

// Length in bytes of the leading whitespace of `s`.
std::size_t leading_space_length(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = first_cp(s.substr(i));
    if (!unicode::is_space(c)) break;
    i += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return i;
}

}  // namespace

// ---- the pipeline ----------------------------------------------------------------------------

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  std::string out(text);
  for (const auto& step : normalizers) {
    switch (step.kind) {
      case NormKind::Lowercase:
        out = unicode::to_lowercase(out);
        break;
      case NormKind::Bert:
        out = normalize::bert(out, step.bert);
        break;
    }
  }
  return out;
}

void Tokenizer::Impl::split_added(const MatchSet& set, std::string_view text,
                                  std::vector<Split>& out) const {
  if (text.empty()) return;
  if (set.empty()) {
    out.push_back({std::string(text), -1});
    return;
  }
  struct Match {
    std::size_t start, stop;
    const AddedToken* token;
  };
  std::vector<Match> matches;
  for (std::size_t pos = 0; pos < text.size();) {
    const AddedToken* found = nullptr;
    std::size_t len = 0;
    for (std::size_t index : set.by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const std::string& p = set.patterns[index].first;
      if (text.compare(pos, p.size(), p) == 0) {
        found = set.patterns[index].second;
        len = p.size();
        break;
      }
    }
    if (found) {
      matches.push_back({pos, pos + len, found});
      pos += len;
    } else {
      ++pos;
    }
  }
  std::size_t start_offset = 0;
  for (const Match& m : matches) {
    std::size_t start = m.start;
    std::size_t stop = m.stop;
    if (start < start_offset) continue;  // inside whitespace an rstrip already took
    const AddedToken& tok = *m.token;
    if (tok.single_word) {
      const bool space_before = start == 0 || !unicode::is_word(last_cp(text.substr(0, start)));
      const bool space_after =
          stop == text.size() || !unicode::is_word(first_cp(text.substr(stop)));
      if (!space_before || !space_after) continue;
    }
    if (tok.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (tok.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start)
      out.push_back({std::string(text.substr(start_offset, start - start_offset)), -1});
    out.push_back({std::string(text.substr(start, stop - start)), tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({std::string(text.substr(start_offset)), -1});
}

std::vector<std::string> Tokenizer::Impl::pre_tokenize(std::string_view text) const {
  std::vector<std::string> words{std::string(text)};
  for (const auto& step : pre_tokenizer) {
    std::vector<std::string> next;
    for (const std::string& word : words) {
      switch (step.kind) {
        case PreTokKind::ByteLevel: {
          // ref: ByteLevel::pre_tokenize: the prefix space is added to every split.
          std::string w = (step.add_prefix_space && word[0] != ' ') ? " " + word : word;
          std::vector<std::string> pieces;
          if (step.use_regex)
            pieces = pretok::split_gpt2(w);
          else
            pieces.push_back(std::move(w));
          for (const std::string& p : pieces) next.push_back(pretok::byte_level_encode(p));
          break;
        }
        case PreTokKind::Whitespace:
          for (auto& p : pretok::split_whitespace(word)) next.push_back(std::move(p));
          break;
        case PreTokKind::WhitespaceSplit:
          for (auto& p : pretok::split_on_whitespace(word)) next.push_back(std::move(p));
          break;
        case PreTokKind::Bert:
          for (auto& p : pretok::split_bert(word)) next.push_back(std::move(p));
          break;
      }
    }
    std::erase_if(next, [](const std::string& s) { return s.empty(); });
    words = std::move(next);
  }
  return words;
}

void Tokenizer::Impl::tokenize_word(const std::string& word, std::vector<std::int64_t>& out) const {
  if (bpe) {
    bpe->tokenize(word, out);
    return;
  }
  if (wordpiece) {
    wordpiece->tokenize(word, out);
    return;
  }
  const auto it = vocab.find(word);
  if (it != vocab.end()) {
    out.push_back(it->second);
    return;
  }
  const auto unk = vocab.find(wordlevel_unk);
  if (unk == vocab.end()) {
    throw FormatError(fmt::format(
        "tokenizer '{}': word '{}' is not in the WordLevel vocabulary and neither is its "
        "unk_token '{}'",
        source, word, wordlevel_unk));
  }
  out.push_back(unk->second);
}

void Tokenizer::Impl::finish() {
  std::int64_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max(size, id + 1);
  for (const AddedToken& t : added) size = std::max(size, t.id + 1);
  id_to_token.assign(static_cast<std::size_t>(size), std::nullopt);
  for (const auto& [token, id] : vocab) id_to_token[static_cast<std::size_t>(id)] = token;
  std::unordered_set<std::string> special_contents;
  for (const AddedToken& t : added) {
    id_to_token[static_cast<std::size_t>(t.id)] = t.content;  // added tokens win, as in HF
    added_ids[t.content] = t.id;
    if (t.special) special_contents.insert(t.content);
  }
  special.assign(static_cast<std::size_t>(size), false);
  for (std::size_t id = 0; id < id_to_token.size(); ++id) {
    special[id] = id_to_token[id] && special_contents.count(*id_to_token[id]) > 0;
  }
  for (const AddedToken& t : added) {
    if (t.normalized)
      normalized_set.patterns.emplace_back(normalize(t.content), &t);
    else
      raw_set.patterns.emplace_back(t.content, &t);
  }
  std::erase_if(normalized_set.patterns, [](const auto& p) { return p.first.empty(); });
  raw_set.build();
  normalized_set.build();
}

void Tokenizer::Impl::add_token(AddedToken t, std::optional<std::int64_t> wanted,
                                const std::string& file_name) {
  if (t.content.empty()) return;
  for (AddedToken& existing : added) {
    if (existing.content == t.content) {
      existing.special = existing.special || t.special;
      return;
    }
  }
  const auto in_vocab = vocab.find(t.content);
  if (in_vocab != vocab.end()) {
    t.id = in_vocab->second;
  } else if (wanted) {
    for (const auto& [token, id] : vocab) {
      if (id == *wanted) {
        throw FormatError(fmt::format(
            "tokenizer file '{}': added token '{}' has id {}, which the vocab gives to '{}'",
            file_name, t.content, *wanted, token));
      }
    }
    t.id = *wanted;
  } else {
    std::int64_t next = 0;
    for (const auto& [token, id] : vocab) next = std::max(next, id + 1);
    for (const AddedToken& a : added) next = std::max(next, a.id + 1);
    t.id = next;
  }
  added.push_back(std::move(t));
}

// ---- public API ----------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

std::vector<std::int64_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<char32_t> scratch;
  if (const auto bad = unicode::decode_utf8(text, scratch)) {
    throw InputError(fmt::format("Tokenizer::encode: text is not valid UTF-8 (byte {} of {})", *bad,
                                 text.size()));
  }
  const Impl& m = *impl_;
  std::vector<Split> raw;
  m.split_added(m.raw_set, text, raw);
  std::vector<std::int64_t> ids;
  std::vector<Split> normalized;
  for (const Split& piece : raw) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    normalized.clear();
    m.split_added(m.normalized_set, m.normalize(piece.text), normalized);
    for (const Split& sub : normalized) {
      if (sub.id >= 0) {
        ids.push_back(sub.id);
        continue;
      }
      for (const std::string& word : m.pre_tokenize(sub.text)) m.tokenize_word(word, ids);
    }
  }
  if (add_special_tokens) {
    for (const Template& tmpl : m.post_templates) {
      std::vector<std::int64_t> out;
      for (const TemplatePiece& p : tmpl) {
        if (p.is_sequence)
          out.insert(out.end(), ids.begin(), ids.end());
        else
          out.insert(out.end(), p.ids.begin(), p.ids.end());
      }
      ids = std::move(out);
    }
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const std::int64_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<const std::string*> tokens;
  tokens.reserve(ids.size());
  for (std::int64_t id : ids) {
    if (id < 0 || id >= static_cast<std::int64_t>(m.id_to_token.size())) continue;
    const auto& token = m.id_to_token[static_cast<std::size_t>(id)];
    if (!token) continue;
    if (skip_special_tokens && m.special[static_cast<std::size_t>(id)]) continue;
    tokens.push_back(&*token);
  }
  std::string out;
  if (m.decoder.kind == DecoderKind::WordPiece) {
    return decode_wordpiece(tokens, m.decoder.prefix, m.decoder.cleanup);
  }
  if (m.decoder.kind == DecoderKind::Join) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += *tokens[i];
    }
    return out;
  }
  // ref: ByteLevel decoder: each token's characters map back to bytes; a token with a character
  // outside the byte alphabet contributes its UTF-8 bytes unchanged.
  std::string bytes;
  std::vector<char32_t> cps;
  for (const std::string* t : tokens) {
    unicode::decode_utf8(*t, cps);
    std::string mapped;
    bool all_mapped = true;
    for (char32_t c : cps) {
      const int b = pretok::char_to_byte(c);
      if (b < 0) {
        all_mapped = false;
        break;
      }
      mapped.push_back(static_cast<char>(b));
    }
    bytes += all_mapped ? mapped : *t;
  }
  return unicode::utf8_lossy(bytes);
}

std::string Tokenizer::token_string(std::int64_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= static_cast<std::int64_t>(m.id_to_token.size()) ||
      !m.id_to_token[static_cast<std::size_t>(id)]) {
    throw InputError(fmt::format("token id {} is out of range: tokenizer '{}' has ids [0, {})", id,
                                 m.source, m.id_to_token.size()));
  }
  return *m.id_to_token[static_cast<std::size_t>(id)];
}

std::optional<std::int64_t> Tokenizer::token_id(std::string_view token) const {
  const Impl& m = *impl_;
  const std::string key(token);
  if (const auto it = m.added_ids.find(key); it != m.added_ids.end()) return it->second;
  if (const auto it = m.vocab.find(key); it != m.vocab.end()) return it->second;
  return std::nullopt;
}

std::int64_t Tokenizer::vocab_size() const {
  return static_cast<std::int64_t>(impl_->id_to_token.size());
}

bool Tokenizer::is_special(std::int64_t id) const {
  const Impl& m = *impl_;
  return id >= 0 && id < static_cast<std::int64_t>(m.special.size()) &&
         m.special[static_cast<std::size_t>(id)];
}

std::string Tokenizer::kind() const { return impl_->kind; }

std::string Tokenizer::source() const { return impl_->source; }

}  // namespace xcaption
