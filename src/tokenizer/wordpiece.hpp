// The WordPiece model and decoder of Hugging Face `tokenizers` (ref: tokenizers/src/models/
// wordpiece, decoders/wordpiece.rs): greedy longest-match-first pieces, "##" on every piece
// after a word's first; decoding glues the "##" pieces back onto the previous token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace xcaption {

struct WordPieceOptions {
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
  std::size_t max_input_chars_per_word = 100;
};

class WordPieceModel {
 public:
  using Vocab = std::unordered_map<std::string, std::int64_t>;

  /// `vocab` must outlive the model (the Tokenizer owns both). `source` names the tokenizer in
  /// error messages.
  WordPieceModel(const Vocab& vocab, WordPieceOptions options, std::string source);

  /// Appends the ids of `word` (one pre-token): the longest vocab entry that starts the word,
  /// then the longest "##"-prefixed entry that continues it, and so on. A word longer than
  /// max_input_chars_per_word code points, or with a part no entry covers, becomes the single
  /// unk token. Throws FormatError when that token is needed but is not in the vocabulary.
  void tokenize(std::string_view word, std::vector<std::int64_t>& out) const;

  const WordPieceOptions& options() const { return options_; }

 private:
  void push_unk(std::string_view word, std::vector<std::int64_t>& out) const;

  const Vocab* vocab_;
  WordPieceOptions options_;
  std::optional<std::int64_t> unk_id_;
  std::string source_;
};

/// The WordPiece decoder's per-token cleanup ("cleanup": true): " ." -> ".", " ?" -> "?",
/// " !" -> "!", " ," -> ",", " ' " -> "'", " n't" -> "n't", " 'm" -> "'m", " do not" -> " don't",
/// " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re", in that order.
std::string wordpiece_cleanup(std::string token);

/// The WordPiece decoder: every token after the first loses a leading `prefix` when it has one,
/// else gets a leading space; with `cleanup` each token (with its space) then goes through
/// wordpiece_cleanup; the results are concatenated.
std::string decode_wordpiece(const std::vector<const std::string*>& tokens, std::string_view prefix,
                             bool cleanup);

}  // namespace xcaption
