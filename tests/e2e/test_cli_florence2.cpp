// The CLI on the tiny Florence-2 checkpoints: --task and --text, --json's task result, --boxes,
// `info`'s task list, the errors of task flags on models without tasks, and --task on attend,
// batch jobs and video.
#include <catch2/catch.hpp>

#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include <xcaption/image.hpp>

#include "tests/e2e/cli_runner.hpp"
#include "tests/test_util.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kData = XCAPTION_TEST_DATA;
const std::string kRemote = (kData / "tiny-florence2-remote").string();
const std::string kNative = (kData / "tiny-florence2-native").string();
const std::string kImage = (kData / "golden_images" / "img_45x30.png").string();

const json& golden() {
  static const json g = [] {
    std::ifstream in(kData / "golden_florence2.json");
    return json::parse(in);
  }();
  return g;
}
const json& golden_case(const std::string& model, const std::string& task, const std::string& c) {
  return golden()["models"][model]["images"]["img_45x30.png"]["tasks"][task]["cases"][c];
}
// The tiny models' vision tower (encoders/davit.cpp) may not be implemented yet: then the
// cases print "XCAPTION-SKIPPED: ..." (CTest reports them as skipped) instead of passing.
bool tower_missing() {
  static const bool missing = [] {
    const auto r = run_cli("info --model '" + kRemote + "'");
    if (r.err.find("not implemented yet") == std::string::npos) return false;
    std::cout << "XCAPTION-SKIPPED: " << r.err << std::endl;
    return true;
  }();
  if (missing) std::cout << "XCAPTION-SKIPPED: the Florence-2 vision tower is not implemented yet" << std::endl;
  return missing;
}
}  // namespace

TEST_CASE("florence2 caption: the default task prints the post-processed caption", "[cli][florence2]") {
  if (tower_missing()) return;
  const auto r = run_cli("caption --model '" + kRemote + "' --max-new-tokens 32 '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json& c = golden_case("tiny-florence2-remote", "<CAPTION>", "beam3");
  CHECK(r.out == c["post_processed"]["<CAPTION>"].get<std::string>() + "\n");
}

TEST_CASE("florence2 caption --task <OD> --json gives the task, its text and result", "[cli][florence2]") {
  if (tower_missing()) return;
  for (const std::string model : {"tiny-florence2-remote", "tiny-florence2-native"}) {
    const auto r = run_cli("caption --model '" + (kData / model).string() + "' --task '<OD>' --max-new-tokens 32 --json '" +
                           kImage + "'");
    INFO(model << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    const json& c = golden_case(model, "<OD>", "beam3");
    CHECK(j["task"] == "<OD>");
    CHECK(j["text"] == c["text"]);
    CHECK(j["result"] == c["post_processed"]);
    auto seq = c["sequence"].get<std::vector<std::int64_t>>();
    seq.erase(seq.begin());
    CHECK(j["token_ids"].get<std::vector<std::int64_t>>() == seq);
  }
}

TEST_CASE("florence2 caption --task with --text: phrase grounding", "[cli][florence2]") {
  if (tower_missing()) return;
  const json& task = golden()["models"]["tiny-florence2-native"]["images"]["img_45x30.png"]["tasks"]
                             ["<CAPTION_TO_PHRASE_GROUNDING>"];
  const std::string input = task["input"].get<std::string>();
  const std::string text = input.substr(std::string("<CAPTION_TO_PHRASE_GROUNDING>").size());
  const auto r = run_cli("caption --model '" + kNative + "' --task '<CAPTION_TO_PHRASE_GROUNDING>' --text '" + text +
                         "' --beams 1 --max-new-tokens 32 --json '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["result"] == task["cases"]["greedy"]["post_processed"]);
}

TEST_CASE("florence2 caption --boxes draws the detected box on the image", "[cli][florence2]") {
  if (tower_missing()) return;
  const auto dir = make_temp_dir("boxes");
  const auto png = dir / "boxes.png";
  const auto r = run_cli("caption --model '" + kRemote + "' --task '<OD>' --max-new-tokens 32 --boxes '" +
                         png.string() + "' '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(std::filesystem::exists(png));
  const xcaption::RgbImage in = xcaption::load_image(kImage), out = xcaption::load_image(png);
  REQUIRE(out.width == in.width);
  REQUIRE(out.height == in.height);
  std::size_t changed = 0;
  for (std::size_t i = 0; i < in.data.size(); ++i) changed += in.data[i] != out.data[i];
  CHECK(changed > 0);
  // A caption task has nothing to draw: the image comes out unchanged.
  const auto plain = dir / "plain.png";
  REQUIRE(run_cli("caption --model '" + kRemote + "' --boxes '" + plain.string() + "' '" + kImage + "'").exit_code == 0);
  CHECK(xcaption::load_image(plain).data == in.data);
  std::filesystem::remove_all(dir);
}

TEST_CASE("florence2 cli: --task and --text on a model without tasks are errors", "[cli][florence2]") {
  const std::string tiny = (kData / "tiny-vit-gpt2").string();
  const auto no_tasks = run_cli("caption --model '" + tiny + "' --task '<OD>' '" + kImage + "'");
  CHECK(no_tasks.exit_code == 5);
  CHECK(no_tasks.err.find("has no tasks") != std::string::npos);
  const auto text = run_cli("caption --model '" + tiny + "' --text 'a car' '" + kImage + "'");
  CHECK(text.exit_code == 5);
  CHECK(text.err.find("--text") != std::string::npos);
  const auto boxes = run_cli("caption --model '" + tiny + "' --boxes /tmp/xcaption-no-boxes.png '" + kImage + "'");
  CHECK(boxes.exit_code == 5);
  CHECK(boxes.err.find("no tasks") != std::string::npos);
}

TEST_CASE("florence2 info lists the tasks and task flags are errors where they cannot apply", "[cli][florence2]") {
  if (tower_missing()) return;
  const auto info = run_cli("info --model '" + kRemote + "' --json");
  INFO(info.err);
  REQUIRE(info.exit_code == 0);
  const json j = json::parse(info.out);
  CHECK(j["family"] == "florence2");
  CHECK(j["tasks"]["default"] == "<CAPTION>");
  CHECK(j["tasks"]["all"].size() == 15);

  const auto unknown = run_cli("caption --model '" + kRemote + "' --task '<NOPE>' '" + kImage + "'");
  CHECK(unknown.exit_code == 5);
  CHECK(unknown.err.find("unknown task '<NOPE>'") != std::string::npos);
  const auto extra = run_cli("caption --model '" + kRemote + "' --task '<OD>' --text cars '" + kImage + "'");
  CHECK(extra.exit_code == 5);
  CHECK(extra.err.find("takes no --text") != std::string::npos);
  const auto prompt = run_cli("caption --model '" + kRemote + "' --prompt 'a photo' '" + kImage + "'");
  CHECK(prompt.exit_code == 5);
  CHECK(prompt.err.find("--task") != std::string::npos);
  const auto boxes_many = run_cli("caption --model '" + kRemote + "' --boxes /tmp/x.png '" + kImage + "' '" + kImage + "'");
  CHECK(boxes_many.exit_code == 2);
}

// attend, batch jobs and video take --task like caption does: the task reaches the encoder prompt
// (other tokens than the default task's) and each gives caption --task's answer.
TEST_CASE("florence2 attend --task: the task's tokens and result, one normalised map per token", "[cli][florence2]") {
  if (tower_missing()) return;
  for (const std::string model : {"tiny-florence2-remote", "tiny-florence2-native"}) {
    const TempDir tmp("f2attend");
    const auto r = run_cli("attend --model '" + (kData / model).string() + "' --task '<OD>' --max-new-tokens 32 --json -o '" +
                           (tmp.path / "a.png").string() + "' '" + kImage + "'");
    INFO(model << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    const json& c = golden_case(model, "<OD>", "beam3");
    CHECK(j["task"] == "<OD>");
    CHECK(j["result"] == c["post_processed"]);
    auto seq = c["sequence"].get<std::vector<std::int64_t>>();
    seq.erase(seq.begin());  // the decoder start token
    REQUIRE(j["tokens"].size() == seq.size());
    for (std::size_t i = 0; i < seq.size(); ++i) {
      CHECK(j["tokens"][i]["id"].get<std::int64_t>() == seq[i]);
      double sum = 0;
      for (const auto& row : j["tokens"][i]["map"]) {
        REQUIRE(row.size() == j["grid"][1].get<std::size_t>());
        for (const auto& v : row) sum += v.get<double>();
      }
      CHECK(sum == Approx(1.0).margin(1e-4));
    }
    CHECK(std::filesystem::file_size(tmp.path / "a.png") > 0);
    // The default task decodes other tokens on this image (golden <CAPTION> beam 3 differs).
    const auto d = run_cli("attend --model '" + (kData / model).string() + "' --max-new-tokens 32 --json -o '" +
                           (tmp.path / "b.png").string() + "' '" + kImage + "'");
    REQUIRE(d.exit_code == 0);
    const json dj = json::parse(d.out);
    CHECK(dj["task"] == "<CAPTION>");
    std::vector<std::int64_t> ids;
    for (const auto& t : dj["tokens"]) ids.push_back(t["id"]);
    CHECK(ids != seq);
  }
}

TEST_CASE("florence2 batch job: --task over a folder, --batch 1 and 3, one JSON line per image", "[cli][florence2]") {
  if (tower_missing()) return;
  const TempDir tmp("f2batch");
  const auto in = tmp.path / "in";
  std::filesystem::create_directories(in);
  for (const char* n : {"a.png", "b.png", "c.png"}) std::filesystem::copy_file(kImage, in / n);
  const json& c = golden_case("tiny-florence2-remote", "<OCR_WITH_REGION>", "greedy");
  for (const char* batch : {"1", "3"}) {
    const auto out = tmp.path / (std::string("out") + batch + ".jsonl");
    const auto r = run_cli("caption --model '" + kRemote + "' --task '<OCR_WITH_REGION>' --beams 1 --max-new-tokens 32 --batch " +
                           batch + " --jsonl '" + out.string() + "' '" + in.string() + "'");
    INFO("batch " << batch << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    std::ifstream f(out);
    std::string line;
    std::set<std::string> names;
    while (std::getline(f, line)) {
      const json j = json::parse(line);
      names.insert(std::filesystem::path(j["image"].get<std::string>()).filename().string());
      CHECK(j["task"] == "<OCR_WITH_REGION>");
      CHECK(j["result"] == c["post_processed"]);
    }
    CHECK(names == std::set<std::string>{"a.png", "b.png", "c.png"});
  }
}

TEST_CASE("florence2 video --task: each segment's caption is caption --task's on its frame", "[cli][florence2]") {
  if (tower_missing()) return;
  const TempDir tmp("f2video");
  const std::string video = (std::filesystem::path(XCAPTION_SOURCE_DIR) / "samples" / "data" / "shapes.mp4").string();
  std::map<std::string, std::vector<json>> runs;
  for (const std::string task : {"<OD>", "<CAPTION>"}) {
    const auto jl = tmp.path / "v.jsonl";
    std::filesystem::remove(jl);
    const auto r = run_cli("video --model '" + kRemote + "' --task '" + task + "' --max-new-tokens 6 --stabilizer none " +
                           "--diff-threshold 0 '" + video + "' --jsonl '" + jl.string() + "'");
    INFO(task << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    std::ifstream f(jl);
    std::string line;
    while (std::getline(f, line)) runs[task].push_back(json::parse(line));
    REQUIRE(runs[task].size() >= 2);
  }
  std::vector<std::string> od, plain;
  for (const auto& s : runs["<OD>"]) od.push_back(s["caption"]);
  for (const auto& s : runs["<CAPTION>"]) plain.push_back(s["caption"]);
  CHECK(od != plain);  // the task reached the model
  // Each <OD> segment starts at a sampled frame: caption --task <OD> on that frame (as PNG) agrees.
  cv::VideoCapture cap(video);
  REQUIRE(cap.isOpened());
  std::int64_t index = 0;
  cv::Mat frame;
  for (const auto& s : runs["<OD>"]) {
    const std::int64_t want = s["frame"].get<std::int64_t>();
    while (index <= want) {
      REQUIRE(cap.read(frame));
      ++index;
    }
    const auto png = tmp.path / ("frame" + std::to_string(want) + ".png");
    REQUIRE(cv::imwrite(png.string(), frame));
    const auto r = run_cli("caption --model '" + kRemote + "' --task '<OD>' --max-new-tokens 6 --json '" + png.string() + "'");
    REQUIRE(r.exit_code == 0);
    CHECK(json::parse(r.out)["caption"] == s["caption"]);
  }
}
