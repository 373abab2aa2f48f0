// `xcaption bench` and `--dtype` on the tiny golden checkpoint (what is reported, not how fast).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kData = XCAPTION_TEST_DATA;
const std::string kTiny = (kData / "tiny-vit-gpt2").string();
const std::string kImage = (kData / "golden_images" / "img_45x30.png").string();
}  // namespace

TEST_CASE("bench --json reports every stage for the requested run", "[cli][perf]") {
  const auto r = run_cli("bench --json --no-roofline --model '" + kTiny + "' --image '" + kImage +
                         "' --beams 2 --new-tokens 5 --repeats 2 --batch 3 --threads 1");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  CHECK(j["beams"] == 2);
  CHECK(j["threads"] == 1);
  CHECK(j["dtype"] == "f32");
  CHECK(j["generated_tokens"] == 5);  // end-of-text suppressed until --new-tokens
  CHECK(j["end_to_end_ms"].size() == 2);
  for (const char* k : {"preprocess", "encoder", "cross_kv", "decode", "per_token", "end_to_end"})
    CHECK(j["median_ms"][k].get<double>() > 0);
  CHECK(j["median_ms"]["end_to_end"].get<double>() >= j["median_ms"]["decode"].get<double>());
  CHECK(j["batch"]["size"] == 3);
  CHECK(j["batch"]["images_per_s"].get<double>() > 0);
  CHECK(j["peak_rss_bytes"].get<double>() > 0);
  CHECK(j["weights_f32_bytes"].get<double>() > 0);
  CHECK(j["encoder_gflop"].get<double>() > 0);
  CHECK(!j.contains("matmul_peak_gflops"));
}

TEST_CASE("bench measures the roofline and rejects bad settings", "[cli][perf]") {
  const auto r = run_cli("bench --json --model '" + kTiny + "' --repeats 1 --new-tokens 2 --threads 1");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  CHECK(j["matmul_peak_gflops"].get<double>() > 1);
  CHECK(j["read_bandwidth_gbps"].get<double>() > 0.5);
  CHECK(j["decode_fraction_of_floor"].get<double>() > 0);
  CHECK(run_cli("bench --model '" + kTiny + "' --beams 0").exit_code == 2);
  CHECK(run_cli("bench --model '" + kTiny + "' --dtype f16").exit_code == 2);
}

TEST_CASE("caption --dtype bf16 runs the bf16 path and info names it", "[cli][perf]") {
  const auto r = run_cli("caption --json --dtype bf16 --model '" + kTiny + "' --max-new-tokens 4 '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  CHECK(j["token_ids"].size() >= 1);
  CHECK(j["token_ids"].size() <= 4);
  const auto info = run_cli("info --json --dtype bf16 --model '" + kTiny + "'");
  INFO(info.err);
  REQUIRE(info.exit_code == 0);
  CHECK(json::parse(info.out)["compute_dtype"] == "bf16");
}
