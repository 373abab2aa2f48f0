// The scenes and eval commands (tag [cli]).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <xcaption/scenes.hpp>

#include "src/eval/metrics.hpp"
#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
namespace sc = xcaption::scenes;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;
const std::string kTiny = (kData / "tiny-vit-gpt2").string();

struct ScratchDir {
  fs::path path = make_temp_dir("scenes");
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str(const std::string& sub = "") const { return (sub.empty() ? path : path / sub).string(); }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

void check_same_scene(const sc::Scene& got, const sc::Scene& want) {
  CHECK(got.file == want.file);
  CHECK(got.width == want.width);
  CHECK(got.height == want.height);
  CHECK(got.captions == want.captions);
  REQUIRE(got.objects.size() == want.objects.size());
  for (std::size_t k = 0; k < got.objects.size(); ++k) {
    CHECK(got.objects[k].shape == want.objects[k].shape);
    CHECK(got.objects[k].color == want.objects[k].color);
    CHECK(got.objects[k].size == want.objects[k].size);
    CHECK(got.objects[k].bbox == want.objects[k].bbox);
    CHECK(got.objects[k].center == want.objects[k].center);
  }
}

}  // namespace

TEST_CASE("scenes writes N PNGs and a JSONL equal to make_scene for the same seed and indices", "[cli]") {
  ScratchDir dir;
  const auto r = run_cli("scenes --count 6 --seed 41 --start-index 10 --min-objects 2 --max-objects 3 "
                         "--jpeg-probability 0.5 --out '" + dir.str("ds") + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("wrote 6 scenes") != std::string::npos);
  CHECK(r.out.find("seed 41") != std::string::npos);
  CHECK(r.err.empty());  // stderr is not a terminal: no progress

  const auto scenes = sc::read_scenes_jsonl(dir.path / "ds" / "scenes.jsonl");
  REQUIRE(scenes.size() == 6);
  sc::RenderOptions options;
  options.seed = 41;
  options.min_objects = 2;
  options.max_objects = 3;
  options.jpeg_probability = 0.5;
  std::size_t pngs = 0;
  for (const auto& entry : fs::directory_iterator(dir.path / "ds")) pngs += entry.path().extension() == ".png";
  CHECK(pngs == 6);
  for (std::int64_t i = 0; i < 6; ++i) {
    INFO("scene index " << 10 + i);
    sc::SceneImage image;
    const sc::Scene want = sc::make_scene(options, 10 + i, &image);
    check_same_scene(scenes[static_cast<std::size_t>(i)], want);
    CHECK(want.file == sc::scene_file_name(10 + i));
    CHECK(want.objects.size() >= 2);
    // The PNG holds exactly the rendered pixels.
    const cv::Mat png = cv::imread((dir.path / "ds" / want.file).string(), cv::IMREAD_COLOR);
    REQUIRE(png.cols == image.width);
    REQUIRE(png.rows == image.height);
    REQUIRE(png.isContinuous());
    CHECK(std::equal(image.bgr.begin(), image.bgr.end(), png.data));
  }
  // No temporary files are left behind.
  for (const auto& entry : fs::directory_iterator(dir.path / "ds"))
    CHECK(entry.path().extension() != ".tmp");
}

TEST_CASE("scenes rejects bad options with a usage error", "[cli]") {
  ScratchDir dir;
  const std::string out = " --out '" + dir.str("ds") + "'";
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"scenes --seed 1" + out, "--count is required"},
      {"scenes --count 3" + out, "--seed is required"},
      {"scenes --count 3 --seed 1", "--out is required"},
      {"scenes --count -2 --seed 1" + out, "--count must be >= 0"},
      {"scenes --count 3 --seed -1" + out, "--seed must be an integer"},
      {"scenes --count 3 --seed 12abc" + out, "--seed must be an integer"},
      {"scenes --count 3 --seed 1 --min-objects 0" + out, "--min-objects"},
      {"scenes --count 3 --seed 1 --min-objects 3 --max-objects 2" + out, "--max-objects"},
      {"scenes --count 3 --seed 1 --max-objects 4" + out, "--max-objects"},
      {"scenes --count 3 --seed 1 --jpeg-probability 1.5" + out, "--jpeg-probability"},
      {"scenes --count 3 --seed 1 --start-index -1" + out, "--start-index"},
      {"scenes --count three --seed 1" + out, "count"},
      {"scenes --count 3 --seed 1 --colour red" + out, "colour"},
      {"scenes --count 3 --seed 1 extra" + out, "scenes:"},
  };
  for (const auto& c : cases) {
    const auto r = run_cli(c.args);
    INFO(c.args << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("xcaption: error:") != std::string::npos);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.out.empty());
  }
  CHECK_FALSE(fs::exists(dir.path / "ds"));  // nothing was written

  const auto help = run_cli("scenes --help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("usage: xcaption scenes") != std::string::npos);
  CHECK(help.out.find("--jpeg-probability") != std::string::npos);
}

TEST_CASE("eval on a missing folder fails naming scenes.jsonl", "[cli]") {
  ScratchDir dir;
  const std::string missing = dir.str("no-such-dataset");
  const auto r = run_cli("eval --data '" + missing + "' --model '" + kTiny + "'");
  CHECK(r.exit_code == 3);
  CHECK(r.err.find(missing + "/scenes.jsonl") != std::string::npos);
  CHECK(r.out.empty());

  const auto no_data = run_cli("eval --model '" + kTiny + "'");
  CHECK(no_data.exit_code == 2);
  CHECK(no_data.err.find("either --data DIR or --style") != std::string::npos);
}

TEST_CASE("scenes --style: train is the default, unseen and wide are deterministic and reach 9:16..16:9",
          "[cli]") {
  ScratchDir dir;
  for (const char* style : {"train", "unseen", "wide"}) {
    for (const char* copy : {"a", "b"}) {
      const auto r = run_cli(std::string("scenes --count 40 --seed 9 --style ") + style + " --out '" +
                             dir.str(std::string(style) + copy) + "'");
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    }
    CHECK(read_file(dir.path / (std::string(style) + "a") / "scenes.jsonl") ==
          read_file(dir.path / (std::string(style) + "b") / "scenes.jsonl"));
  }
  REQUIRE(run_cli("scenes --count 40 --seed 9 --out '" + dir.str("default") + "'").exit_code == 0);
  CHECK(read_file(dir.path / "default" / "scenes.jsonl") == read_file(dir.path / "traina" / "scenes.jsonl"));
  CHECK(read_file(dir.path / "unseena" / "scenes.jsonl") != read_file(dir.path / "traina" / "scenes.jsonl"));
  double lo = 10, hi = 0;
  std::istringstream lines(read_file(dir.path / "unseena" / "scenes.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    const double aspect = j["width"].get<double>() / j["height"].get<double>();
    lo = std::min(lo, aspect);
    hi = std::max(hi, aspect);
  }
  CHECK(lo >= 9.0 / 16 - 0.01);
  CHECK(hi <= 16.0 / 9 + 0.01);
  CHECK(lo < 0.8);  // outside the train style's 5:4
  CHECK(hi > 1.25);
  const auto bad = run_cli("scenes --count 1 --seed 9 --style odd --out '" + dir.str("odd") + "'");
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("train, wide, unseen") != std::string::npos);
}

TEST_CASE("eval rejects a bad --layer", "[cli]") {
  ScratchDir dir;
  REQUIRE(run_cli("scenes --count 1 --seed 2 --out '" + dir.str("ds") + "'").exit_code == 0);
  auto r = run_cli("eval --data '" + dir.str("ds") + "' --model '" + kTiny + "' --layer top");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--layer") != std::string::npos);
  r = run_cli("eval --data '" + dir.str("ds") + "' --model '" + kTiny + "' --layer 2");  // the tiny decoder has 2
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("2 layers") != std::string::npos);
}

TEST_CASE("eval captions every scene, writes metrics JSON and details, and enforces thresholds", "[cli]") {
  // The tiny checkpoint emits words outside the grammar: the structure metrics are 0 but everything
  // is computed and written; the captions must equal what `caption` prints.
  ScratchDir dir;
  REQUIRE(run_cli("scenes --count 4 --seed 5 --out '" + dir.str("ds") + "'").exit_code == 0);
  const std::string base = "eval --data '" + dir.str("ds") + "' --model '" + kTiny + "' --threads 1";
  const auto r = run_cli(base + " --limit 3 --json '" + dir.str("m.json") + "' --details '" + dir.str("d.jsonl") + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* row : {"exact match", "BLEU-4", "CIDEr-D", "object precision", "object recall", "object F1",
                          "relation accuracy", "count accuracy", "parse rate", "pointing game"})
    CHECK(r.out.find(row) != std::string::npos);
  CHECK(r.out.find("eval: 3 images") != std::string::npos);

  const json m = json::parse(read_file(dir.path / "m.json"));
  CHECK(m["images"] == 3);
  const auto details = lines_of(read_file(dir.path / "d.jsonl"));
  REQUIRE(details.size() == 3);
  const auto scenes = sc::read_scenes_jsonl(dir.path / "ds" / "scenes.jsonl");
  std::vector<std::string> captions;
  std::vector<std::vector<std::string>> references;
  for (std::size_t i = 0; i < details.size(); ++i) {
    const json d = json::parse(details[i]);
    CHECK(d["file"] == scenes[i].file);
    CHECK(d["references"].get<std::vector<std::string>>() == scenes[i].captions);
    const auto single = run_cli("caption --model '" + kTiny + "' '" + (dir.path / "ds" / scenes[i].file).string() + "'");
    REQUIRE(single.exit_code == 0);
    CHECK(d["caption"].get<std::string>() + "\n" == single.out);
    CHECK(d["parse"]["ok"] == sc::parse_caption(d["caption"].get<std::string>()).ok);
    CHECK(d["pointing"].is_array());
    captions.push_back(d["caption"]);
    references.push_back(scenes[i].captions);
  }
  // The reported overlap metrics are those of the captions in the details file.
  const auto bleu = xcaption::eval::corpus_bleu(captions, references);
  const auto cider = xcaption::eval::cider_d(captions, references);
  const json& metrics = m["metrics"];
  CHECK(metrics["bleu"]["bleu_4"].get<double>() == Approx(bleu.bleu[3]).margin(1e-15));
  CHECK(metrics["bleu"]["candidate_length"] == bleu.candidate_length);
  CHECK(metrics["cider_d"].get<double>() == Approx(cider.mean).margin(1e-12));
  CHECK(metrics["counts"]["scene_objects"] ==
        scenes[0].objects.size() + scenes[1].objects.size() + scenes[2].objects.size());
  CHECK(metrics["pointing"]["layer"] == "1");  // the default --layer last of a 2-layer decoder
  CHECK(metrics["pointing"]["rate"] == metrics["pointing"]["per_layer"][1]["rate"]);
  CHECK(metrics["pointing"]["per_layer"].size() == 2);
  for (const char* key : {"exact_match", "object_precision", "object_recall", "object_f1", "relation_accuracy",
                          "count_accuracy", "parse_rate"})
    CHECK(metrics.contains(key));
  CHECK_FALSE(fs::exists(dir.path / "m.json.tmp"));

  // Thresholds: object F1 is 0 for this model, so --min-object-f1 0.5 fails with code 7 naming it;
  // a threshold of 0 passes.
  const auto missed = run_cli(base + " --limit 1 --min-object-f1 0.5 --min-relation-accuracy 0");
  CHECK(missed.exit_code == 7);
  CHECK(missed.err.find("object F1") != std::string::npos);
  CHECK(missed.err.find("--min-object-f1") != std::string::npos);
  CHECK(missed.err.find("relation accuracy") == std::string::npos);
  CHECK(missed.out.find("object F1") != std::string::npos);  // the report is still printed
  const auto passed = run_cli(base + " --limit 1 --min-object-f1 0 --min-pointing 0");
  CHECK(passed.exit_code == 0);
}
