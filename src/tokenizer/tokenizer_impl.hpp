// Internals of Tokenizer shared by its source files: the loaded pipeline (Tokenizer::Impl), run in
// tokenizer.cpp, and built by tokenizer_json.cpp (tokenizer.json) and tokenizer_files.cpp
// (transformers' per-file layouts: vocab.json + merges.txt, vocab.txt).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/tokenizer/bpe.hpp"
#include "src/tokenizer/normalizers.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "src/tokenizer/wordpiece.hpp"

namespace xcaption {
namespace tokenizer_detail {

struct AddedToken {
  std::string content;
  std::int64_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

enum class NormKind { Lowercase, Bert };

struct NormStep {
  NormKind kind;
  normalize::BertOptions bert;  // kind == Bert
};

enum class PreTokKind { ByteLevel, Whitespace, WhitespaceSplit, Bert };

struct PreTokStep {
  PreTokKind kind;
  bool add_prefix_space = true;
  bool use_regex = true;
};

enum class DecoderKind { Join, ByteLevel, WordPiece };

struct DecoderSpec {
  DecoderKind kind = DecoderKind::Join;  // Join: tokens joined by " " (no decoder)
  std::string prefix = "##";             // WordPiece
  bool cleanup = true;                   // WordPiece
};

// One item of a TemplateProcessing "single" template: the input sequence, or fixed ids.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<std::int64_t> ids;
};
using Template = std::vector<TemplatePiece>;

// Added tokens searched in a text: leftmost match, longest on ties (aho-corasick LeftmostLongest
// in tokenizers). Candidates are bucketed by first byte and sorted longest first.
struct MatchSet {
  std::vector<std::pair<std::string, const AddedToken*>> patterns;
  std::array<std::vector<std::size_t>, 256> by_first_byte;

  bool empty() const { return patterns.empty(); }
  void build();
};

struct Split {
  std::string text;
  std::int64_t id = -1;  // >= 0: an added token, already resolved
};

constexpr std::int64_t kMaxId = 0x7FFFFFFF;

/// A JSON file with errors that name the file and the key.
class JsonFile {
 public:
  using json = nlohmann::json;

  explicit JsonFile(std::filesystem::path path) : path_(std::move(path)) {}

  const std::filesystem::path& path() const { return path_; }
  std::string name() const { return path_.string(); }

  /// Throws FormatError when the file cannot be read or is not JSON.
  json parse() const;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const;

  const json& object(const json& j, const std::string& where) const;
  const json* optional(const json& obj, const char* key) const;  // null counts as absent
  const json& required(const json& obj, const char* key, const std::string& where) const;
  std::string string(const json& j, const std::string& where) const;
  std::int64_t integer(const json& j, const std::string& where) const;  // an id in [0, kMaxId]
  bool boolean(const json& obj, const char* key, bool fallback, const std::string& where) const;
  std::string type_of(const json& obj, const std::string& where) const;

 private:
  std::filesystem::path path_;
};

BpeModel::Vocab read_vocab(const JsonFile& file, const nlohmann::json& j, const std::string& where);

AddedToken parse_added_token(const JsonFile& f, const nlohmann::json& j, const std::string& where);

}  // namespace tokenizer_detail

struct Tokenizer::Impl {
  using AddedToken = tokenizer_detail::AddedToken;
  using Split = tokenizer_detail::Split;
  using MatchSet = tokenizer_detail::MatchSet;

  std::string source;
  std::string kind;  // "bpe" | "wordlevel" | "wordpiece"

  BpeModel::Vocab vocab;                     // the model's vocabulary
  std::unique_ptr<BpeModel> bpe;             // kind == "bpe"
  std::unique_ptr<WordPieceModel> wordpiece;  // kind == "wordpiece"
  std::string wordlevel_unk;                 // kind == "wordlevel"

  std::vector<AddedToken> added;  // stable storage: MatchSets point into it
  std::unordered_map<std::string, std::int64_t> added_ids;
  std::vector<std::optional<std::string>> id_to_token;
  std::vector<bool> special;  // by id
  MatchSet raw_set;           // added tokens with normalized == false
  MatchSet normalized_set;    // added tokens with normalized == true

  std::vector<tokenizer_detail::NormStep> normalizers;  // applied in order
  std::vector<tokenizer_detail::PreTokStep> pre_tokenizer;
  tokenizer_detail::DecoderSpec decoder;
  std::vector<tokenizer_detail::Template> post_templates;  // applied in order with specials

  std::string normalize(std::string_view text) const;

  // Splits `text` around the added tokens of `set` (ref: AddedVocabulary::find_matches).
  void split_added(const MatchSet& set, std::string_view text, std::vector<Split>& out) const;

  std::vector<std::string> pre_tokenize(std::string_view text) const;

  void tokenize_word(const std::string& word, std::vector<std::int64_t>& out) const;

  // Registers the added tokens (after the model vocab is known) and builds the lookup tables.
  void finish();

  // Adds a token unless one with the same content exists; resolves its id: an id in the model
  // vocab wins (as tokenizers does), else `wanted`, else the next free id.
  void add_token(AddedToken t, std::optional<std::int64_t> wanted, const std::string& file_name);
};

namespace tokenizer_detail {

/// tokenizer.json (Hugging Face `tokenizers` serialization). When the normalizer is a
/// BertNormalizer and `config` (tokenizer_config.json beside it) exists, its do_lower_case /
/// strip_accents / tokenize_chinese_chars replace the normalizer's, as BertTokenizerFast does.
std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(const std::filesystem::path& path,
                                                     const std::filesystem::path& config);

/// GPT-2 style vocab.json + merges.txt (+ side files) in `dir`.
std::shared_ptr<Tokenizer::Impl> load_vocab_merges(const std::filesystem::path& dir);

/// BERT style vocab.txt (+ side files) in `dir`, built like BertTokenizerFast.
std::shared_ptr<Tokenizer::Impl> load_vocab_txt(const std::filesystem::path& dir);

}  // namespace tokenizer_detail
}  // namespace xcaption
