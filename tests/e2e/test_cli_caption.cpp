// The caption / tokenize / info commands on the tiny golden checkpoints, and their errors.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "src/tokenizer/cleanup.hpp"
#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kData = XCAPTION_TEST_DATA;
const std::string kTiny = (kData / "tiny-vit-gpt2").string();
const std::string kTinyB = (kData / "tiny-vit-gpt2-b").string();
const std::string kImage = (kData / "golden_images" / "img_23x37_rgba.png").string();
const std::string kImage2 = (kData / "golden_images" / "img_45x30.png").string();

const json& golden() {
  static const json g = [] {
    std::ifstream in(kData / "golden.json");
    return json::parse(in);
  }();
  return g;
}
const json& golden_case(const std::string& model, const std::string& image, const std::string& c) {
  return golden()["models"][model]["images"][image]["cases"][c];
}
std::vector<std::int64_t> generated(const json& c) {
  auto seq = c["sequence"].get<std::vector<std::int64_t>>();
  seq.erase(seq.begin());
  return seq;
}
}  // namespace

TEST_CASE("caption prints the reference caption for one image", "[cli]") {
  const auto r = run_cli("caption --model '" + kTiny + "' '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == golden_case("tiny-vit-gpt2", "img_23x37_rgba.png", "greedy")["text"].get<std::string>() + "\n");
}

TEST_CASE("caption prefixes file names for several images and honours --beams", "[cli]") {
  const auto r = run_cli("caption --model '" + kTiny + "' --beams 2 '" + kImage + "' '" + kImage2 + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const std::string want = kImage + ": " + golden_case("tiny-vit-gpt2", "img_23x37_rgba.png", "beam2")["text"].get<std::string>() +
                           "\n" + kImage2 + ": " + golden_case("tiny-vit-gpt2", "img_45x30.png", "beam2")["text"].get<std::string>() + "\n";
  CHECK(r.out == want);
}

TEST_CASE("caption --json reports ids, tokens, log-probs, score and timings", "[cli]") {
  const auto r = run_cli("caption --json --model '" + kTinyB + "' '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  const json& c = golden_case("tiny-vit-gpt2-b", "img_23x37_rgba.png", "beam_default");
  CHECK(j["image"] == kImage);
  CHECK(j["caption"] == c["text"]);
  CHECK(j["token_ids"].get<std::vector<std::int64_t>>() == generated(c));
  CHECK(j["tokens"].size() == j["token_ids"].size());
  CHECK(j["tokens"].back() == "</s>");
  const auto lp = j["logprobs"].get<std::vector<double>>();
  const auto want_lp = c["token_logprobs"].get<std::vector<double>>();
  REQUIRE(lp.size() == want_lp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) CHECK(lp[i] == Approx(want_lp[i]).margin(1e-4));
  CHECK(j["sequence_score"].get<double>() == Approx(c["sequences_scores"].get<double>()).margin(1e-4));
  CHECK(j["num_beams"] == 3);
  for (const char* k : {"preprocess", "encoder", "cross_kv", "decode"}) CHECK(j["timings_ms"][k].get<double>() >= 0.0);
}

TEST_CASE("caption generation flags override the folder defaults", "[cli]") {
  const auto r = run_cli("caption --json --model '" + kTiny + "' --max-new-tokens 5 '" + kImage + "'");
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["token_ids"].get<std::vector<std::int64_t>>() ==
        generated(golden_case("tiny-vit-gpt2", "img_23x37_rgba.png", "greedy_max_new_tokens_5")));
  const auto rp = run_cli("caption --json --model '" + kTiny + "' --repetition-penalty 1.3 '" + kImage + "'");
  REQUIRE(rp.exit_code == 0);
  CHECK(json::parse(rp.out)["token_ids"].get<std::vector<std::int64_t>>() ==
        generated(golden_case("tiny-vit-gpt2", "img_23x37_rgba.png", "greedy_repetition_penalty_1.3")));
}

TEST_CASE("caption errors: unreadable image, missing model, bad flags", "[cli]") {
  const auto dir = make_temp_dir("badimg");
  const auto bad = dir / "corrupt.png";
  std::ofstream(bad) << "this is not a png";
  const auto r = run_cli("caption --model '" + kTiny + "' '" + bad.string() + "' '" + kImage + "'");
  CHECK(r.exit_code == 8);  // some images failed, others succeeded
  CHECK(r.err.find(bad.string()) != std::string::npos);
  CHECK(r.err.find("1 of 2 images failed") != std::string::npos);
  const auto only_bad = run_cli("caption --model '" + kTiny + "' '" + bad.string() + "'");
  CHECK(only_bad.exit_code == 3);  // every image failed: that failure's code
  // The good image is still captioned.
  CHECK(r.out.find(kImage + ": ") != std::string::npos);

  const auto missing = run_cli("caption --model '" + (dir / "nope").string() + "' '" + kImage + "'");
  CHECK(missing.exit_code == 3);
  CHECK(missing.err.find("nope") != std::string::npos);
  CHECK(missing.out.empty());

  const auto flag = run_cli("caption --beems 2 '" + kImage + "'");
  CHECK(flag.exit_code == 2);
  CHECK(flag.err.find("beems") != std::string::npos);

  const auto range = run_cli("caption --model '" + kTiny + "' --beams 0 '" + kImage + "'");
  CHECK(range.exit_code == 5);
  CHECK(range.err.find("num_beams") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a checkpoint that lies about a tensor's shape is rejected naming the tensor", "[cli]") {
  const auto dir = make_temp_dir("lying");
  std::filesystem::copy(kTiny, dir, std::filesystem::copy_options::recursive);
  {  // claim a wider MLP than the weights have
    std::ifstream in(dir / "config.json");
    json c = json::parse(in);
    c["decoder"]["n_inner"] = 100;
    std::ofstream(dir / "config.json") << c.dump(2);
  }
  const auto r = run_cli("info --model '" + dir.string() + "'");
  CHECK(r.exit_code == 4);
  CHECK(r.err.find("decoder.transformer.h.0.mlp.c_fc.weight") != std::string::npos);
  CHECK(r.err.find("expected [48, 100], got [48, 96]") != std::string::npos);

  // A truncated weights file: the header promises more bytes than the file has.
  const auto weights = dir / "model.safetensors";
  const auto size = std::filesystem::file_size(weights);
  std::filesystem::resize_file(weights, size / 2);
  const auto t = run_cli("caption --model '" + dir.string() + "' '" + kImage + "'");
  CHECK(t.exit_code == 3);
  CHECK(t.err.find("model.safetensors") != std::string::npos);
  CHECK(t.out.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("info describes the loaded model", "[cli]") {
  const auto r = run_cli("info --model '" + kTiny + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("ViT 32x32/8 (17 tokens), 2 layers, 32 wide, 4 heads") != std::string::npos);
  CHECK(r.out.find("GPT-2, 2 layers, 48 wide, 4 heads") != std::string::npos);
  CHECK(r.out.find("family       vit-gpt2") != std::string::npos);
  CHECK(r.out.find("vocab 60") != std::string::npos);
  CHECK(r.out.find("enc_to_dec_proj") != std::string::npos);
  CHECK(r.out.find("wordlevel") != std::string::npos);
  const auto j = run_cli("info --json --model '" + kTinyB + "'");
  REQUIRE(j.exit_code == 0);
  const json info = json::parse(j.out);
  CHECK(info["dtype"] == "BF16");
  CHECK(info["generation"]["num_beams"] == 3);
  CHECK(info["generation"]["max_length"] == 12);
  CHECK(info["enc_to_dec_proj"] == false);
  CHECK(info["grid"] == json::array({4, 4}));
}

TEST_CASE("tokenize encodes and decodes with the folder's tokenizer", "[cli]") {
  const auto r = run_cli("tokenize --model '" + kTiny + "' 'a man riding a horse' 'two dogs'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  CHECK_FALSE(first.empty());
  CHECK_FALSE(second.empty());
  // Decoding the ids gives the text back (words known to the vocabulary).
  const auto back = run_cli("tokenize --model '" + kTiny + "' --decode " + first);
  REQUIRE(back.exit_code == 0);
  CHECK(back.out == "a man riding a horse\n");
  const auto bad = run_cli("tokenize --model '" + kTiny + "' --decode 12x");
  CHECK(bad.exit_code == 2);
  const auto range = run_cli("tokenize --model '" + kTiny + "' --decode 100000");
  CHECK(range.exit_code == 5);
}

TEST_CASE("help is printed for every command and unknown commands fail", "[cli]") {
  for (const char* cmd : {"caption", "info", "tokenize"}) {
    const auto r = run_cli(std::string(cmd) + " --help");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find(std::string("usage: xcaption ") + cmd) != std::string::npos);
  }
  const auto u = run_cli("frobnicate");
  CHECK(u.exit_code == 2);
  CHECK(u.err.find("frobnicate") != std::string::npos);
}

TEST_CASE("clean_up_tokenization removes spaces before punctuation like transformers", "[tokenizer]") {
  CHECK(xcaption::clean_up_tokenization("a red circle , a blue square .") == "a red circle, a blue square.");
  CHECK(xcaption::clean_up_tokenization("it 's fine , is n't it ?") == "it's fine, isn't it?");
  CHECK(xcaption::clean_up_tokenization("no change") == "no change");
}

TEST_CASE("XCAPTION_MODEL selects the model when --model is absent", "[cli]") {
  const auto r = run_cli("caption '" + kImage + "'", "XCAPTION_MODEL='" + kTiny + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == golden_case("tiny-vit-gpt2", "img_23x37_rgba.png", "greedy")["text"].get<std::string>() + "\n");
  // --model wins over the variable.
  const auto both = run_cli("info --json --model '" + kTinyB + "'", "XCAPTION_MODEL='" + kTiny + "'");
  REQUIRE(both.exit_code == 0);
  CHECK(json::parse(both.out)["dtype"] == "BF16");
}

TEST_CASE("only src/backend/onednn includes oneDNN headers", "[seam]") {
  const std::filesystem::path root = XCAPTION_SOURCE_DIR;
  std::vector<std::string> offenders;
  for (const char* top : {"src", "include", "encoders", "decoder", "models"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root / top)) {
      if (!entry.is_regular_file()) continue;
      const auto ext = entry.path().extension();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".h") continue;
      const auto rel = std::filesystem::relative(entry.path(), root).generic_string();
      if (rel.rfind("src/backend/onednn/", 0) == 0) continue;
      const std::string text = read_file(entry.path());
      if (text.find("#include <oneapi/dnnl") != std::string::npos || text.find("#include \"dnnl") != std::string::npos ||
          text.find("#include <dnnl") != std::string::npos)
        offenders.push_back(rel);
    }
  }
  INFO("files including oneDNN outside src/backend/onednn: " << offenders.size());
  for (const auto& f : offenders) INFO(f);
  CHECK(offenders.empty());
}
