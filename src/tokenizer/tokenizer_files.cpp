// Folders without tokenizer.json: transformers' per-file layouts, turned into the pipeline that its
// converters build (ref: transformers convert_slow_tokenizer.py GPT2Converter / BertConverter,
// PreTrainedTokenizerFast.__init__, BertTokenizerFast). Also Tokenizer::load, which picks the
// layout.
#include <algorithm>
#include <fstream>
#include <unordered_set>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/tokenizer/tokenizer_impl.hpp"
#include "src/tokenizer/unicode.hpp"

namespace xcaption {
namespace tokenizer_detail {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Impl = Tokenizer::Impl;

namespace {

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

// transformers' load_vocab for vocab.txt: one token a line, its line number is its id. Lines end
// at "\n", "\r\n" or "\r" (Python's universal newlines) and keep every other character; a token
// listed twice keeps its last line.
BpeModel::Vocab read_vocab_txt(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("tokenizer file '{}' cannot be opened", path.string()));
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<char32_t> scratch;
  if (const auto bad = unicode::decode_utf8(text, scratch)) {
    const auto line = 1 + std::count_if(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(*bad),
                                        [](char c) { return c == '\n'; });
    throw FormatError(fmt::format("tokenizer file '{}': line {}: not valid UTF-8", path.string(),
                                  line));
  }
  BpeModel::Vocab vocab;
  std::int64_t id = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find_first_of("\r\n", start);
    if (end == std::string::npos) {
      vocab[text.substr(start)] = id++;
      break;
    }
    vocab[text.substr(start, end - start)] = id++;
    start = end + 1;
    if (text[end] == '\r' && start < text.size() && text[start] == '\n') ++start;
    if (id > kMaxId) {
      throw FormatError(fmt::format("tokenizer file '{}': more than {} lines", path.string(), kMaxId));
    }
  }
  if (vocab.empty()) throw FormatError(fmt::format("tokenizer file '{}' is empty", path.string()));
  return vocab;
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

// transformers' optional side files of a tokenizer folder.
struct SideFiles {
  std::optional<JsonFile> config_file;  // tokenizer_config.json
  json config = json::object();
  std::optional<JsonFile> map_file;  // special_tokens_map.json
  json special_map = json::object();
  std::optional<JsonFile> added_file;  // added_tokens.json
  json added_json = json::object();

  // Reads the files that exist; appends their names to `sources`.
  SideFiles(const fs::path& dir, std::vector<std::string>& sources) {
    read(dir / "tokenizer_config.json", config_file, config, sources);
    read(dir / "special_tokens_map.json", map_file, special_map, sources);
    read(dir / "added_tokens.json", added_file, added_json, sources);
  }

  // Registers added_tokens_decoder (tokenizer_config.json), then added_tokens.json (special when
  // listed in `special_contents`), then `specials`, as PreTrainedTokenizerFast.__init__ does.
  void add_tokens(Impl& impl, const std::vector<AddedToken>& specials,
                  const std::string& specials_file) const {
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
          impl.add_token(parse_added_token(*config_file, value, where), id, config_file->name());
        }
      }
    }
    if (added_file) {
      for (const auto& [content, id] : added_json.items()) {
        AddedToken t;
        t.content = content;
        t.special = special_contents.count(content) > 0;
        t.normalized = !t.special;
        impl.add_token(std::move(t), added_file->integer(id, "['" + content + "']"),
                       added_file->name());
      }
    }
    for (const AddedToken& t : specials) impl.add_token(t, std::nullopt, specials_file);
  }

 private:
  static void read(const fs::path& path, std::optional<JsonFile>& file, json& value,
                   std::vector<std::string>& sources) {
    if (!fs::exists(path)) return;
    file.emplace(path);
    value = file->parse();
    file->object(value, "top level");
    sources.push_back(file->name());
  }
};

std::string join_sources(const std::vector<std::string>& sources) {
  std::string joined;
  for (const std::string& s : sources) joined += (joined.empty() ? "" : ", ") + s;
  return joined;
}

// ---- BERT (vocab.txt) -------------------------------------------------------------------------

// A special token of the BertTokenizer constructor: special_tokens_map.json's value replaces
// tokenizer_config.json's (PreTrainedTokenizerBase._from_pretrained), else the class default.
struct BertSpecial {
  const JsonFile* file = nullptr;  // where the value came from (null: the default)
  const json* value = nullptr;
};

BertSpecial bert_special(const SideFiles& side, const char* key) {
  if (side.map_file) {
    if (const json* v = side.map_file->optional(side.special_map, key)) return {&*side.map_file, v};
  }
  if (side.config_file) {
    if (const json* v = side.config_file->optional(side.config, key)) {
      return {&*side.config_file, v};
    }
  }
  return {};
}

const char* bert_default(std::string_view key) {
  if (key == "unk_token") return "[UNK]";
  if (key == "sep_token") return "[SEP]";
  if (key == "pad_token") return "[PAD]";
  if (key == "cls_token") return "[CLS]";
  if (key == "mask_token") return "[MASK]";
  return nullptr;
}

std::optional<AddedToken> bert_special_token(const SideFiles& side, const char* key) {
  const BertSpecial s = bert_special(side, key);
  if (s.value) return special_value(*s.file, *s.value, key);
  if (const char* d = bert_default(key)) {
    tokenizer_detail::AddedToken t;
    t.content = d;
    t.special = true;
    t.normalized = false;
    return t;
  }
  return std::nullopt;
}

}  // namespace

// ---- vocab.json + merges.txt ----------------------------------------------------------------

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
  const SideFiles side(dir, sources);
  impl->bpe = std::make_unique<BpeModel>(impl->vocab, merges, BpeOptions{},
                                         "tokenizer file '" + merges_path.string() + "'");

  std::vector<AddedToken> specials;
  if (side.map_file) collect_special_tokens(*side.map_file, side.special_map, specials);
  if (side.config_file) collect_special_tokens(*side.config_file, side.config, specials);
  side.add_tokens(*impl, specials, sources.back());

  const JsonFile* config_file = side.config_file ? &*side.config_file : nullptr;
  PreTokStep byte_level{PreTokKind::ByteLevel};
  byte_level.add_prefix_space =
      config_file ? config_file->boolean(side.config, "add_prefix_space", false, "top level")
                  : false;
  impl->pre_tokenizer.push_back(byte_level);
  impl->decoder.kind = DecoderKind::ByteLevel;
  if (config_file && config_file->boolean(side.config, "add_bos_token", false, "top level")) {
    std::optional<AddedToken> bos;
    if (const json* v = config_file->optional(side.config, "bos_token"))
      bos = special_value(*config_file, *v, "bos_token");
    if (!bos && side.map_file) {
      if (const json* v = side.map_file->optional(side.special_map, "bos_token"))
        bos = special_value(*side.map_file, *v, "bos_token");
    }
    if (!bos) config_file->fail("add_bos_token", "is true but no bos_token is defined");
    const auto it = std::find_if(impl->added.begin(), impl->added.end(),
                                 [&](const AddedToken& t) { return t.content == bos->content; });
    if (it == impl->added.end()) config_file->fail("bos_token", "is empty");
    impl->post_templates.push_back({{false, {it->id}}, {true, {}}});
  }
  impl->finish();
  impl->source = join_sources(sources);
  return impl;
}

// ---- vocab.txt --------------------------------------------------------------------------------

std::shared_ptr<Impl> load_vocab_txt(const fs::path& dir) {
  const fs::path vocab_path = dir / "vocab.txt";
  auto impl = std::make_shared<Impl>();
  impl->kind = "wordpiece";
  std::vector<std::string> sources{vocab_path.string()};
  impl->vocab = read_vocab_txt(vocab_path);
  const SideFiles side(dir, sources);
  const JsonFile* config_file = side.config_file ? &*side.config_file : nullptr;

  // ref: BertConverter + BertTokenizerFast: BertNormalizer(clean_text, tokenize_chinese_chars,
  // strip_accents, do_lower_case), BertPreTokenizer, WordPiece("##", 100 characters) with the
  // unk_token, [CLS] $A [SEP], WordPiece decoder with cleanup.
  normalize::BertOptions norm;
  if (config_file) {
    const json& c = side.config;
    if (const json* cls = config_file->optional(c, "tokenizer_class")) {
      const std::string name = config_file->string(*cls, "tokenizer_class");
      if (name != "BertTokenizer" && name != "BertTokenizerFast") {
        config_file->fail("tokenizer_class",
                          fmt::format("'{}' is not supported with vocab.txt (supported: "
                                      "BertTokenizer, BertTokenizerFast)",
                                      name));
      }
    }
    norm.lowercase = config_file->boolean(c, "do_lower_case", true, "top level");
    norm.handle_chinese_chars =
        config_file->boolean(c, "tokenize_chinese_chars", true, "top level");
    if (const json* s = config_file->optional(c, "strip_accents")) {
      if (!s->is_boolean()) {
        config_file->fail("top level.strip_accents",
                          fmt::format("expected a boolean or null, got {}", s->dump()));
      }
      norm.strip_accents = s->get<bool>();
    }
  }
  impl->normalizers.push_back({NormKind::Bert, norm});
  impl->pre_tokenizer.push_back({PreTokKind::Bert});
  impl->decoder.kind = DecoderKind::WordPiece;

  std::vector<AddedToken> specials;
  for (const char* key : kSpecialKeys) {
    if (auto t = bert_special_token(side, key)) specials.push_back(std::move(*t));
  }
  const BertSpecial extra = bert_special(side, "additional_special_tokens");
  if (extra.value) {
    if (!extra.value->is_array()) extra.file->fail("additional_special_tokens", "expected an array");
    for (std::size_t i = 0; i < extra.value->size(); ++i) {
      if (auto t = special_value(*extra.file, (*extra.value)[i],
                                 fmt::format("additional_special_tokens[{}]", i))) {
        specials.push_back(std::move(*t));
      }
    }
  }
  side.add_tokens(*impl, specials, sources.back());

  WordPieceOptions options;
  options.unk_token = bert_special_token(side, "unk_token")->content;
  impl->wordpiece = std::make_unique<WordPieceModel>(impl->vocab, options, vocab_path.string());

  std::int64_t cls_sep[2];
  const char* const cls_sep_keys[2] = {"cls_token", "sep_token"};
  for (int k = 0; k < 2; ++k) {
    const std::string content = bert_special_token(side, cls_sep_keys[k])->content;
    const auto it = std::find_if(impl->added.begin(), impl->added.end(),
                                 [&](const AddedToken& t) { return t.content == content; });
    if (it == impl->added.end()) {
      throw FormatError(fmt::format("tokenizer file '{}': {} is empty", sources.back(),
                                    cls_sep_keys[k]));
    }
    cls_sep[k] = it->id;
  }
  impl->post_templates.push_back({{false, {cls_sep[0]}}, {true, {}}, {false, {cls_sep[1]}}});
  impl->finish();
  impl->source = join_sources(sources);
  return impl;
}

}  // namespace tokenizer_detail

// ---- choosing the layout ------------------------------------------------------------------------

namespace {

std::shared_ptr<Tokenizer::Impl> load_impl(const std::filesystem::path& model_dir) {
  namespace fs = std::filesystem;
  const fs::path json_path = model_dir / "tokenizer.json";
  if (fs::exists(json_path)) return tokenizer_detail::load_tokenizer_json(json_path, model_dir / "tokenizer_config.json");
  const fs::path vocab_path = model_dir / "vocab.json";
  const fs::path merges_path = model_dir / "merges.txt";
  const bool has_vocab = fs::exists(vocab_path);
  const bool has_merges = fs::exists(merges_path);
  if (!has_vocab && !has_merges) {
    if (fs::exists(model_dir / "vocab.txt")) return tokenizer_detail::load_vocab_txt(model_dir);
    throw FormatError(
        fmt::format("tokenizer file '{}' is missing (and there is no vocab.json + "
                    "merges.txt or vocab.txt beside it either)",
                    json_path.string()));
  }
  if (!has_vocab || !has_merges) {
    throw FormatError(
        fmt::format("tokenizer file '{}' is missing (needed with '{}' when there is "
                    "no tokenizer.json)",
                    (has_vocab ? merges_path : vocab_path).string(),
                    (has_vocab ? vocab_path : merges_path).string()));
  }
  return tokenizer_detail::load_vocab_merges(model_dir);
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) { return Tokenizer(load_impl(model_dir)); }

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir, std::span<const std::string> special_tokens) {
  std::shared_ptr<Impl> impl = load_impl(model_dir);
  // ref: PreTrainedTokenizerFast.add_special_tokens -> add_tokens(special_tokens=True): a token
  // already known keeps its id (and becomes special), a new one takes the next id; special added
  // tokens are matched on the raw text (normalized=False) and skipped by skip_special_tokens.
  for (const std::string& content : special_tokens) {
    tokenizer_detail::AddedToken t;
    t.content = content;
    t.special = true;
    t.normalized = false;
    impl->add_token(std::move(t), std::nullopt, impl->source);
  }
  impl->raw_set = {};
  impl->normalized_set = {};
  impl->added_ids.clear();
  impl->finish();
  return Tokenizer(impl);
}

}  // namespace xcaption
