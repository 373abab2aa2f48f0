// The CLI on the tiny Florence-2 checkpoints: --task and --text, --json's task result, --boxes,
// `info`'s task list and the errors of task flags on models without tasks.
#include <catch2/catch.hpp>

#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include <xcaption/image.hpp>

#include "tests/e2e/cli_runner.hpp"

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
