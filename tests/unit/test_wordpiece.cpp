// BERT WordPiece tokenizer tests against tests/data/tokenizer/wordpiece_expected.json, written by
// the independent Python reference tools/xcaption_ref/wordpiece.py (tools/make_wordpiece_fixtures.py).
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/tokenizer/normalizers.hpp"
#include "src/tokenizer/pre_tokenizers.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "src/tokenizer/unicode.hpp"
#include "src/tokenizer/unicode_tables.hpp"
#include "src/tokenizer/wordpiece.hpp"
#include "tests/e2e/cli_runner.hpp"
#include "tests/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using xcaption::Tokenizer;
using xcaption::test::TempDir;

const fs::path kData = fs::path(XCAPTION_TEST_DATA) / "tokenizer";

const json& expected() {
  static const json j = [] {
    std::ifstream in(kData / "wordpiece_expected.json");
    REQUIRE(in);
    return json::parse(in);
  }();
  return j;
}

// Printable form of a test string for failure messages: controls and non-ASCII as escapes.
std::string show(const std::string& s) {
  std::vector<char32_t> cps;
  xcaption::unicode::decode_utf8(s, cps);
  std::string out = "\"";
  for (char32_t c : cps) {
    if (c >= 0x20 && c < 0x7F)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\u{{{:X}}}", static_cast<std::uint32_t>(c));
  }
  return out + "\"";
}

std::vector<std::int64_t> ids_of(const json& j) { return j.get<std::vector<std::int64_t>>(); }

template <class Fn>
std::string error_message(Fn fn) {
  try {
    fn();
  } catch (const xcaption::FormatError& e) {
    return e.what();
  }
  FAIL("expected a FormatError");
  return {};
}

std::int64_t id(const Tokenizer& tok, const std::string& token) {
  const auto i = tok.token_id(token);
  INFO("token " << token);
  REQUIRE(i.has_value());
  return *i;
}

// A copy of a fixture folder in a scratch directory, for the error cases.
void copy_folder(const fs::path& from, const TempDir& to) {
  for (const auto& e : fs::directory_iterator(from)) {
    fs::copy_file(e.path(), to.path / e.path().filename(), fs::copy_options::overwrite_existing);
  }
}

}  // namespace

TEST_CASE("BERT character classes agree with the reference", "[tokenizer][wordpiece]") {
  namespace u = xcaption::unicode;
  CHECK(std::string(xcaption::unicode_tables::kBertClassesUnicodeVersion) ==
        expected()["unicode"]["bert_classes"].get<std::string>() + ".0");
  CHECK(std::string(xcaption::unicode_tables::kNfdUnicodeVersion) ==
        expected()["unicode"]["nfd"].get<std::string>() + ".0");
  const json& sample = expected()["classes"];
  REQUIRE(sample.size() > 2000);
  for (const json& item : sample) {
    const auto c = static_cast<char32_t>(item[0].get<std::uint32_t>());
    const std::string flags = item[1];
    INFO(fmt::format("U+{:04X} expected flags '{}'", static_cast<std::uint32_t>(c), flags));
    CHECK(u::is_bert_punctuation(c) == (flags.find('P') != std::string::npos));
    CHECK(u::is_bert_control(c) == (flags.find('C') != std::string::npos));
    CHECK(u::is_nonspacing_mark(c) == (flags.find('M') != std::string::npos));
    CHECK(u::is_cjk_ideograph(c) == (flags.find('J') != std::string::npos));
    CHECK(u::is_space(c) == (flags.find('S') != std::string::npos));
  }
}

TEST_CASE("NFD agrees with the reference (Unicode 9.0, Hangul, canonical order)",
          "[tokenizer][wordpiece]") {
  const json& cases = expected()["nfd"];
  REQUIRE(cases.size() > 600);
  std::vector<char32_t> src, dst, want;
  for (const json& c : cases) {
    const std::string text = c[0];
    INFO("text " << show(text));
    xcaption::unicode::decode_utf8(text, src);
    xcaption::unicode::decode_utf8(c[1].get<std::string>(), want);
    xcaption::unicode::nfd(src, dst);
    CHECK(dst == want);
  }
}

TEST_CASE("BertNormalizer and BertPreTokenizer agree with the reference", "[tokenizer][wordpiece]") {
  namespace n = xcaption::normalize;
  n::BertOptions uncased;  // the defaults: everything on, strip_accents follows lowercase
  n::BertOptions cased;
  cased.handle_chinese_chars = false;
  cased.lowercase = false;
  n::BertOptions strip_only = cased;
  strip_only.strip_accents = true;
  n::BertOptions raw;
  raw.clean_text = false;
  int checked = 0;
  for (const json& c : expected()["normalize"]) {
    const std::string text = c["text"];
    INFO("text " << show(text));
    CHECK(show(n::bert(text, uncased)) == show(c["uncased"]));
    CHECK(show(n::bert(text, cased)) == show(c["cased"]));
    CHECK(show(n::bert(text, strip_only)) == show(c["strip_only"]));
    CHECK(show(n::bert(text, raw)) == show(c["raw"]));
    CHECK(xcaption::pretok::split_bert(text) == c["pieces"].get<std::vector<std::string>>());
    ++checked;
  }
  CHECK(checked >= 70);
}

TEST_CASE("WordPiece tokenizers encode and decode like the reference", "[tokenizer][wordpiece]") {
  int folders = 0;
  for (const auto& [name, spec] : expected()["tokenizers"].items()) {
    for (const json& dir : spec["dirs"]) {
      const fs::path path = kData / dir.get<std::string>();
      INFO("tokenizer " << name << " from " << path.string());
      const Tokenizer tok = Tokenizer::load(path);
      ++folders;
      CHECK(tok.kind() == "wordpiece");
      CHECK(tok.vocab_size() == spec["vocab_size"].get<std::int64_t>());
      std::vector<std::int64_t> specials;
      for (std::int64_t i = 0; i < tok.vocab_size(); ++i) {
        if (tok.is_special(i)) specials.push_back(i);
      }
      CHECK(specials == ids_of(spec["special_ids"]));
      int encoded = 0;
      for (const json& c : spec["encode"]) {
        const std::string text = c["text"];
        INFO("encode " << show(text));
        CHECK(tok.encode(text) == ids_of(c["ids"]));
        CHECK(tok.encode(text, true) == ids_of(c["ids_with_special"]));
        ++encoded;
      }
      CHECK(encoded >= 70);
      for (const json& c : spec["decode"]) {
        const auto ids = ids_of(c["ids"]);
        INFO("decode " << c["ids"].dump());
        CHECK(show(tok.decode(ids, false)) == show(c["text"]));
        CHECK(show(tok.decode(ids, true)) == show(c["text_skip_special"]));
      }
    }
  }
  CHECK(folders == 5);
}

TEST_CASE("tokenizer.json and vocab.txt alone load the same BERT tokenizer", "[tokenizer][wordpiece]") {
  const Tokenizer a = Tokenizer::load(kData / "wordpiece");
  const Tokenizer b = Tokenizer::load(kData / "wordpiece_files");
  CHECK(a.source().find("tokenizer.json") != std::string::npos);
  CHECK(b.source().find("vocab.txt") != std::string::npos);
  CHECK(b.source().find("tokenizer_config.json") != std::string::npos);
  REQUIRE(a.vocab_size() == b.vocab_size());
  for (std::int64_t i = 0; i < a.vocab_size(); ++i) {
    CHECK(a.token_string(i) == b.token_string(i));
    CHECK(a.is_special(i) == b.is_special(i));
  }
  for (const json& c : expected()["tokenizers"]["wordpiece"]["encode"]) {
    const std::string text = c["text"];
    INFO("text " << show(text));
    CHECK(a.encode(text, true) == b.encode(text, true));
  }
}

TEST_CASE("BLIP-shaped vocab: [DEC] and [ENC] after the vocab, a picture of", "[tokenizer][wordpiece]") {
  std::int64_t vocab_txt_lines = 0;
  {
    std::ifstream in(kData / "wordpiece_files" / "vocab.txt");
    std::string line;
    while (std::getline(in, line)) ++vocab_txt_lines;
  }
  for (const char* dir : {"wordpiece", "wordpiece_files"}) {
    INFO("folder " << dir);
    const Tokenizer tok = Tokenizer::load(kData / dir);
    CHECK(id(tok, "[DEC]") == vocab_txt_lines);
    CHECK(id(tok, "[ENC]") == vocab_txt_lines + 1);
    CHECK(tok.vocab_size() == vocab_txt_lines + 2);
    CHECK(tok.is_special(id(tok, "[DEC]")));
    CHECK(tok.is_special(id(tok, "[ENC]")));
    const std::vector<std::int64_t> want{id(tok, "[CLS]"), id(tok, "a"), id(tok, "picture"),
                                         id(tok, "of"), id(tok, "[SEP]")};
    const auto ids = tok.encode("a picture of", true);
    CHECK(ids == want);
    CHECK(tok.encode("A Picture OF", true) == want);  // uncased
    CHECK(tok.decode(ids, true) == "a picture of");
    CHECK(tok.decode(ids, false) == "[CLS] a picture of [SEP]");
    // BLIP replaces [CLS] by the bos token [DEC] before generating; decoding drops both.
    std::vector<std::int64_t> generated = ids;
    generated[0] = id(tok, "[DEC]");
    generated.back() = id(tok, "dog");
    CHECK(tok.decode(generated, true) == "a picture of dog");
    // Special tokens inside the text are matched before normalization, case-sensitively.
    CHECK(tok.encode("[DEC] a") == std::vector<std::int64_t>{id(tok, "[DEC]"), id(tok, "a")});
    CHECK(tok.encode("[dec]").front() != id(tok, "[DEC]"));
  }
}

TEST_CASE("WordPiece details: longest match, unknown words, the length limit, the decoder",
          "[tokenizer][wordpiece]") {
  const Tokenizer tok = Tokenizer::load(kData / "wordpiece");
  const auto unk = id(tok, "[UNK]");
  // Greedy longest match first, then "##" continuations.
  CHECK(tok.encode("running") == std::vector<std::int64_t>{id(tok, "runn"), id(tok, "##ing")});
  // 'q' has no "##q" piece: a word with a q after its first piece is one [UNK].
  CHECK(tok.encode("aq") == std::vector<std::int64_t>{unk});
  CHECK(tok.encode("qa") == std::vector<std::int64_t>{id(tok, "q"), id(tok, "##a")});
  // max_input_chars_per_word: 100 characters are still split, 101 are one [UNK].
  const std::string a100(100, 'a');
  CHECK(tok.encode(a100).size() == 100);
  CHECK(tok.encode(a100 + "a") == std::vector<std::int64_t>{unk});
  // The limit counts characters, not bytes: 20 'é' (40 bytes) pass a limit of 20.
  const Tokenizer cased = Tokenizer::load(kData / "wordpiece_cased");
  std::string accented;
  for (int i = 0; i < 20; ++i) accented += "\xC3\xA9";  // é
  CHECK(cased.encode(accented).size() == 20);
  CHECK(cased.encode(accented + "\xC3\xA9") == std::vector<std::int64_t>{id(cased, "[UNK]")});
  // Decoder: "##" glues, a leading "##" piece stays, cleanup is per token (so " ' s" stays).
  const std::vector<std::int64_t> ids{id(tok, "##ing"), id(tok, "walk"), id(tok, "##ed"),
                                      id(tok, ","), id(tok, "it"), id(tok, "'"), id(tok, "s"),
                                      id(tok, ".")};
  CHECK(tok.decode(ids, false) == "##ing walked, it ' s.");
  const Tokenizer no_cleanup = Tokenizer::load(kData / "wordpiece_override");
  CHECK(no_cleanup.decode(ids, false) == "##ing walked , it ' s .");
  CHECK(xcaption::wordpiece_cleanup(" do not") == " don't");
  CHECK(xcaption::wordpiece_cleanup(" ' ") == "'");
}

TEST_CASE("tokenizer_config.json overrides a BertNormalizer like BertTokenizerFast",
          "[tokenizer][wordpiece]") {
  // Same tokenizer.json; the config says cased, strip accents, no CJK spacing.
  const Tokenizer plain = Tokenizer::load(kData / "wordpiece");
  const Tokenizer over = Tokenizer::load(kData / "wordpiece_override");
  CHECK(over.source().find("tokenizer_config.json") != std::string::npos);
  CHECK(plain.encode("Hello") != over.encode("Hello"));
  CHECK(over.encode("Hello") == std::vector<std::int64_t>{id(over, "Hello")});
  CHECK(plain.encode("hello") == over.encode("hello"));
  CHECK(over.encode("\xC3\xA9") == over.encode("e"));  // é: accents still stripped
  // A config of another tokenizer class leaves the serialized normalizer alone.
  TempDir d("wp_other_class");
  copy_folder(kData / "wordpiece_override", d);
  json config = json::parse(xcaption::test::read_file(d.path / "tokenizer_config.json"));
  config["tokenizer_class"] = "SomethingElse";
  d.write("tokenizer_config.json", config.dump());
  const Tokenizer other = Tokenizer::load(d.path);
  CHECK(other.encode("Hello") == plain.encode("Hello"));
}

TEST_CASE("WordPiece load errors name the file and the problem", "[tokenizer][wordpiece]") {
  const std::string good = xcaption::test::read_file(kData / "wordpiece" / "tokenizer.json");
  SECTION("unsupported options in tokenizer.json") {
    TempDir d("wp_bad_json");
    json j = json::parse(good);
    j["model"]["max_input_chars_per_word"] = -3;
    d.write("tokenizer.json", j.dump());
    std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer.json").string()));
    CHECK_THAT(msg, Catch::Contains("model.max_input_chars_per_word"));
    j = json::parse(good);
    j["normalizer"]["strip_accents"] = "yes";
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("normalizer.strip_accents: expected a boolean or null"));
    j = json::parse(good);
    j["decoder"] = json::parse(
        R"({"type": "Sequence", "decoders": [{"type": "WordPiece"}, {"type": "ByteLevel"}]})");
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("Sequence of ByteLevel and WordPiece decoders is not supported"));
    j = json::parse(good);
    j["decoder"] = {{"type", "CTC"}};
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("decoder type 'CTC' is not supported"));
  }
  SECTION("vocab.txt folders") {
    TempDir d("wp_bad_files");
    copy_folder(kData / "wordpiece_files", d);
    json config = json::parse(xcaption::test::read_file(d.path / "tokenizer_config.json"));
    config["tokenizer_class"] = "MPNetTokenizer";
    d.write("tokenizer_config.json", config.dump());
    std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer_config.json").string()));
    CHECK_THAT(msg, Catch::Contains("tokenizer_class: 'MPNetTokenizer' is not supported"));
    config["tokenizer_class"] = "BertTokenizer";
    config["do_lower_case"] = "no";
    d.write("tokenizer_config.json", config.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("do_lower_case: expected a boolean"));
    fs::remove(d.path / "tokenizer_config.json");
    d.write("vocab.txt", "[PAD]\n[UNK]\nok\n\xFF\xFEoops\n");
    msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "vocab.txt").string()));
    CHECK_THAT(msg, Catch::Contains("line 4: not valid UTF-8"));
  }
  SECTION("a vocab without its unk token fails when a word needs it") {
    TempDir d("wp_no_unk");
    d.write("vocab.txt", "[CLS]\n[SEP]\na\n##b\n");
    const Tokenizer tok = Tokenizer::load(d.path);  // defaults: [CLS], [SEP], unk [UNK]
    CHECK(tok.encode("ab") == std::vector<std::int64_t>{2, 3});
    CHECK(tok.encode("ab", true) == std::vector<std::int64_t>{0, 2, 3, 1});
    CHECK_THAT(error_message([&] { tok.encode("abc"); }),
               Catch::Contains("needs the WordPiece unk_token '[UNK]'"));
    // Missing [PAD] / [UNK] / [MASK] become added special tokens after the vocab.
    CHECK(tok.vocab_size() == 7);
    CHECK(tok.is_special(0));
    CHECK(tok.is_special(tok.vocab_size() - 1));
    CHECK_FALSE(tok.is_special(2));
  }
}

TEST_CASE("xcaption tokenize works with BERT tokenizer folders", "[cli][wordpiece]") {
  const json& spec = expected()["tokenizers"]["wordpiece"];
  std::string want;
  for (const json& c : spec["encode"]) {
    if (c["text"] == "a picture of a dog sitting on the grass.") {
      for (const json& i : c["ids"]) want += (want.empty() ? "" : " ") + std::to_string(i.get<int>());
    }
  }
  REQUIRE_FALSE(want.empty());
  for (const char* dir : {"wordpiece", "wordpiece_files"}) {
    const std::string model = (kData / dir).string();
    INFO("folder " << model);
    const auto r = xcaption::test::run_cli("tokenize --model '" + model +
                                           "' 'a picture of a dog sitting on the grass.'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == want + "\n");
    const auto back = xcaption::test::run_cli("tokenize --model '" + model + "' --decode " + want);
    REQUIRE(back.exit_code == 0);
    CHECK(back.out == "a picture of a dog sitting on the grass.\n");
    const Tokenizer tok = Tokenizer::load(kData / dir);
    const auto special = xcaption::test::run_cli(
        "tokenize --model '" + model + "' --decode --skip-special " +
        std::to_string(id(tok, "[DEC]")) + " " + want + " " + std::to_string(id(tok, "[SEP]")));
    REQUIRE(special.exit_code == 0);
    CHECK(special.out == "a picture of a dog sitting on the grass.\n");
    const auto shown = xcaption::test::run_cli("tokenize --model '" + model + "' --tokens 'Pictures'");
    REQUIRE(shown.exit_code == 0);
    CHECK_THAT(shown.out, Catch::Contains("(picture)"));
  }
}
