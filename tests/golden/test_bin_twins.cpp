// pytorch_model.bin twins of the golden checkpoints (tools/make_bin_twins.py, written by torch.save)
// against their safetensors originals: every weight loads to the same float32 values, and
// captioning through the public API gives the same tokens, log-probs and scores.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>

#include "src/io/safetensors.hpp"
#include "src/io/weights.hpp"
#include "src/tensor/tensor.hpp"
#include "tests/test_util.hpp"

using namespace xcaption;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;
const fs::path kTwins = kData / "bin-twins";

const json& twins() {
  static const json j = [] {
    std::ifstream in(kTwins / "twins.json");
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

// A copy of `original` whose F32 tensors are rounded to F16 (round to nearest even, as torch's
// .half()): the safetensors counterpart of the F16 twin.
void write_f16_copy(const fs::path& original, const fs::path& dst) {
  fs::create_directories(dst);
  for (const char* f : {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"})
    fs::copy_file(original / f, dst / f);
  const SafeTensorsFile src = SafeTensorsFile::open(original / "model.safetensors");
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;
  for (const auto& t : src.tensors()) {
    std::string bytes(static_cast<const char*>(t.data), t.nbytes);
    std::string dtype = t.dtype_name;
    if (t.dtype_name == "F32") {
      const auto n = static_cast<std::size_t>(t.numel());
      std::vector<float> f(n);
      std::memcpy(f.data(), t.data, n * 4);
      std::vector<std::uint16_t> h(n);
      for (std::size_t i = 0; i < n; ++i) h[i] = f32_to_f16(f[i]);
      bytes.assign(reinterpret_cast<const char*>(h.data()), n * 2);
      dtype = "F16";
    }
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(dst / "model.safetensors", std::ios::binary);
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << text << data;
}

// The folder a twin is compared with.
fs::path reference_for(const std::string& name, const json& twin, const test::TempDir& tmp) {
  const fs::path original = kData / twin.at("original").get<std::string>();
  if (twin.at("layout") != "f16") return original;
  const fs::path copy = tmp.path / (name + "-f16-safetensors");
  if (!fs::exists(copy)) write_f16_copy(original, copy);
  return copy;
}

}  // namespace

TEST_CASE("bin twins: every weight loads to the values of the safetensors original", "[golden][torch]") {
  test::TempDir tmp("twins");
  REQUIRE(twins().size() >= 6);
  for (const auto& [name, twin] : twins().items()) {
    SECTION(name) {
      const fs::path ref_dir = reference_for(name, twin, tmp);
      const WeightStore ref = WeightStore::open(ref_dir);
      const WeightStore bin = WeightStore::open(kTwins / name);
      CHECK(ref.format() == "safetensors");
      CHECK(bin.format() == "pytorch (zip)");
      CHECK(bin.main_dtype() == ref.main_dtype());
      if (twin.at("layout") == "sharded") CHECK(bin.description() == "pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin");
      else CHECK(bin.description() == "pytorch_model.bin");

      const SafeTensorsFile src = SafeTensorsFile::open(ref_dir / "model.safetensors");
      std::size_t compared = 0;
      for (const auto& t : src.tensors()) {
        INFO(name << ": tensor " << t.name);
        REQUIRE(bin.has(t.name));
        CHECK(bin.shape(t.name) == t.shape);
        if (!t.supported) continue;  // integer buffers: recorded, never loaded
        CHECK(bin.dtype(t.name) == t.dtype);
        const FloatBuffer want = ref.load(t.name);
        const FloatBuffer got = bin.load(t.name);
        REQUIRE(got.size() == want.size());
        std::size_t first_bad = want.size();
        for (std::size_t i = 0; i < want.size() && first_bad == want.size(); ++i)
          if (std::memcmp(&got.data()[i], &want.data()[i], 4) != 0) first_bad = i;
        if (first_bad != want.size())
          FAIL(fmt::format("{} differs at [{}]: got {} want {}", t.name, first_bad, got.data()[first_bad],
                           want.data()[first_bad]));
        ++compared;
      }
      CHECK(compared > 40);
      if (twin.at("layout") == "tied") {
        // lm_head is the wte tensor itself in the file: same values through either name.
        const FloatBuffer a = bin.load("decoder.lm_head.weight"), b = bin.load("decoder.transformer.wte.weight");
        REQUIRE(a.size() == b.size());
        CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
      }
    }
  }
}

TEST_CASE("bin twins: captions, log-probs and scores equal the safetensors original's", "[golden][torch]") {
  test::TempDir tmp("twins");
  const std::vector<std::string> images = {"img_45x30.png", "img_64x64.png", "img_23x37_rgba.png"};
  for (const auto& [name, twin] : twins().items()) {
    SECTION(name) {
      Captioner ref = Captioner::load(reference_for(name, twin, tmp));
      Captioner bin = Captioner::load(kTwins / name);
      CHECK(bin.info().weights_dtype == ref.info().weights_dtype);
      CHECK(bin.info().parameters == ref.info().parameters);
      for (const auto& image : images) {
        for (const std::int64_t beams : {1, 3}) {
          INFO(name << " " << image << " beams " << beams);
          CaptionRequest request;
          request.generation.num_beams = beams;
          request.generation.max_new_tokens = 12;
          const CaptionResult want = ref.caption_file(kData / "golden_images" / image, request);
          const CaptionResult got = bin.caption_file(kData / "golden_images" / image, request);
          REQUIRE(!want.token_ids.empty());
          CHECK(got.token_ids == want.token_ids);
          CHECK(got.caption == want.caption);
          REQUIRE(got.logprobs.size() == want.logprobs.size());
          double worst = 0;
          for (std::size_t i = 0; i < want.logprobs.size(); ++i)
            worst = std::max(worst, std::abs(double(got.logprobs[i]) - want.logprobs[i]));
          INFO("max |log-prob difference| " << worst);
          CHECK(worst <= 1e-6);
          CHECK(std::abs(got.sequence_score - want.sequence_score) <= 1e-6);
        }
      }
    }
  }
}
