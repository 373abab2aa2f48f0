// tokenizer.json, the serialization of Hugging Face `tokenizers` (ref: tokenizers/src/tokenizer/
// serialization.rs and the serde forms of each component), into a Tokenizer::Impl.
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/io/json_config.hpp"
#include "src/tokenizer/tokenizer_impl.hpp"

namespace xcaption::tokenizer_detail {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Impl = Tokenizer::Impl;

// ---- JSON access with errors that name the file and the key ------------------------------

json JsonFile::parse() const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw FormatError(fmt::format("tokenizer file '{}' cannot be opened", name()));
  in.close();
  const std::int64_t limit = path_.filename() == "tokenizer.json" ? config::kMaxTokenizerJsonBytes
                                                                   : config::kMaxConfigJsonBytes;
  const std::string text = config::read_text_file(path_, limit);
  try {
    return config::parse_json<json>(text);
  } catch (const json::exception& e) {
    throw FormatError(fmt::format("tokenizer file '{}' is not valid JSON: {}", name(), e.what()));
  } catch (const config::JsonTooDeep& e) {
    throw FormatError(fmt::format("tokenizer file '{}' is not valid JSON: {}", name(), e.what()));
  }
}

void JsonFile::fail(const std::string& where, const std::string& what) const {
  throw FormatError(fmt::format("tokenizer file '{}': {}: {}", name(), where, what));
}

const json& JsonFile::object(const json& j, const std::string& where) const {
  if (!j.is_object()) fail(where, fmt::format("expected an object, got {}", j.type_name()));
  return j;
}

const json* JsonFile::optional(const json& obj, const char* key) const {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

const json& JsonFile::required(const json& obj, const char* key, const std::string& where) const {
  const auto it = obj.find(key);
  if (it == obj.end()) fail(where, fmt::format("missing key '{}'", key));
  return *it;
}

std::string JsonFile::string(const json& j, const std::string& where) const {
  if (!j.is_string()) fail(where, fmt::format("expected a string, got {}", j.type_name()));
  return j.get<std::string>();
}

std::int64_t JsonFile::integer(const json& j, const std::string& where) const {
  if (!j.is_number_integer()) fail(where, fmt::format("expected an integer, got {}", j.dump()));
  const auto v = j.get<std::int64_t>();
  if (v < 0 || v > kMaxId)
    fail(where, fmt::format("expected an id in [0, {}], got {}", kMaxId, j.dump()));
  return v;
}

bool JsonFile::boolean(const json& obj, const char* key, bool fallback,
                       const std::string& where) const {
  const json* v = optional(obj, key);
  if (!v) return fallback;
  if (!v->is_boolean())
    fail(where + "." + key, fmt::format("expected a boolean, got {}", v->dump()));
  return v->get<bool>();
}

std::string JsonFile::type_of(const json& obj, const std::string& where) const {
  return string(required(object(obj, where), "type", where), where + ".type");
}

BpeModel::Vocab read_vocab(const JsonFile& file, const json& j, const std::string& where) {
  file.object(j, where);
  BpeModel::Vocab vocab;
  vocab.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    vocab.emplace(token, file.integer(id, fmt::format("{}['{}']", where, token)));
  }
  return vocab;
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

namespace {

// ---- tokenizer.json components -------------------------------------------------------------

// strip_accents of a BertNormalizer or of tokenizer_config.json: a boolean or null.
std::optional<bool> optional_boolean(const JsonFile& f, const json& obj, const char* key,
                                     const std::string& where) {
  const json* v = f.optional(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) {
    f.fail(where + "." + key, fmt::format("expected a boolean or null, got {}", v->dump()));
  }
  return v->get<bool>();
}

void parse_normalizer(const JsonFile& f, const json& j, const std::string& where, Impl& impl) {
  const std::string type = f.type_of(j, where);
  if (type == "Lowercase") {
    impl.normalizers.push_back({NormKind::Lowercase, {}});
  } else if (type == "BertNormalizer") {
    // ref: normalizers/bert.rs (the defaults are the library's)
    normalize::BertOptions o;
    o.clean_text = f.boolean(j, "clean_text", true, where);
    o.handle_chinese_chars = f.boolean(j, "handle_chinese_chars", true, where);
    o.strip_accents = optional_boolean(f, j, "strip_accents", where);
    o.lowercase = f.boolean(j, "lowercase", true, where);
    impl.normalizers.push_back({NormKind::Bert, o});
  } else if (type == "Sequence") {
    const json& list = f.required(j, "normalizers", where);
    if (!list.is_array()) f.fail(where + ".normalizers", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_normalizer(f, list[i], fmt::format("{}.normalizers[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("normalizer type '{}' is not supported (supported: Lowercase, "
                              "BertNormalizer, Sequence)",
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
  } else if (type == "BertPreTokenizer") {
    impl.pre_tokenizer.push_back({PreTokKind::Bert});
  } else if (type == "Sequence") {
    const json& list = f.required(j, "pretokenizers", where);
    if (!list.is_array()) f.fail(where + ".pretokenizers", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_pre_tokenizer(f, list[i], fmt::format("{}.pretokenizers[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("pre_tokenizer type '{}' is not supported (supported: ByteLevel, "
                              "Whitespace, WhitespaceSplit, BertPreTokenizer, Sequence)",
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
  if (type == "ByteLevel" || type == "WordPiece") {
    const DecoderKind kind = type == "ByteLevel" ? DecoderKind::ByteLevel : DecoderKind::WordPiece;
    if (impl.decoder.kind != DecoderKind::Join && impl.decoder.kind != kind) {
      f.fail(where, "a Sequence of ByteLevel and WordPiece decoders is not supported");
    }
    impl.decoder.kind = kind;
    if (kind == DecoderKind::WordPiece) {
      if (const json* p = f.optional(j, "prefix")) {
        impl.decoder.prefix = f.string(*p, where + ".prefix");
      }
      impl.decoder.cleanup = f.boolean(j, "cleanup", true, where);
    }
  } else if (type == "Sequence") {
    const json& list = f.required(j, "decoders", where);
    if (!list.is_array()) f.fail(where + ".decoders", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      parse_decoder(f, list[i], fmt::format("{}.decoders[{}]", where, i), impl);
    }
  } else {
    f.fail(where, fmt::format("decoder type '{}' is not supported (supported: ByteLevel, WordPiece, "
                              "Sequence)",
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
  } else if (j.contains("continuing_subword_prefix") || j.contains("max_input_chars_per_word")) {
    type = "WordPiece";
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
  } else if (type == "WordPiece") {
    impl.kind = "wordpiece";
    impl.vocab = read_vocab(f, f.required(j, "vocab", "model"), "model.vocab");
    WordPieceOptions options;
    if (const json* u = f.optional(j, "unk_token"))
      options.unk_token = f.string(*u, "model.unk_token");
    if (const json* p = f.optional(j, "continuing_subword_prefix")) {
      options.continuing_subword_prefix = f.string(*p, "model.continuing_subword_prefix");
    }
    if (const json* m = f.optional(j, "max_input_chars_per_word")) {
      if (!m->is_number_unsigned()) {
        f.fail("model.max_input_chars_per_word",
               fmt::format("expected a non-negative integer, got {}", m->dump()));
      }
      options.max_input_chars_per_word = m->get<std::size_t>();
    }
    impl.wordpiece = std::make_unique<WordPieceModel>(impl.vocab, std::move(options), f.name());
  } else if (type.empty()) {
    f.fail("model", "missing key 'type'");
  } else {
    f.fail("model.type",
           fmt::format("model type '{}' is not supported (supported: BPE, WordLevel, WordPiece)",
                       type));
  }
}

// ref: transformers BertTokenizerFast.__init__: the constructor's do_lower_case, strip_accents
// and tokenize_chinese_chars (from tokenizer_config.json, else the class defaults True, None,
// True) replace those of a top-level BertNormalizer when they differ.
void apply_bert_config(const fs::path& config_path, Impl& impl) {
  if (impl.kind != "wordpiece" || impl.normalizers.size() != 1 ||
      impl.normalizers[0].kind != NormKind::Bert) {
    return;
  }
  if (!fs::exists(config_path)) return;
  const JsonFile c(config_path);
  const json config = c.parse();
  c.object(config, "top level");
  if (const json* cls = c.optional(config, "tokenizer_class")) {
    const std::string name = c.string(*cls, "tokenizer_class");
    if (name != "BertTokenizer" && name != "BertTokenizerFast") return;
  }
  normalize::BertOptions& o = impl.normalizers[0].bert;
  o.lowercase = c.boolean(config, "do_lower_case", true, "top level");
  o.strip_accents = optional_boolean(c, config, "strip_accents", "top level");
  o.handle_chinese_chars = c.boolean(config, "tokenize_chinese_chars", true, "top level");
  impl.source += ", " + c.name();
}

}  // namespace

std::shared_ptr<Impl> load_tokenizer_json(const fs::path& path, const fs::path& config) {
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
  apply_bert_config(config, *impl);
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

}  // namespace xcaption::tokenizer_detail
