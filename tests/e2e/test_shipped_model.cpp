// The bundled default model on held-out scenes, and the training recipe that produced it still
// running end to end (a micro model, exported, loaded by the engine).
//
// 100 held-out scenes: issue 3's thresholds (object F1 0.97, relation accuracy 0.95, pointing game
// 0.90), asserted through `xcaption eval --min-*` (exit 7 on a miss) and the JSON metrics.
// 1000 held-out scenes: regression floors a little under what the shipped model measures there
// (see its model card). The pointing game uses eval's default, the last decoder layer.
#include <catch2/catch.hpp>

#include <set>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kRoot = XCAPTION_SOURCE_DIR;
const std::string kModel = (kRoot / "models" / "shapes-small").string();

// Renders `count` scenes of the reserved evaluation seed 2026 (tools/train_shapes.py trains on 101
// and validates on 102) and evaluates the bundled model on them with extra eval flags.
json eval_heldout(const TempDir& dir, int count, const std::string& flags, int expected_exit = 0) {
  const auto data = dir.path / "scenes";
  const auto render = run_cli("scenes --count " + std::to_string(count) + " --seed 2026 --out '" + data.string() + "'");
  INFO(render.err);
  REQUIRE(render.exit_code == 0);
  const auto metrics = dir.path / "metrics.json";
  const auto r = run_cli("eval --model '" + kModel + "' --data '" + data.string() + "' --json '" + metrics.string() +
                         "' " + flags);
  INFO(r.out << r.err);
  CHECK(r.exit_code == expected_exit);
  REQUIRE(std::filesystem::exists(metrics));
  const json m = json::parse(read_file(metrics));
  CHECK(m["images"] == count);
  return m;
}
}  // namespace

TEST_CASE("bundled model meets issue 3's thresholds on 100 held-out scenes (seed 2026)", "[model]") {
  TempDir dir("heldout100");
  const json m = eval_heldout(dir, 100, "--min-object-f1 0.97 --min-relation-accuracy 0.95 --min-pointing 0.90");
  INFO(m.dump(2));
  // Measured 2026-11-28: object F1 0.995, relation 1.000 (35/35), order 0.970, pointing 0.995
  // (last layer; 0.920 for the mean of both layers), count and parse 1.00. No greedy decision on
  // these scenes is close: the smallest gap between the top two logits over every step is 0.13
  // (float32, the training code's forward), far above what a different summation order (another
  // CPU's kernels) changes.
  CHECK(m["metrics"]["object_f1"].get<double>() >= 0.97);
  CHECK(m["metrics"]["relation_accuracy"].get<double>() >= 0.95);
  CHECK(m["metrics"]["pointing"]["rate"].get<double>() >= 0.90);
  CHECK(m["metrics"]["parse_rate"].get<double>() == 1.0);
  CHECK(m["metrics"]["count_accuracy"].get<double>() >= 0.98);
}

TEST_CASE("bundled model keeps its measured quality on 1000 held-out scenes (seed 2026)", "[model]") {
  TempDir dir("heldout1000");
  // A threshold the model misses must turn into exit code 7.
  const json m = eval_heldout(dir, 1000, "--min-relation-accuracy 0.99", 7);
  INFO(m.dump(2));
  // Measured 2026-11-28: object F1 0.977, relation 0.954, order 0.928, pointing 0.991 (last
  // layer; layer 0 0.726, mean 0.894), count and parse 1.00, exact match 0.956, BLEU-4 0.989,
  // CIDEr-D 9.11.
  CHECK(m["metrics"]["object_f1"].get<double>() >= 0.97);
  CHECK(m["metrics"]["relation_accuracy"].get<double>() >= 0.94);  // 0.95 would leave one scene of margin
  CHECK(m["metrics"]["order_accuracy"].get<double>() >= 0.91);
  CHECK(m["metrics"]["pointing"]["rate"].get<double>() >= 0.98);
  CHECK(m["metrics"]["pointing"]["layer"] == "1");
  CHECK(m["metrics"]["count_accuracy"].get<double>() >= 0.99);
  CHECK(m["metrics"]["parse_rate"].get<double>() == 1.0);
  CHECK(m["metrics"]["exact_match"].get<double>() >= 0.94);
}

TEST_CASE("bundled model on 200 scenes of the unseen style (issue 15): floors and error analysis", "[model]") {
  TempDir dir("unseen200");
  const auto metrics = dir.path / "unseen.json";
  const auto r = run_cli("eval --model '" + kModel + "' --style unseen --seed 2026 --count 200 --json '" +
                         metrics.string() + "' --min-pointing 0.95");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("recall by aspect:") != std::string::npos);
  REQUIRE(std::filesystem::exists(metrics));
  const json m = json::parse(read_file(metrics));
  CHECK(m["style"]["style"] == "unseen");
  CHECK(m["images"] == 200);
  // Measured 2026-12-02 (the model of issue 3, never trained on this style): object F1 0.633,
  // relation 0.309, order 0.279, pointing 0.988, parse 1.00. Floors for this model only; issue 15's
  // targets (F1 0.97, relation 0.95) are for the retrained one.
  CHECK(m["metrics"]["object_f1"].get<double>() >= 0.58);
  CHECK(m["metrics"]["pointing"]["rate"].get<double>() >= 0.95);
  CHECK(m["metrics"]["parse_rate"].get<double>() >= 0.99);
  // The breakdown covers every size word and the canvas shapes from 9:16 to 16:9.
  std::set<std::string> groups;
  std::int64_t size_objects = 0;
  for (const auto& g : m["metrics"]["breakdown"]) {
    groups.insert(g["group"].get<std::string>() + ":" + g["value"].get<std::string>());
    if (g["group"] == "size") size_objects += g["objects"].get<std::int64_t>();
    CHECK(g["matched"].get<std::int64_t>() <= g["objects"].get<std::int64_t>());
  }
  CHECK(size_objects == m["metrics"]["counts"]["scene_objects"].get<std::int64_t>());
  for (const char* want : {"size:small", "size:large", "shape:cross", "color:black", "aspect:tall", "aspect:wide"})
    CHECK(groups.count(want) == 1);
}

TEST_CASE("the bundled model is the default and captions the samples", "[model]") {
  const auto samples = kRoot / "samples" / "data";
  std::vector<std::string> images;
  for (const auto& e : std::filesystem::directory_iterator(samples))
    if (e.path().extension() == ".png") images.push_back(e.path().string());
  std::sort(images.begin(), images.end());
  REQUIRE(images.size() >= 4);
  std::string args = "caption";
  for (const auto& i : images) args += " '" + i + "'";
  const auto r = run_cli(args, "env -u XCAPTION_MODEL");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // One "file: caption" line per image, every caption inside the shapes grammar's words.
  std::istringstream lines(r.out);
  std::string line;
  std::size_t n = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    REQUIRE(n < images.size());
    CHECK(line.rfind(images[n] + ": a", 0) == 0);
    ++n;
  }
  CHECK(n == images.size());
}

TEST_CASE("training recipe smoke run: micro model trains, exports and loads in the engine", "[slow][train]") {
  TempDir dir("train-smoke");
  const auto out = dir.path / "model";
  const auto train = [&](const std::filesystem::path& to, const std::string& log, const std::string& flags = "--fresh") {
    const std::string cmd = "/usr/bin/python3 '" + (kRoot / "tools" / "train_shapes.py").string() +
                            "' --smoke " + flags + " --out '" + to.string() + "' --work '" + (dir.path / "work").string() +
                            "' --xcaption '" + std::string(XCAPTION_CLI_PATH) + "' > '" + (dir.path / log).string() +
                            "' 2>&1";
    return std::system(cmd.c_str());
  };
  const int status = train(out, "log.txt");
  INFO(read_file(dir.path / "log.txt"));
  REQUIRE(status == 0);
  // One command, fixed seeds: a second run from scratch (the rendered data reused) exports the
  // same bytes.
  const auto again = dir.path / "model-again";
  REQUIRE(train(again, "log-again.txt") == 0);
  CHECK(read_file(again / "model.safetensors") == read_file(out / "model.safetensors"));
  // An interrupted run (stopped at step 37 of 60, in the whole-scene phase) resumed from its
  // checkpoint ends with the same bytes as the uninterrupted one.
  REQUIRE(train(dir.path / "model-part", "log-part.txt", "--fresh --max-steps 37") == 0);
  const auto resumed = dir.path / "model-resumed";
  REQUIRE(train(resumed, "log-resumed.txt", "") == 0);
  INFO(read_file(dir.path / "log-resumed.txt"));
  CHECK(read_file(dir.path / "log-resumed.txt").find("resumed from") != std::string::npos);
  CHECK(read_file(resumed / "model.safetensors") == read_file(out / "model.safetensors"));
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json", "generation_config.json",
                        "tokenizer.json"})
    CHECK(std::filesystem::exists(out / f));
  const auto info = run_cli("info --json --model '" + out.string() + "'");
  INFO(info.err);
  REQUIRE(info.exit_code == 0);
  CHECK(json::parse(info.out)["family"] == "vit-gpt2");
  const auto cap = run_cli("caption --json --model '" + out.string() + "' '" +
                           (kRoot / "tests" / "data" / "golden_images" / "img_64x64.png").string() + "'");
  INFO(cap.err);
  REQUIRE(cap.exit_code == 0);
  const json j = json::parse(cap.out);
  CHECK(j["token_ids"].size() >= 1);
  CHECK(j["logprobs"].size() == j["token_ids"].size());
}
