// ref: huggingface/tokenizers (TokenizerImpl::encode_single_sequence / decode, AddedVocabulary,
// pre_tokenizers::{byte_level, whitespace}, models::{bpe, wordlevel}, processors::template) and
// transformers' GPT2Converter for the vocab.json + merges.txt layout.
#include "src/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/tokenizer/bpe.hpp"
#include "src/tokenizer/pre_tokenizers.hpp"
#include "src/tokenizer/unicode.hpp"

namespace xcaption {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct AddedToken {
  std::string content;
  std::int64_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

enum class PreTokKind { ByteLevel, Whitespace, WhitespaceSplit };

struct PreTokStep {
  PreTokKind kind;
  bool add_prefix_space = true;
  bool use_regex = true;
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
  void build() {
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
};

struct Split {
  std::string text;
  std::int64_t id = -1;  // >= 0: an added token, already resolved
};

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

// ---- JSON access with errors that name the file and the key ------------------------------

constexpr std::int64_t kMaxId = 0x7FFFFFFF;

class JsonFile {
 public:
  explicit JsonFile(fs::path path) : path_(std::move(path)) {}

  const fs::path& path() const { return path_; }
  std::string name() const { return path_.string(); }

  json parse() const {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw FormatError(fmt::format("tokenizer file '{}' cannot be opened", name()));
    std::stringstream buffer;
    buffer << in.rdbuf();
    try {
      return json::parse(buffer.str());
    } catch (const json::parse_error& e) {
      throw FormatError(fmt::format("tokenizer file '{}' is not valid JSON: {}", name(), e.what()));
    }
  }

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw FormatError(fmt::format("tokenizer file '{}': {}: {}", name(), where, what));
  }

  const json& object(const json& j, const std::string& where) const {
    if (!j.is_object()) fail(where, fmt::format("expected an object, got {}", j.type_name()));
    return j;
  }

  const json* optional(const json& obj, const char* key) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }

  const json& required(const json& obj, const char* key, const std::string& where) const {
    const auto it = obj.find(key);
    if (it == obj.end()) fail(where, fmt::format("missing key '{}'", key));
    return *it;
  }

  std::string string(const json& j, const std::string& where) const {
    if (!j.is_string()) fail(where, fmt::format("expected a string, got {}", j.type_name()));
    return j.get<std::string>();
  }

  std::int64_t integer(const json& j, const std::string& where) const {
    if (!j.is_number_integer()) fail(where, fmt::format("expected an integer, got {}", j.dump()));
    const auto v = j.get<std::int64_t>();
    if (v < 0 || v > kMaxId)
      fail(where, fmt::format("expected an id in [0, {}], got {}", kMaxId, j.dump()));
    return v;
  }

  bool boolean(const json& obj, const char* key, bool fallback, const std::string& where) const {
    const json* v = optional(obj, key);
    if (!v) return fallback;
    if (!v->is_boolean())
      fail(where + "." + key, fmt::format("expected a boolean, got {}", v->dump()));
    return v->get<bool>();
  }

  std::string type_of(const json& obj, const std::string& where) const {
    return string(required(object(obj, where), "type", where), where + ".type");
  }

 private:
  fs::path path_;
};

BpeModel::Vocab read_vocab(const JsonFile& file, const json& j, const std::string& where) {
  file.object(j, where);
  BpeModel::Vocab vocab;
  vocab.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    vocab.emplace(token, file.integer(id, fmt::format("{}['{}']", where, token)));
  }
  return vocab;
}

}  // namespace

// ---- the loaded tokenizer ---------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;
  std::string kind;  // "bpe" | "wordlevel"

  BpeModel::Vocab vocab;          // the model's vocabulary
  std::unique_ptr<BpeModel> bpe;  // kind == "bpe"
  std::string wordlevel_unk;      // kind == "wordlevel"

  std::vector<AddedToken> added;  // stable storage: MatchSets point into it
  std::unordered_map<std::string, std::int64_t> added_ids;
  std::vector<std::optional<std::string>> id_to_token;
  std::vector<bool> special;  // by id
  MatchSet raw_set;           // added tokens with normalized == false
  MatchSet normalized_set;    // added tokens with normalized == true

  bool lowercase = false;  // the only normalizer supported (Lowercase, in any Sequence)
  std::vector<PreTokStep> pre_tokenizer;
  bool byte_level_decoder = false;
  std::vector<Template> post_templates;  // applied in order when add_special_tokens

  std::string normalize(std::string_view text) const {
    return lowercase ? unicode::to_lowercase(text) : std::string(text);
  }

  // Splits `text` around the added tokens of `set` (ref: AddedVocabulary::find_matches).
  void split_added(const MatchSet& set, std::string_view text, std::vector<Split>& out) const {
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

  std::vector<std::string> pre_tokenize(std::string_view text) const {
    std::vector<std::string> words{std::string(text)};
    for (const PreTokStep& step : pre_tokenizer) {
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
        }
      }
      std::erase_if(next, [](const std::string& s) { return s.empty(); });
      words = std::move(next);
    }
    return words;
  }

  void tokenize_word(const std::string& word, std::vector<std::int64_t>& out) const {
    if (bpe) {
      bpe->tokenize(word, out);
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

  // Registers the added tokens (after the model vocab is known) and builds the lookup tables.
  void finish() {
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

  // Adds a token unless one with the same content exists; resolves its id: an id in the model
  // vocab wins (as tokenizers does), else `wanted`, else the next free id.
  void add_token(AddedToken t, std::optional<std::int64_t> wanted, const std::string& file_name) {
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
};

namespace {

using Impl = Tokenizer::Impl;

// ---- tokenizer.json ------------------------------------------------------------------------

void parse_normalizer(const JsonFile& f, const json& j, const std::string& where, Impl& impl) {
  const std::string type = f.type_of(j, where);
  if (type == "Lowercase") {
    impl.lowercase = true;
  } else if (type == "Sequence") {
    const json& list = f.required(j, "normalizers", where);
    if (!list.is_array()) f.fail(where + ".normalizers", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_normalizer(f, list[i], fmt::format("{}.normalizers[{}]", where, i), impl);
    }
  } else {
    f.fail(where,
           fmt::format("normalizer type '{}' is not supported (supported: Lowercase, Sequence)",
                       type));
  }
}

void parse_pre_tokenizer(const JsonFile& f, const json& j, const std::string& where, Impl& impl) {
  const std::string type = f.type_of(j, where);
  if (type == "ByteLevel") {
    PreTokStep step{PreTokKind::ByteLevel};
    step.add_prefix_space = f.boolean(j, "add_prefix_space", true, where);
    step.use_regex = f.boolean(j, "use_regex", true, where);
    impl.pre_tokenizer.push_back(step);
  } else if (type == "Whitespace") {
    impl.pre_tokenizer.push_back({PreTokKind::Whitespace});
  } else if (type == "WhitespaceSplit") {
    impl.pre_tokenizer.push_back({PreTokKind::WhitespaceSplit});
  } else if (type == "Sequence") {
    const json& list = f.required(j, "pretokenizers", where);
    if (!list.is_array()) f.fail(where + ".pretokenizers", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_pre_tokenizer(f, list[i], fmt::format("{}.pretokenizers[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("pre_tokenizer type '{}' is not supported (supported: ByteLevel, "
                              "Whitespace, WhitespaceSplit, Sequence)",
                              type));
  }
}

// [token, id] as BertProcessing / RobertaProcessing store "cls" and "sep".
std::int64_t token_pair_id(const JsonFile& f, const json& j, const std::string& where) {
  if (!j.is_array() || j.size() != 2) f.fail(where, "expected [token, id]");
  f.string(j[0], where + "[0]");
  return f.integer(j[1], where + "[1]");
}

void parse_post_processor(const JsonFile& f, const json& j, const std::string& where, Impl& impl) {
  const std::string type = f.type_of(j, where);
  if (type == "ByteLevel") return;  // only trims offsets
  if (type == "TemplateProcessing") {
    const json& specials =
        f.object(f.required(j, "special_tokens", where), where + ".special_tokens");
    const json& single = f.required(j, "single", where);
    if (!single.is_array()) f.fail(where + ".single", "expected an array of pieces");
    Template tmpl;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string pw = fmt::format("{}.single[{}]", where, i);
      const json& piece = f.object(single[i], pw);
      if (const json* seq = f.optional(piece, "Sequence")) {
        const std::string id =
            f.string(f.required(f.object(*seq, pw), "id", pw), pw + ".Sequence.id");
        if (id != "A") f.fail(pw, fmt::format("sequence '{}' in a single-sequence template", id));
        tmpl.push_back({true, {}});
      } else if (const json* sp = f.optional(piece, "SpecialToken")) {
        const std::string name =
            f.string(f.required(f.object(*sp, pw), "id", pw), pw + ".SpecialToken.id");
        const auto it = specials.find(name);
        if (it == specials.end()) {
          f.fail(pw, fmt::format("special token '{}' is not listed in special_tokens", name));
        }
        const std::string sw = fmt::format("{}.special_tokens['{}'].ids", where, name);
        const json& ids = f.required(f.object(*it, sw), "ids", sw);
        if (!ids.is_array()) f.fail(sw, "expected an array of ids");
        TemplatePiece p;
        for (const json& id : ids) p.ids.push_back(f.integer(id, sw));
        tmpl.push_back(std::move(p));
      } else {
        f.fail(pw, "expected a 'Sequence' or 'SpecialToken' piece");
      }
    }
    impl.post_templates.push_back(std::move(tmpl));
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    const std::int64_t cls = token_pair_id(f, f.required(j, "cls", where), where + ".cls");
    const std::int64_t sep = token_pair_id(f, f.required(j, "sep", where), where + ".sep");
    impl.post_templates.push_back({{false, {cls}}, {true, {}}, {false, {sep}}});
  } else if (type == "Sequence") {
    const json& list = f.required(j, "processors", where);
    if (!list.is_array()) f.fail(where + ".processors", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_post_processor(f, list[i], fmt::format("{}.processors[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("post_processor type '{}' is not supported (supported: ByteLevel, "
                              "TemplateProcessing, BertProcessing, RobertaProcessing, Sequence)",
                              type));
  }
}

void parse_decoder(const JsonFile& f, const json& j, const std::string& where, Impl& impl) {
  const std::string type = f.type_of(j, where);
  if (type == "ByteLevel") {
    impl.byte_level_decoder = true;
  } else if (type == "Sequence") {
    const json& list = f.required(j, "decoders", where);
    if (!list.is_array()) f.fail(where + ".decoders", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_decoder(f, list[i], fmt::format("{}.decoders[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("decoder type '{}' is not supported (supported: ByteLevel, Sequence)",
                              type));
  }
}

std::vector<std::pair<std::string, std::string>> parse_merges(const JsonFile& f, const json& j) {
  if (!j.is_array()) f.fail("model.merges", "expected an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    const std::string where = fmt::format("model.merges[{}]", i);
    const json& m = j[i];
    if (m.is_string()) {  // legacy "left right"
      const std::string s = m.get<std::string>();
      const auto space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        f.fail(where, fmt::format("expected 'left right', got '{}'", s));
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2) {
      merges.emplace_back(f.string(m[0], where + "[0]"), f.string(m[1], where + "[1]"));
    } else {
      f.fail(where, fmt::format("expected \"left right\" or [left, right], got {}", m.dump()));
    }
  }
  return merges;
}

void parse_model(const JsonFile& f, const json& j, Impl& impl) {
  f.object(j, "model");
  std::string type;
  if (const json* t = f.optional(j, "type")) {
    type = f.string(*t, "model.type");
  } else if (j.contains("merges")) {
    type = "BPE";  // older files leave the type out
  } else if (j.contains("vocab") && j.contains("unk_token")) {
    type = "WordLevel";
  }
  if (type == "BPE") {
    impl.kind = "bpe";
    impl.vocab = read_vocab(f, f.required(j, "vocab", "model"), "model.vocab");
    const auto merges = parse_merges(f, f.required(j, "merges", "model"));
    if (const json* d = f.optional(j, "dropout")) {
      if (!d->is_number() || d->get<double>() != 0.0) {
        f.fail("model.dropout",
               fmt::format("BPE dropout {} is not supported (must be null)", d->dump()));
      }
    }
    BpeOptions options;
    if (const json* u = f.optional(j, "unk_token"))
      options.unk_token = f.string(*u, "model.unk_token");
    if (const json* p = f.optional(j, "continuing_subword_prefix")) {
      options.continuing_subword_prefix = f.string(*p, "model.continuing_subword_prefix");
    }
    if (const json* s = f.optional(j, "end_of_word_suffix")) {
      options.end_of_word_suffix = f.string(*s, "model.end_of_word_suffix");
    }
    options.fuse_unk = f.boolean(j, "fuse_unk", false, "model");
    options.byte_fallback = f.boolean(j, "byte_fallback", false, "model");
    options.ignore_merges = f.boolean(j, "ignore_merges", false, "model");
    impl.bpe = std::make_unique<BpeModel>(impl.vocab, merges, std::move(options),
                                          "tokenizer file '" + f.name() + "'");
  } else if (type == "WordLevel") {
    impl.kind = "wordlevel";
    impl.vocab = read_vocab(f, f.required(j, "vocab", "model"), "model.vocab");
    impl.wordlevel_unk = f.string(f.required(j, "unk_token", "model"), "model.unk_token");
  } else if (type.empty()) {
    f.fail("model", "missing key 'type'");
  } else {
    f.fail("model.type",
           fmt::format("model type '{}' is not supported (supported: BPE, WordLevel)", type));
  }
}

AddedToken parse_added_token(const JsonFile& f, const json& j, const std::string& where) {
  f.object(j, where);
  AddedToken t;
  t.content = f.string(f.required(j, "content", where), where + ".content");
  t.special = f.boolean(j, "special", false, where);
  t.single_word = f.boolean(j, "single_word", false, where);
  t.lstrip = f.boolean(j, "lstrip", false, where);
  t.rstrip = f.boolean(j, "rstrip", false, where);
  t.normalized = f.boolean(j, "normalized", !t.special, where);
  return t;
}

std::shared_ptr<Impl> load_tokenizer_json(const fs::path& path) {
  const JsonFile f(path);
  const json root = f.parse();
  f.object(root, "top level");
  auto impl = std::make_shared<Impl>();
  impl->source = path.string();
  parse_model(f, f.required(root, "model", "top level"), *impl);
  if (const json* n = f.optional(root, "normalizer")) parse_normalizer(f, *n, "normalizer", *impl);
  if (const json* p = f.optional(root, "pre_tokenizer"))
    parse_pre_tokenizer(f, *p, "pre_tokenizer", *impl);
  if (const json* p = f.optional(root, "post_processor"))
    parse_post_processor(f, *p, "post_processor", *impl);
  if (const json* d = f.optional(root, "decoder")) parse_decoder(f, *d, "decoder", *impl);
  if (const json* a = f.optional(root, "added_tokens")) {
    if (!a->is_array()) f.fail("added_tokens", "expected an array");
    for (std::size_t i = 0; i < a->size(); ++i) {
      const std::string where = fmt::format("added_tokens[{}]", i);
      AddedToken t = parse_added_token(f, (*a)[i], where);
      const std::int64_t id = f.integer(f.required((*a)[i], "id", where), where + ".id");
      impl->add_token(std::move(t), id, f.name());
    }
  }
  impl->finish();
  return impl;
}

// ---- vocab.json + merges.txt (+ transformers' side files) ---------------------------------

std::vector<std::pair<std::string, std::string>> read_merges_txt(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("tokenizer file '{}' cannot be opened", path.string()));
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const auto space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw FormatError(fmt::format("tokenizer file '{}': line {}: expected 'left right', got '{}'",
                                    path.string(), line_no, line));
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

// A special-token value of special_tokens_map.json / tokenizer_config.json: a string, or an
// AddedToken object {"content": ..., "lstrip": ..., ...}.
std::optional<AddedToken> special_value(const JsonFile& f, const json& v,
                                        const std::string& where) {
  if (v.is_null()) return std::nullopt;
  AddedToken t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
    t.normalized = false;
  } else {
    t = parse_added_token(f, v, where);
  }
  t.special = true;
  return t;
}

const char* const kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                    "pad_token", "cls_token", "mask_token"};

void collect_special_tokens(const JsonFile& f, const json& j, std::vector<AddedToken>& out) {
  for (const char* key : kSpecialKeys) {
    if (const json* v = f.optional(j, key)) {
      if (auto t = special_value(f, *v, key)) out.push_back(std::move(*t));
    }
  }
  if (const json* extra = f.optional(j, "additional_special_tokens")) {
    if (!extra->is_array()) f.fail("additional_special_tokens", "expected an array");
    for (std::size_t i = 0; i < extra->size(); ++i) {
      if (auto t = special_value(f, (*extra)[i], fmt::format("additional_special_tokens[{}]", i))) {
        out.push_back(std::move(*t));
      }
    }
  }
}

std::shared_ptr<Impl> load_vocab_merges(const fs::path& dir) {
  const fs::path vocab_path = dir / "vocab.json";
  const fs::path merges_path = dir / "merges.txt";
  auto impl = std::make_shared<Impl>();
  impl->kind = "bpe";
  std::vector<std::string> sources{vocab_path.string(), merges_path.string()};

  const JsonFile vf(vocab_path);
  impl->vocab = read_vocab(vf, vf.parse(), "top level");
  const auto merges = read_merges_txt(merges_path);

  // ref: transformers GPT2Converter: byte-level BPE without unk, ByteLevel pre-tokenizer with the
  // config's add_prefix_space, ByteLevel decoder, BOS template when add_bos_token.
  json config = json::object();
  std::optional<JsonFile> config_file;
  if (fs::exists(dir / "tokenizer_config.json")) {
    config_file.emplace(dir / "tokenizer_config.json");
    config = config_file->parse();
    config_file->object(config, "top level");
    sources.push_back(config_file->name());
  }
  json special_map = json::object();
  std::optional<JsonFile> map_file;
  if (fs::exists(dir / "special_tokens_map.json")) {
    map_file.emplace(dir / "special_tokens_map.json");
    special_map = map_file->parse();
    map_file->object(special_map, "top level");
    sources.push_back(map_file->name());
  }
  json added_json = json::object();
  std::optional<JsonFile> added_file;
  if (fs::exists(dir / "added_tokens.json")) {
    added_file.emplace(dir / "added_tokens.json");
    added_json = added_file->parse();
    added_file->object(added_json, "top level");
    sources.push_back(added_file->name());
  }
  impl->bpe = std::make_unique<BpeModel>(impl->vocab, merges, BpeOptions{},
                                         "tokenizer file '" + merges_path.string() + "'");

  std::vector<AddedToken> specials;
  if (map_file) collect_special_tokens(*map_file, special_map, specials);
  if (config_file) collect_special_tokens(*config_file, config, specials);
  std::unordered_set<std::string> special_contents;
  for (const AddedToken& t : specials) special_contents.insert(t.content);

  if (config_file) {
    if (const json* dec = config_file->optional(config, "added_tokens_decoder")) {
      config_file->object(*dec, "added_tokens_decoder");
      for (const auto& [key, value] : dec->items()) {
        const std::string where = fmt::format("added_tokens_decoder['{}']", key);
        std::int64_t id = -1;
        try {
          std::size_t used = 0;
          id = std::stoll(key, &used);
          if (used != key.size() || id < 0 || id > kMaxId) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0) config_file->fail(where, "key is not a token id");
        impl->add_token(parse_added_token(*config_file, value, where), id, config_file->name());
      }
    }
  }
  if (added_file) {
    for (const auto& [content, id] : added_json.items()) {
      AddedToken t;
      t.content = content;
      t.special = special_contents.count(content) > 0;
      t.normalized = !t.special;
      impl->add_token(std::move(t), added_file->integer(id, "['" + content + "']"),
                      added_file->name());
    }
  }
  for (const AddedToken& t : specials) impl->add_token(t, std::nullopt, sources.back());

  PreTokStep byte_level{PreTokKind::ByteLevel};
  byte_level.add_prefix_space =
      config_file ? config_file->boolean(config, "add_prefix_space", false, "top level") : false;
  impl->pre_tokenizer.push_back(byte_level);
  impl->byte_level_decoder = true;
  if (config_file && config_file->boolean(config, "add_bos_token", false, "top level")) {
    std::optional<AddedToken> bos;
    if (const json* v = config_file->optional(config, "bos_token"))
      bos = special_value(*config_file, *v, "bos_token");
    if (!bos && map_file) {
      if (const json* v = map_file->optional(special_map, "bos_token"))
        bos = special_value(*map_file, *v, "bos_token");
    }
    if (!bos) config_file->fail("add_bos_token", "is true but no bos_token is defined");
    const auto it = std::find_if(impl->added.begin(), impl->added.end(),
                                 [&](const AddedToken& t) { return t.content == bos->content; });
    if (it == impl->added.end()) config_file->fail("bos_token", "is empty");
    impl->post_templates.push_back({{false, {it->id}}, {true, {}}});
  }
  impl->finish();
  std::string joined;
  for (const std::string& s : sources) joined += (joined.empty() ? "" : ", ") + s;
  impl->source = joined;
  return impl;
}

}  // namespace

// ---- public API ----------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const fs::path& model_dir) {
  const fs::path json_path = model_dir / "tokenizer.json";
  if (fs::exists(json_path)) return Tokenizer(load_tokenizer_json(json_path));
  const fs::path vocab_path = model_dir / "vocab.json";
  const fs::path merges_path = model_dir / "merges.txt";
  const bool has_vocab = fs::exists(vocab_path);
  const bool has_merges = fs::exists(merges_path);
  if (!has_vocab && !has_merges) {
    throw FormatError(
        fmt::format("tokenizer file '{}' is missing (and there is no vocab.json + "
                    "merges.txt beside it either)",
                    json_path.string()));
  }
  if (!has_vocab || !has_merges) {
    throw FormatError(
        fmt::format("tokenizer file '{}' is missing (needed with '{}' when there is "
                    "no tokenizer.json)",
                    (has_vocab ? merges_path : vocab_path).string(),
                    (has_vocab ? vocab_path : merges_path).string()));
  }
  return Tokenizer(load_vocab_merges(model_dir));
}

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
  if (!m.byte_level_decoder) {
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
