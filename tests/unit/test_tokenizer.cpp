// Tokenizer tests against tests/data/tokenizer/expected.json, written by the independent Python
// reference tools/tokenizer_reference.py (HF `tokenizers` semantics; GPT-2 splits from the
// `regex` module).
#include "tests/test_util.hpp"
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/tokenizer/bpe.hpp"
#include "src/tokenizer/pre_tokenizers.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "src/tokenizer/unicode.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using xcaption::Tokenizer;

const fs::path kData = fs::path(XCAPTION_TEST_DATA) / "tokenizer";

const json& expected() {
  static const json j = [] {
    std::ifstream in(kData / "expected.json");
    REQUIRE(in);
    return json::parse(in);
  }();
  return j;
}

// Printable form of a test string for failure messages.
std::string show(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c < 0x20)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

std::vector<std::int64_t> ids_of(const json& j) { return j.get<std::vector<std::int64_t>>(); }

// A scratch folder under the system temp dir, removed at scope exit.
using xcaption::test::TempDir;

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

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("GPT-2 pre-tokenizer splits like the regex module", "[tokenizer]") {
  const json& cases = expected()["gpt2_splits"];
  REQUIRE(cases.size() > 50);
  for (const json& c : cases) {
    const std::string text = c["text"];
    INFO("text " << show(text));
    CHECK(xcaption::pretok::split_gpt2(text) == c["pieces"].get<std::vector<std::string>>());
  }
}

TEST_CASE("Whitespace pre-tokenizer splits like \\w+|[^\\w\\s]+", "[tokenizer]") {
  for (const json& c : expected()["whitespace_splits"]) {
    const std::string text = c["text"];
    INFO("text " << show(text));
    CHECK(xcaption::pretok::split_whitespace(text) == c["pieces"].get<std::vector<std::string>>());
  }
}

TEST_CASE("Unicode classes agree with the regex module on a code point sample", "[tokenizer]") {
  namespace u = xcaption::unicode;
  const json& sample = expected()["categories"];
  REQUIRE(sample.size() > 1000);
  int checked = 0;
  for (const json& item : sample) {
    const auto cp = item[0].get<std::uint32_t>();
    const std::string flags = item[1];
    INFO(fmt::format("U+{:04X} expected flags '{}'", cp, flags));
    const auto c = static_cast<char32_t>(cp);
    CHECK(u::is_letter(c) == (flags.find('L') != std::string::npos));
    CHECK(u::is_number(c) == (flags.find('N') != std::string::npos));
    CHECK(u::is_space(c) == (flags.find('S') != std::string::npos));
    CHECK(u::is_word(c) == (flags.find('W') != std::string::npos));
    ++checked;
  }
  CHECK(checked == static_cast<int>(sample.size()));
}

TEST_CASE("UTF-8 helpers: lossy replacement and lowercase", "[tokenizer]") {
  namespace u = xcaption::unicode;
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(u::utf8_lossy("\xF0\x9F\x98"
                      "A") == fffd + "A");
  CHECK(u::utf8_lossy("\xED\xA0\x80") == fffd + fffd + fffd);
  CHECK(u::utf8_lossy("\xE0\x80") == fffd + fffd);
  CHECK(u::utf8_lossy("ok\xC3\xA9") == "ok\xC3\xA9");
  CHECK(u::to_lowercase("\xC4\xB0stanbul \xCE\xA3") == "i\xCC\x87stanbul \xCF\x83");  // İ, Σ
  std::vector<char32_t> cps;
  CHECK(u::decode_utf8("ab\xC3", cps) == std::optional<std::size_t>(2));
  CHECK_FALSE(u::decode_utf8("a\xE2\x82\xAC", cps).has_value());
  CHECK(cps == std::vector<char32_t>{U'a', U'\u20AC'});
}

TEST_CASE("Tokenizers encode and decode like the reference", "[tokenizer]") {
  for (const auto& [name, spec] : expected()["tokenizers"].items()) {
    for (const json& dir : spec["dirs"]) {
      const fs::path path = kData / dir.get<std::string>();
      INFO("tokenizer " << name << " from " << path.string());
      const Tokenizer tok = Tokenizer::load(path);
      CHECK(tok.kind() == spec["kind"].get<std::string>());
      CHECK(tok.vocab_size() == spec["vocab_size"].get<std::int64_t>());
      std::vector<std::int64_t> specials;
      for (std::int64_t id = 0; id < tok.vocab_size(); ++id) {
        if (tok.is_special(id)) specials.push_back(id);
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
      CHECK(encoded >= 50);
      for (const json& c : spec["decode"]) {
        const auto ids = ids_of(c["ids"]);
        INFO("decode " << c["ids"].dump());
        CHECK(tok.decode(ids, false) == c["text"].get<std::string>());
        CHECK(tok.decode(ids, true) == c["text_skip_special"].get<std::string>());
      }
    }
  }
}

TEST_CASE("The three BPE layouts load the same tokenizer", "[tokenizer]") {
  const Tokenizer a = Tokenizer::load(kData / "bpe" / "json");
  const Tokenizer b = Tokenizer::load(kData / "bpe" / "json_pairs");
  const Tokenizer c = Tokenizer::load(kData / "bpe" / "files");
  CHECK(a.source() == (kData / "bpe" / "json" / "tokenizer.json").string());
  CHECK(c.source().find("vocab.json") != std::string::npos);
  CHECK(c.source().find("merges.txt") != std::string::npos);
  REQUIRE(a.vocab_size() == c.vocab_size());
  REQUIRE(b.vocab_size() == c.vocab_size());
  for (std::int64_t id = 0; id < a.vocab_size(); ++id) {
    CHECK(a.token_string(id) == c.token_string(id));
    CHECK(a.is_special(id) == c.is_special(id));
  }
  for (const json& e : expected()["tokenizers"]["bpe"]["encode"]) {
    const std::string text = e["text"];
    INFO("text " << show(text));
    const auto ids = a.encode(text);
    CHECK(b.encode(text) == ids);
    CHECK(c.encode(text) == ids);
  }
}

TEST_CASE("Byte-level BPE round-trips every hostile string", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kData / "bpe" / "json");
  for (const json& e : expected()["tokenizers"]["bpe"]["encode"]) {
    const std::string text = e["text"];
    INFO("text " << show(text));
    CHECK(tok.decode(tok.encode(text), false) == text);
    if (text.find("<|endoftext|>") == std::string::npos) {
      CHECK(tok.decode(tok.encode(text), true) == text);
    }
  }
  // Skipping special tokens drops the one that encode split out.
  const auto ids = tok.encode("Hello<|endoftext|>world");
  CHECK(tok.decode(ids, true) == "Helloworld");
  // A long single word takes the heap merge path (no quadratic blow-up) and round-trips.
  std::string word;
  for (int i = 0; i < 30000; ++i) word += "the"[i % 3];
  CHECK(tok.decode(tok.encode(word), false) == word);
}

TEST_CASE("Vocabulary lookups agree with vocab.json", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kData / "bpe" / "files");
  const json vocab = json::parse(read_text(kData / "bpe" / "files" / "vocab.json"));
  REQUIRE(tok.vocab_size() == static_cast<std::int64_t>(vocab.size()));
  for (const auto& [token, id] : vocab.items()) {
    CHECK(tok.token_id(token) == std::optional<std::int64_t>(id.get<std::int64_t>()));
    CHECK(tok.token_string(id.get<std::int64_t>()) == token);
  }
  const auto eot = tok.token_id("<|endoftext|>");
  REQUIRE(eot.has_value());
  CHECK(*eot == tok.vocab_size() - 1);
  CHECK(tok.is_special(*eot));
  CHECK_FALSE(tok.is_special(0));
  CHECK_FALSE(tok.is_special(-1));
  CHECK_FALSE(tok.token_id("not-a-token-at-all").has_value());
  CHECK(tok.token_string(*tok.token_id("\xC4\xA0")) == "\xC4\xA0");  // "Ġ", the space byte
  CHECK_THROWS_AS(tok.token_string(-1), xcaption::InputError);
  CHECK_THROWS_AS(tok.token_string(tok.vocab_size()), xcaption::InputError);
  // Ids without a token are skipped by decode, as HF does; negative ones too.
  const std::vector<std::int64_t> odd{-5, *tok.token_id("a"), tok.vocab_size() + 7};
  CHECK(tok.decode(odd, false) == "a");
}

TEST_CASE("BPE heap merge equals the one-merge-at-a-time definition", "[tokenizer]") {
  const json vocab_json = json::parse(read_text(kData / "bpe" / "files" / "vocab.json"));
  xcaption::BpeModel::Vocab vocab;
  std::vector<std::string> by_id(vocab_json.size());
  for (const auto& [token, id] : vocab_json.items()) {
    vocab[token] = id.get<std::int64_t>();
    by_id[id.get<std::size_t>()] = token;
  }
  std::vector<std::pair<std::string, std::string>> merges;
  std::ifstream in(kData / "bpe" / "files" / "merges.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("#version", 0) == 0) continue;
    const auto sp = line.find(' ');
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> rank;
  for (std::size_t r = 0; r < merges.size(); ++r) {
    rank[{vocab.at(merges[r].first), vocab.at(merges[r].second)}] = r;
  }
  const xcaption::BpeModel model(vocab, merges, {}, "test");
  REQUIRE(model.merge_count() == merges.size());

  // Symbols drawn from the characters that the merges use most.
  std::vector<std::int64_t> letters;
  for (const char* ch : {"t", "h", "e", "d", "o", "g", "s", "a", "r", "i", "n", "'", "\xC4\xA0"}) {
    letters.push_back(vocab.at(ch));
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<std::int64_t> symbols(1 + rng() % 24);
    for (auto& s : symbols) s = letters[rng() % letters.size()];
    std::vector<std::int64_t> naive = symbols;
    while (true) {
      std::size_t best = merges.size(), at = 0;
      for (std::size_t i = 0; i + 1 < naive.size(); ++i) {
        const auto it = rank.find({naive[i], naive[i + 1]});
        if (it != rank.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == merges.size()) break;
      naive[at] = vocab.at(by_id[naive[at]] + by_id[naive[at + 1]]);
      naive.erase(naive.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    std::vector<std::int64_t> fast = symbols;
    model.merge(fast);
    CHECK(fast == naive);
  }
}

TEST_CASE("WordLevel details: unk, lowercase, template, joined decode", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kData / "wordlevel");
  CHECK(tok.kind() == "wordlevel");
  const auto unk = tok.token_id("[UNK]");
  const auto dog = tok.token_id("dog");
  REQUIRE(unk.has_value());
  REQUIRE(dog.has_value());
  CHECK(tok.encode("DOG zzzqqq") == std::vector<std::int64_t>{*dog, *unk});
  CHECK(tok.encode("DOG", true) ==
        std::vector<std::int64_t>{*tok.token_id("[BOS]"), *dog, *tok.token_id("[EOS]")});
  const std::vector<std::int64_t> ids{*tok.token_id("[BOS]"), *dog, *unk, *dog};
  CHECK(tok.decode(ids, false) == "[BOS] dog [UNK] dog");
  CHECK(tok.decode(ids, true) == "dog dog");
}

TEST_CASE("Invalid UTF-8 input to encode is an InputError", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kData / "bpe" / "json");
  CHECK_THROWS_AS(tok.encode("abc\xFF"), xcaption::InputError);
  CHECK_THROWS_WITH(tok.encode("ab\xC3"), Catch::Contains("byte 2"));
  CHECK(tok.encode("").empty());
}

TEST_CASE("Concurrent encode calls agree with serial ones", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::load(kData / "bpe_variant");
  std::vector<std::string> texts;
  std::vector<std::vector<std::int64_t>> serial;
  for (const json& e : expected()["tokenizers"]["bpe_variant"]["encode"]) {
    texts.push_back(e["text"]);
  }
  // Fresh tokenizer for the threads so that they start with an empty cache and race to fill it.
  const Tokenizer shared = Tokenizer::load(kData / "bpe_variant");
  for (const auto& t : texts) serial.push_back(tok.encode(t));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (std::size_t i = 0; i < texts.size(); ++i) {
          const std::size_t k = (i + static_cast<std::size_t>(t) * 7) % texts.size();
          if (shared.encode(texts[k]) != serial[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches == 0);
}

TEST_CASE("Load errors name the file and the problem", "[tokenizer]") {
  const std::string good = read_text(kData / "bpe" / "json" / "tokenizer.json");

  SECTION("empty folder") {
    TempDir d("empty");
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer.json").string()));
    CHECK_THAT(msg, Catch::Contains("missing"));
  }
  SECTION("missing folder") {
    const fs::path nowhere = fs::temp_directory_path() / "xcaption_tok_no_such_dir";
    CHECK_THAT(error_message([&] { Tokenizer::load(nowhere); }),
               Catch::Contains((nowhere / "tokenizer.json").string()));
  }
  SECTION("vocab.json without merges.txt") {
    TempDir d("nomerges");
    d.write("vocab.json", R"({"a": 0})");
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "merges.txt").string()));
    CHECK_THAT(msg, Catch::Contains("missing"));
  }
  SECTION("malformed JSON") {
    TempDir d("badjson");
    d.write("tokenizer.json", good.substr(0, good.size() / 2));
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer.json").string()));
    CHECK_THAT(msg, Catch::Contains("not valid JSON"));
  }
  SECTION("unknown model type") {
    TempDir d("unigram");
    json j = json::parse(good);
    j["model"]["type"] = "Unigram";
    d.write("tokenizer.json", j.dump());
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer.json").string()));
    CHECK_THAT(msg, Catch::Contains("model type 'Unigram' is not supported"));
  }
  SECTION("unsupported pre-tokenizer and normalizer") {
    TempDir d("metaspace");
    json j = json::parse(good);
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("pre_tokenizer type 'Metaspace' is not supported"));
    j = json::parse(good);
    j["normalizer"] = {{"type", "NFKC"}};
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("normalizer type 'NFKC' is not supported"));
  }
  SECTION("merge with a token missing from the vocab") {
    TempDir d("badmerge");
    json j = json::parse(good);
    j["model"]["merges"].push_back("zz\xE2\x82\xAC qq");
    d.write("tokenizer.json", j.dump());
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "tokenizer.json").string()));
    CHECK_THAT(msg, Catch::Contains("not in the vocab"));
  }
  SECTION("wrong field types") {
    TempDir d("types");
    json j = json::parse(good);
    j["model"]["vocab"]["Ġthe"] = "seven";
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("model.vocab['Ġthe']: expected an integer"));
    j = json::parse(good);
    j.erase("model");
    d.write("tokenizer.json", j.dump());
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains("missing key 'model'"));
  }
  SECTION("bad vocab.json / merges.txt") {
    TempDir d("files");
    d.write("vocab.json", "[1, 2]");
    d.write("merges.txt", "#version: 0.2\n");
    CHECK_THAT(error_message([&] { Tokenizer::load(d.path); }),
               Catch::Contains((d.path / "vocab.json").string()));
    d.write("vocab.json", R"({"a": 0, "b": 1, "ab": 2})");
    d.write("merges.txt", "#version: 0.2\na b\na b c\n");
    const std::string msg = error_message([&] { Tokenizer::load(d.path); });
    CHECK_THAT(msg, Catch::Contains((d.path / "merges.txt").string()));
    CHECK_THAT(msg, Catch::Contains("line 3"));
  }
}
