// Text <-> token ids, reproducing Hugging Face `tokenizers` for the layouts xcaption's models use:
// byte-level BPE (GPT-2), WordLevel and BERT WordPiece, from tokenizer.json, vocab.json +
// merges.txt or vocab.txt.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption {

/// An immutable tokenizer. Copies share the loaded data; every const member may be called
/// concurrently from several threads.
///
/// Supported tokenizer.json components (anything else is a FormatError at load):
///   model          BPE (no dropout), WordLevel, WordPiece
///   normalizer     null, Lowercase, BertNormalizer, Sequence of those
///   pre_tokenizer  null, ByteLevel, Whitespace, WhitespaceSplit, BertPreTokenizer, Sequence of
///                  those
///   post_processor null, ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing,
///                  Sequence
///   decoder        null (tokens joined by " "), ByteLevel, WordPiece, Sequence of one kind
///   added_tokens   with their special / single_word / lstrip / rstrip / normalized flags
/// A BertNormalizer at the top level of a WordPiece tokenizer takes do_lower_case /
/// strip_accents / tokenize_chinese_chars from a tokenizer_config.json beside it (class
/// BertTokenizer or unnamed), as transformers' BertTokenizerFast does.
class Tokenizer {
 public:
  /// Loads tokenizer.json from `model_dir` when present, else vocab.json + merges.txt (GPT-2
  /// style byte-level BPE), else vocab.txt (BERT WordPiece, built like BertTokenizerFast:
  /// do_lower_case, strip_accents, tokenize_chinese_chars and the special tokens from the side
  /// files, [CLS] $A [SEP]), each with special_tokens_map.json / tokenizer_config.json /
  /// added_tokens.json when present. Throws FormatError naming the file and the problem (missing,
  /// bad JSON, wrong field type, unsupported component, merge referring to an unknown token).
  static Tokenizer load(const std::filesystem::path& model_dir);
  /// load(), then `special_tokens` added in order as a processor's add_special_tokens adds them
  /// (Florence2Processor adds its <od>, <loc_N>, ... tokens at load time): one already present
  /// keeps its id and becomes special, the others take the next free ids.
  static Tokenizer load(const std::filesystem::path& model_dir, std::span<const std::string> special_tokens);

  /// Token ids of `text` (UTF-8; throws InputError naming the byte offset when it is not).
  /// `add_special_tokens` applies the post-processor's template (e.g. BOS/EOS) as HF does.
  std::vector<std::int64_t> encode(std::string_view text, bool add_special_tokens = false) const;

  /// Text of `ids`. Ids outside [0, vocab_size()) or without a token are skipped, as HF does;
  /// with `skip_special_tokens` so are special added tokens. Byte sequences that are not valid
  /// UTF-8 come out with U+FFFD replacements (one per maximal ill-formed subpart).
  std::string decode(std::span<const std::int64_t> ids, bool skip_special_tokens) const;

  /// The raw vocabulary entry of `id`, e.g. "Ġcat". Throws InputError when `id` has no token.
  std::string token_string(std::int64_t id) const;

  /// Id of a raw vocabulary entry or added token, if any.
  std::optional<std::int64_t> token_id(std::string_view token) const;

  /// One past the largest id, added tokens included (equals the number of tokens when ids are
  /// contiguous, as in every HF tokenizer).
  std::int64_t vocab_size() const;

  /// True for added tokens marked special (what decode(..., true) drops).
  bool is_special(std::int64_t id) const;

  /// "bpe", "wordlevel" or "wordpiece".
  std::string kind() const;

  /// The file(s) it was loaded from, comma separated.
  std::string source() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace xcaption
