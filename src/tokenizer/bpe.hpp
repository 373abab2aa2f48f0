// The byte-pair-encoding model of Hugging Face `tokenizers` (ref: tokenizers/src/models/bpe):
// a word's characters become symbols, then adjacent pairs are merged lowest rank first (leftmost
// on ties) until no listed pair remains.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace xcaption {

struct BpeOptions {
  std::optional<std::string> unk_token;   // token for characters missing from the vocab
  std::string continuing_subword_prefix;  // "" = none
  std::string end_of_word_suffix;         // "" = none
  bool fuse_unk = false;                  // consecutive unknown characters -> one unk
  bool byte_fallback = false;             // unknown characters -> "<0xAB>" byte tokens
  bool ignore_merges = false;             // a word found whole in the vocab is one token
};

class BpeModel {
 public:
  using Vocab = std::unordered_map<std::string, std::int64_t>;

  /// Builds the merge table. `source` names the file in error messages. Throws FormatError when a
  /// merge's parts or result are not in `vocab`, or when the unk token is missing from it.
  BpeModel(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           BpeOptions options, const std::string& source);

  /// Appends the ids of `word` (one pre-token, already byte-level mapped where that applies).
  /// Safe to call concurrently: the word cache is guarded by a mutex.
  void tokenize(std::string_view word, std::vector<std::int64_t>& out) const;

  /// The merge step alone, on symbol ids (exposed for tests).
  void merge(std::vector<std::int64_t>& symbols) const;

  std::size_t merge_count() const { return merges_.size(); }

 private:
  struct MergeTarget {
    std::int32_t rank;
    std::int64_t id;
  };
  static std::uint64_t pair_key(std::int64_t a, std::int64_t b) {
    return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b);
  }
  std::vector<std::int64_t> tokenize_uncached(std::string_view word) const;

  const Vocab* vocab_;  // owned by the Tokenizer that owns this model
  std::unordered_map<std::uint64_t, MergeTarget> merges_;
  BpeOptions options_;
  std::optional<std::int64_t> unk_id_;

  static constexpr std::size_t kCacheCapacity = 10000;
  static constexpr std::size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache_;
};

}  // namespace xcaption
