// The bundled default model on held-out scenes, and the training recipe that produced it still
// running end to end (a micro model, exported, loaded by the engine).
//
// The floors below are regression guards at the level the shipped model reaches (see its model
// card), NOT issue 3's targets (object F1 0.97, relation 0.95, pointing 0.90), which the current
// model misses: its shape recognition is weak. Raise them with the model.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kRoot = XCAPTION_SOURCE_DIR;
const std::string kModel = (kRoot / "models" / "shapes-small").string();
}  // namespace

TEST_CASE("bundled model keeps its measured quality on 100 held-out scenes (seed 2026)", "[model]") {
  TempDir dir("heldout");
  const auto data = dir.path / "scenes";
  // Seed 2026 is reserved for evaluation: tools/train_shapes.py trains on 101 and validates on 102.
  const auto render = run_cli("scenes --count 100 --seed 2026 --out '" + data.string() + "'");
  INFO(render.err);
  REQUIRE(render.exit_code == 0);
  const auto metrics = dir.path / "metrics.json";
  const auto r = run_cli("eval --model '" + kModel + "' --data '" + data.string() + "' --json '" + metrics.string() +
                         "' --min-object-f1 0.10 --min-pointing 0.45");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  REQUIRE(std::filesystem::exists(metrics));
  const json m = json::parse(read_file(metrics));
  INFO(m.dump(2));
  CHECK(m["images"] == 100);
  // Measured 2026-11-28: object F1 0.157, parse rate 1.00, count accuracy 0.84, pointing 0.645.
  CHECK(m["metrics"]["object_f1"].get<double>() >= 0.10);
  CHECK(m["metrics"]["parse_rate"].get<double>() >= 0.95);
  CHECK(m["metrics"]["count_accuracy"].get<double>() >= 0.70);
  CHECK(m["metrics"]["pointing"]["rate"].get<double>() >= 0.45);
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
  const std::string cmd = "/usr/bin/python3 '" + (kRoot / "tools" / "train_shapes.py").string() + "' --smoke --out '" +
                          out.string() + "' --work '" + (dir.path / "work").string() + "' --xcaption '" +
                          std::string(XCAPTION_CLI_PATH) + "' > '" + (dir.path / "log.txt").string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  INFO(read_file(dir.path / "log.txt"));
  REQUIRE(status == 0);
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
