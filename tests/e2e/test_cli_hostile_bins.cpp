// The hostile pytorch_model.bin corpus (tools/make_hostile_bins.py) through `xcaption caption`:
// each file, placed in an otherwise valid model folder, is refused with exit code 3 and one error
// line naming the file and the problem; nothing crashes, nothing is printed on stdout, nothing is
// written into the folder and no code in the pickles runs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
namespace fs = std::filesystem;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;

// What each case's message must say (besides the path of the file).
const std::map<std::string, std::string>& expected() {
  static const std::map<std::string, std::string> m = {
      {"os_system", "refusing global 'os.system'"},
      {"posix_system", "refusing global 'posix.system'"},
      {"subprocess_popen", "refusing global 'subprocess.Popen'"},
      {"builtins_eval", "refusing global 'builtins.eval'"},
      {"builtins_exec", "refusing global 'builtins.exec'"},
      {"dunder_import", "refusing global 'builtins.__import__'"},
      {"functools_partial", "refusing global 'functools.partial'"},
      {"lookalike_rebuild_module", "refusing global '__main__._rebuild_tensor_v2'"},
      {"lookalike_rebuild_torch", "refusing global 'torch._rebuild_tensor_v2'"},
      {"stack_global_getattr", "refusing global 'builtins.getattr' (STACK_GLOBAL"},
      {"inst_opcode", "opcode INST (0x69)"},
      {"deep_lists", "containers nested deeper than 64 levels"},
      {"deep_tuples", "containers nested deeper than 64 levels"},
      {"mark_bomb", "more than 1024 MARKs open at once"},
      {"huge_string", "string of 4611686018427387904 bytes"},
      {"shape_overflow", "tensor 'w': size [4294967296, 4294967296, 4294967296] overflows"},
      {"byte_size_overflow", "tensor 'w': size [4611686018427387904] overflows"},
      {"offset_past_storage", "tensor 'w': storage_offset 9 lies past the end of storage '0' (4 elements)"},
      {"view_past_storage", "reach element 4 of storage '0', which holds 4 elements"},
      {"stride_overflow", "reach past 2^64 elements"},
      {"storage_size_mismatch", "holds 16 bytes, but the pickle declares 5 elements of torch.FloatStorage"},
      {"missing_storage", "storage record 'archive/data/7' (the storage of tensor 'w') is missing"},
      {"storage_type_conflict", "storage '0' is declared as 4 elements of torch.FloatStorage"},
      {"truncated_half", "no end of central directory record"},
      {"truncated_tail", "no end of central directory record"},
      {"corrupt_central_directory", "no local header at offset 85"},
      {"crc_mismatch", "entry 'archive/data.pkl' fails its CRC-32 check"},
      {"compressed_entries", "is compressed (deflate)"},
      {"duplicate_entry", "entry 'archive/data/0': appears twice in the central directory"},
      {"no_data_pkl", "without a <folder>/data.pkl record"},
      {"torchscript", "a TorchScript archive"},
      {"byteorder_big", "the byteorder record says 'big'"},
      {"duplicate_keys", "the key 'w' appears twice in the state dict"},
      {"non_tensor_value", "the value of 'w' is an int, not a tensor"},
      {"nested_checkpoint", "the value of 'model' is a dict, not a tensor"},
      {"not_a_dict", "the pickled object is a list, not a state dict"},
      {"unsupported_dtype", "tensor 'encoder.embeddings.cls_token': dtype I64 is not supported"},
      {"empty", "the file is empty (0 bytes)"},
      {"safetensors_renamed", "this is a safetensors file, not a torch.save archive"},
      {"not_a_zip", "not a torch.save zip archive (it starts with bytes 74 68 69 73"},
      {"legacy_format", "a legacy torch.save file"},
  };
  return m;
}

std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

}  // namespace

TEST_CASE("hostile pytorch_model.bin files are refused cleanly by caption", "[cli][torch]") {
  const fs::path corpus = kData / "hostile-bin";
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(corpus))
    if (e.path().extension() == ".bin") files.insert(e.path().stem().string());
  REQUIRE(files.size() >= 25);
  for (const auto& name : files) {
    INFO("corpus file without an expected message: " << name);
    CHECK(expected().count(name) == 1);
  }

  const fs::path pwned = "/tmp/xcaption-pwned";  // what the os.system/subprocess pickles would create
  const bool pwned_before = fs::exists(pwned);
  const std::string image = (kData / "golden_images" / "img_45x30.png").string();
  for (const auto& [name, message] : expected()) {
    SECTION(name) {
      REQUIRE(files.count(name) == 1);
      TempDir dir("hostile-" + name);
      for (const char* f : {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"})
        fs::copy_file(kData / "tiny-vit-gpt2" / f, dir.path / f);
      const fs::path bin = dir.path / "pytorch_model.bin";
      fs::copy_file(corpus / (name + ".bin"), bin);
      const auto before = listing(dir.path);

      const CliResult r = run_cli("caption --model '" + dir.path.string() + "' '" + image + "'");
      INFO(r.err);
      CHECK(r.exit_code == 3);  // a FormatError: not a crash (-1), not success
      CHECK(r.out.empty());
      CHECK_THAT(r.err, Catch::Matchers::StartsWith("xcaption: error: " + bin.string() + ": "));
      CHECK_THAT(r.err, Catch::Matchers::Contains(message));
      CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
      CHECK(listing(dir.path) == before);
      CHECK(fs::exists(pwned) == pwned_before);
    }
  }
}

TEST_CASE("caption reads a pytorch_model.bin folder like its safetensors original", "[cli][torch]") {
  const std::string image = (kData / "golden_images" / "img_23x37_rgba.png").string();
  for (const auto& [twin, original] : std::vector<std::pair<std::string, std::string>>{
           {"tiny-plain", "tiny-vit-gpt2"}, {"tiny-sharded", "tiny-vit-gpt2"}, {"b-views", "tiny-vit-gpt2-b"}}) {
    INFO(twin);
    const CliResult want = run_cli("caption --json --beams 2 --model '" + (kData / original).string() + "' '" + image + "'");
    const CliResult got =
        run_cli("caption --json --beams 2 --model '" + (kData / "bin-twins" / twin).string() + "' '" + image + "'");
    INFO(got.err);
    REQUIRE(want.exit_code == 0);
    REQUIRE(got.exit_code == 0);
    const auto a = nlohmann::json::parse(want.out), b = nlohmann::json::parse(got.out);
    CHECK(b["caption"] == a["caption"]);
    CHECK(b["token_ids"] == a["token_ids"]);
    CHECK(b["logprobs"] == a["logprobs"]);
    const CliResult info = run_cli("info --json --model '" + (kData / "bin-twins" / twin).string() + "'");
    REQUIRE(info.exit_code == 0);
    CHECK(info.out.find(twin == "tiny-sharded" ? "pytorch_model-00001-of-00002.bin" : "pytorch_model.bin") !=
          std::string::npos);
  }
}
