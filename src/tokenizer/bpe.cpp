#include "src/tokenizer/bpe.hpp"

#include <cstdio>
#include <queue>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/tokenizer/unicode.hpp"

namespace xcaption {

BpeModel::BpeModel(const Vocab& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const std::string& source)
    : vocab_(&vocab), options_(std::move(options)) {
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id > 0x7FFFFFFF) {
      throw FormatError(fmt::format("{}: vocab id {} of token '{}' is out of range [0, 2^31)",
                                    source, id, token));
    }
  }
  const std::size_t prefix_len = options_.continuing_subword_prefix.size();
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto ia = vocab.find(a);
    const auto ib = vocab.find(b);
    if (ia == vocab.end() || ib == vocab.end()) {
      throw FormatError(
          fmt::format("{}: merge {} ('{} {}') uses token '{}' that is not in the vocab", source,
                      rank, a, b, ia == vocab.end() ? a : b));
    }
    // ref: tokenizers BpeBuilder::build: the right part loses its continuing-subword prefix.
    if (prefix_len > 0 && b.compare(0, prefix_len, options_.continuing_subword_prefix) != 0) {
      throw FormatError(fmt::format("{}: merge {} ('{} {}'): right part lacks the prefix '{}'",
                                    source, rank, a, b, options_.continuing_subword_prefix));
    }
    const std::string merged = a + b.substr(prefix_len);
    const auto im = vocab.find(merged);
    if (im == vocab.end()) {
      throw FormatError(fmt::format("{}: merge {} ('{} {}') gives '{}', which is not in the vocab",
                                    source, rank, a, b, merged));
    }
    // A repeated pair keeps its last rank, as a map built from the list does in tokenizers.
    merges_[pair_key(ia->second, ib->second)] = {static_cast<std::int32_t>(rank), im->second};
  }
  if (options_.unk_token) {
    const auto it = vocab.find(*options_.unk_token);
    if (it != vocab.end()) unk_id_ = it->second;
    // tokenizers fails only when an unknown character actually occurs; so do we (tokenize()).
  }
}

void BpeModel::merge(std::vector<std::int64_t>& symbols) const {
  const auto n = static_cast<std::int32_t>(symbols.size());
  if (n < 2) return;
  std::vector<std::int32_t> prev(symbols.size()), next(symbols.size());
  std::vector<bool> alive(symbols.size(), true);
  for (std::int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    std::int32_t rank;
    std::int32_t pos;
    std::int64_t id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](std::int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const auto it = merges_.find(pair_key(symbols[pos], symbols[next[pos]]));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.id});
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    // Entries go stale when either side was merged since they were queued. Symbol strings only
    // grow, so a pair that still produces the same token is the same pair.
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const std::int32_t right = next[top.pos];
    const auto it = merges_.find(pair_key(symbols[top.pos], symbols[right]));
    if (it == merges_.end() || it->second.id != top.id) continue;
    symbols[top.pos] = top.id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push_pair(prev[top.pos]);
    push_pair(top.pos);
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < symbols.size(); ++i) {
    if (alive[i]) symbols[w++] = symbols[i];
  }
  symbols.resize(w);
}

std::vector<std::int64_t> BpeModel::tokenize_uncached(std::string_view word) const {
  std::vector<char32_t> cps;
  unicode::decode_utf8(word, cps);
  std::vector<std::int64_t> symbols;
  symbols.reserve(cps.size());
  std::int64_t pending_unk = -1;  // an unk waiting in case the next one fuses with it (-1: none)
  std::string piece;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    piece.clear();
    std::string ch;
    unicode::append_utf8(ch, cps[i]);
    if (i > 0) piece += options_.continuing_subword_prefix;
    piece += ch;
    if (i + 1 == cps.size()) piece += options_.end_of_word_suffix;
    const auto it = vocab_->find(piece);
    if (it != vocab_->end()) {
      if (pending_unk >= 0) symbols.push_back(pending_unk);
      pending_unk = -1;
      symbols.push_back(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      std::vector<std::int64_t> bytes;
      for (unsigned char b : piece) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        const auto ib = vocab_->find(name);
        if (ib == vocab_->end()) break;
        bytes.push_back(ib->second);
      }
      if (bytes.size() == piece.size()) {
        symbols.insert(symbols.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (!options_.unk_token) continue;  // tokenizers drops the character silently
    if (!unk_id_) {
      throw FormatError(
          fmt::format("BPE: unk_token '{}' is not in the vocabulary (needed for '{}')",
                      *options_.unk_token, ch));
    }
    if (pending_unk >= 0 && !options_.fuse_unk) symbols.push_back(pending_unk);
    pending_unk = *unk_id_;
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
  merge(symbols);
  return symbols;
}

void BpeModel::tokenize(std::string_view word, std::vector<std::int64_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const auto it = vocab_->find(std::string(word));
    if (it != vocab_->end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::int64_t> ids = tokenize_uncached(word);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace xcaption
