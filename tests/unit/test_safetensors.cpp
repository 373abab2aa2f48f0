// safetensors reader: valid files (F32/F16/BF16 values, metadata, unsupported dtypes), every
// header rejection, and model-folder discovery (single file, shards, pytorch_model.bin and TF/Flax-only folders).
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>
#include <xcaption/errors.hpp>

#include "src/io/checkpoint_folder.hpp"
#include "src/io/safetensors.hpp"
#include "src/tensor/tensor.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using xcaption::DType;
using xcaption::FormatError;
using xcaption::SafeTensorsFile;

namespace {

using xcaption::test::TempDir;

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Raw file: length field, header text as given, data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

template <class T>
std::string bytes_of(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.data(), s.size());
  return s;
}

struct Tensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

// A well-formed file as the reference writer lays it out: offsets in order, header padded with
// spaces to a multiple of 8.
std::string make_file(const std::vector<Tensor>& tensors,
                      const nlohmann::json& metadata = nullptr) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return raw_file(text, data);
}

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no exception was thrown");
  return {};
}

// Opens `bytes` written as <dir>/model.safetensors and returns the FormatError message.
std::string open_error(const std::string& bytes) {
  TempDir dir;
  const fs::path p = dir.path / "model.safetensors";
  write_file(p, bytes);
  return message_of<FormatError>([&] { SafeTensorsFile::open(p); });
}

// A header with one tensor entry given as raw JSON, and `data_size` bytes of data.
std::string one_entry(const std::string& entry, std::size_t data_size) {
  return raw_file("{\"x\":" + entry + "}", std::string(data_size, '\0'));
}

}  // namespace

TEST_CASE("safetensors: reads F32, F16 and BF16 tensors and metadata", "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "model.safetensors";
  const std::vector<float> f32{1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  // f16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), 0.333251953125, -0.0
  const std::vector<std::uint16_t> f16{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000};
  // bf16: 1.0, -2.0, 3.140625, 1e-38-ish (0x006D subnormal region is tiny), 2^100
  const std::vector<std::uint16_t> bf16{0x3F80, 0xC000, 0x4049, 0x0080, 0x7180};
  write_file(p, make_file({{"a.weight", "F32", {2, 3}, bytes_of(f32)},
                           {"b.half", "F16", {6}, bytes_of(f16)},
                           {"c.brain", "BF16", {5, 1}, bytes_of(bf16)}},
                          {{"format", "pt"}}));

  SafeTensorsFile file = SafeTensorsFile::open(p);
  CHECK(file.path() == p);
  REQUIRE(file.tensors().size() == 3);
  CHECK(file.metadata().at("format") == "pt");

  const auto* a = file.find("a.weight");
  REQUIRE(a);
  CHECK(a->dtype == DType::F32);
  CHECK(a->dtype_name == "F32");
  CHECK(a->supported);
  CHECK(a->shape == std::vector<std::int64_t>{2, 3});
  CHECK(a->nbytes == 24);
  CHECK(a->numel() == 6);
  std::vector<float> out(6);
  xcaption::convert_to_f32(a->dtype, a->data, out.data(), 6);
  CHECK(out == f32);

  const auto& b = file.get("b.half");
  CHECK(b.dtype == DType::F16);
  xcaption::convert_to_f32(b.dtype, b.data, out.data(), 6);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  CHECK(out[2] == 65504.0f);
  CHECK(out[3] == std::ldexp(1.0f, -24));
  CHECK(out[4] == 0.333251953125f);
  CHECK(out[5] == 0.0f);
  CHECK(std::signbit(out[5]));

  const auto& c = file.get("c.brain");
  CHECK(c.dtype == DType::BF16);
  CHECK(c.shape == std::vector<std::int64_t>{5, 1});
  xcaption::convert_to_f32(c.dtype, c.data, out.data(), 5);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  CHECK(out[2] == 3.140625f);
  CHECK(out[3] == std::ldexp(1.0f, -126));
  CHECK(out[4] == std::ldexp(1.0f, 100));

  CHECK(file.find("missing") == nullptr);
  CHECK_THAT(message_of<FormatError>([&] { file.get("missing"); }),
             Contains("model.safetensors") && Contains("tensor 'missing' is missing"));
}

TEST_CASE("safetensors: tensors come back in data order whatever the header order",
          "[safetensors]") {
  // Header lists "z" first although its bytes come second.
  const std::string header =
      R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string data = bytes_of(std::vector<float>{10.0f, 20.0f});
  TempDir dir;
  const fs::path p = dir.path / "m.safetensors";
  write_file(p, raw_file(header, data));
  SafeTensorsFile file = SafeTensorsFile::open(p);
  REQUIRE(file.tensors().size() == 2);
  CHECK(file.tensors()[0].name == "a");
  CHECK(file.tensors()[1].name == "z");
  float z = 0;
  std::memcpy(&z, file.get("z").data, 4);
  CHECK(z == 20.0f);
}

TEST_CASE("safetensors: empty files, empty tensors and move", "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "m.safetensors";
  write_file(p, raw_file("{}      ", ""));
  CHECK(SafeTensorsFile::open(p).tensors().empty());

  write_file(p,
             make_file({{"empty", "F32", {0, 4}, ""}, {"one", "F16", {1}, std::string(2, '\0')}}));
  SafeTensorsFile file = SafeTensorsFile::open(p);
  CHECK(file.get("empty").nbytes == 0);
  CHECK(file.get("empty").numel() == 0);
  SafeTensorsFile moved = std::move(file);
  CHECK(moved.find("one") != nullptr);
  CHECK_FALSE(moved.released());
}

TEST_CASE("safetensors: release unmaps and clears data pointers", "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "m.safetensors";
  write_file(p, make_file({{"w", "F32", {2}, bytes_of(std::vector<float>{1, 2})}}));
  SafeTensorsFile file = SafeTensorsFile::open(p);
  CHECK(file.get("w").data != nullptr);
  file.release();
  CHECK(file.released());
  CHECK(file.get("w").data == nullptr);
  CHECK(file.get("w").shape == std::vector<std::int64_t>{2});  // metadata survives
  file.release();                                              // idempotent
}

TEST_CASE("safetensors: other dtypes are recorded, refused only when asked for", "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "model.safetensors";
  write_file(
      p, make_file({{"position_ids", "I64", {1, 3}, bytes_of(std::vector<std::int64_t>{0, 1, 2})},
                    {"d", "F64", {1}, std::string(8, '\0')},
                    {"mask", "U8", {3}, std::string(3, '\1')},
                    {"flag", "BOOL", {1}, std::string(1, '\1')},
                    {"w", "F32", {1}, std::string(4, '\0')}}));
  SafeTensorsFile file = SafeTensorsFile::open(p);
  const auto* pos = file.find("position_ids");
  REQUIRE(pos);
  CHECK_FALSE(pos->supported);
  CHECK(pos->dtype_name == "I64");
  CHECK(pos->nbytes == 24);
  CHECK(file.get("w").supported);
  for (const char* name : {"position_ids", "d", "mask", "flag"}) {
    const std::string msg = message_of<FormatError>([&] { file.get(name); });
    CHECK_THAT(msg,
               Contains("model.safetensors") && Contains(std::string("tensor '") + name + "'"));
    CHECK_THAT(msg, Contains(file.find(name)->dtype_name) && Contains("supported: F32, F16, BF16"));
  }
}

TEST_CASE("safetensors: rejects truncated files and bad header lengths", "[safetensors]") {
  CHECK_THAT(open_error(""), Contains("model.safetensors") && Contains("shorter than the 8-byte"));
  CHECK_THAT(open_error("abc"), Contains("file is 3 bytes"));
  // Length field claims 100 bytes, 10 follow.
  CHECK_THAT(open_error(le64(100) + std::string(10, ' ')),
             Contains("model.safetensors") && Contains("header length 100 runs past the end"));
  // Absurd length (checked before the file size, as the reference does).
  CHECK_THAT(open_error(le64(200'000'000) + "{}"),
             Contains("header length 200000000 exceeds the 100000000-byte limit"));
  CHECK_THAT(open_error(le64(~0ull) + "{}"), Contains("exceeds the 100000000-byte limit"));
}

TEST_CASE("safetensors: rejects headers that are not UTF-8 JSON objects", "[safetensors]") {
  CHECK_THAT(open_error(raw_file("{\"\xff\":1}", "")),
             Contains("model.safetensors") && Contains("not valid UTF-8"));
  CHECK_THAT(open_error(raw_file("{\"\xc0\xaf\":1}", "")),
             Contains("not valid UTF-8"));  // overlong '/'
  CHECK_THAT(open_error(raw_file("{\"x\": ", "")),
             Contains("model.safetensors") && Contains("not valid JSON"));
  CHECK_THAT(open_error(raw_file("[1, 2]", "")),
             Contains("header is a JSON array, expected an object"));
  CHECK_THAT(open_error(raw_file("\"text\"", "")), Contains("expected an object"));
  CHECK_THAT(open_error(raw_file("  {}", "")), Contains("must begin with '{'"));
  // Trailing space padding is allowed.
  TempDir dir;
  write_file(dir.path / "ok.safetensors", raw_file("{}   ", ""));
  CHECK_NOTHROW(SafeTensorsFile::open(dir.path / "ok.safetensors"));
}

TEST_CASE("safetensors: rejects malformed __metadata__", "[safetensors]") {
  CHECK_THAT(
      open_error(raw_file(R"({"__metadata__":{"format":1}})", "")),
      Contains("model.safetensors") && Contains("\"__metadata__\" key 'format' must be a string"));
  CHECK_THAT(open_error(raw_file(R"({"__metadata__":[1]})", "")),
             Contains("\"__metadata__\" must be an object"));
}

TEST_CASE("safetensors: rejects missing or mistyped tensor fields", "[safetensors]") {
  const auto tensor_error = [](const std::string& entry, std::size_t data_size) {
    const std::string msg = open_error(one_entry(entry, data_size));
    CHECK_THAT(msg, Contains("model.safetensors: tensor 'x'"));
    return msg;
  };
  CHECK_THAT(tensor_error("[1]", 0), Contains("entry must be an object, got array"));
  CHECK_THAT(tensor_error(R"({"shape":[1],"data_offsets":[0,4]})", 4),
             Contains("missing \"dtype\""));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","data_offsets":[0,4]})", 4),
             Contains("missing \"shape\""));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1]})", 4),
             Contains("missing \"data_offsets\""));
  CHECK_THAT(tensor_error(R"({"dtype":32,"shape":[1],"data_offsets":[0,4]})", 4),
             Contains("\"dtype\" must be a string, got integer 32"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})", 4),
             Contains("\"shape\" must be an array of integers, got string \"1\""));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4),
             Contains("invalid dimension 1.5"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1],"data_offsets":{"a":0}})", 4),
             Contains("\"data_offsets\" must be an array of two integers"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", 4),
             Contains("\"data_offsets\" must be an array of two integers"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4.0]})", 4),
             Contains("\"data_offsets\" must be an array of two integers"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", 4),
             Contains("\"data_offsets\" must be an array of two integers"));
}

TEST_CASE("safetensors: rejects unknown dtypes, bad shapes and bad offsets", "[safetensors]") {
  const auto tensor_error = [](const std::string& entry, std::size_t data_size) {
    const std::string msg = open_error(one_entry(entry, data_size));
    CHECK_THAT(msg, Contains("model.safetensors: tensor 'x'"));
    return msg;
  };
  CHECK_THAT(tensor_error(R"({"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]})", 4),
             Contains("unknown dtype 'Q4_K'"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]})", 16),
             Contains("invalid dimension -2"));
  CHECK_THAT(
      tensor_error(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]})", 16),
      Contains("overflows"));
  CHECK_THAT(
      tensor_error(R"({"dtype":"F32","shape":[9223372036854775807,4],"data_offsets":[0,16]})", 16),
      Contains("overflows"));
  CHECK_THAT(
      tensor_error(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", 12),
      Contains("data_offsets [0, 12] give 12 bytes, but dtype F32 and shape [2, 2] need 16"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})", 8),
             Contains("data_offsets [8, 4] end before they begin"));
  CHECK_THAT(tensor_error(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 8),
             Contains("data_offsets [0, 16] reach past the end of the data region (8 bytes)"));
  // An unsupported dtype is still validated for size.
  CHECK_THAT(tensor_error(R"({"dtype":"I64","shape":[2],"data_offsets":[0,8]})", 8),
             Contains("dtype I64 and shape [2] need 16"));
}

TEST_CASE("safetensors: the tensors must tile the data region", "[safetensors]") {
  const std::string a = R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]})";
  // Overlap: b starts inside a.
  CHECK_THAT(
      open_error(raw_file("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                          std::string(16, '\0'))),
      Contains("model.safetensors: tensor 'b': data_offsets [8, 16] overlap tensor 'a' [0, 12]"));
  // Identical ranges overlap too.
  CHECK_THAT(
      open_error(raw_file("{" + a + R"(,"b":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})",
                          std::string(12, '\0'))),
      Contains("overlap"));
  // Hole between a and b.
  CHECK_THAT(
      open_error(raw_file("{" + a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})",
                          std::string(20, '\0'))),
      Contains("bytes [12, 16) of the data region belong to no tensor (before tensor 'b')"));
  // Hole at the start.
  CHECK_THAT(open_error(raw_file(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 std::string(8, '\0'))),
             Contains("bytes [0, 4)"));
  // Trailing bytes after the last tensor.
  CHECK_THAT(open_error(raw_file("{" + a + "}", std::string(13, '\0'))),
             Contains("model.safetensors") &&
                 Contains("cover 12 bytes of the data region, but the file holds 13"));
}

TEST_CASE("safetensors: open reports unreadable paths", "[safetensors]") {
  TempDir dir;
  CHECK_THAT(
      message_of<FormatError>([&] { SafeTensorsFile::open(dir.path / "absent.safetensors"); }),
      Contains("absent.safetensors: cannot open"));
  CHECK_THAT(message_of<FormatError>([&] { SafeTensorsFile::open(dir.path); }),
             Contains("not a regular file"));
}

// ---------------------------------------------------------------------------------------------
// Model folders

namespace {

std::string f32_tensor_file(const std::vector<std::pair<std::string, float>>& tensors) {
  std::vector<Tensor> ts;
  for (const auto& [name, v] : tensors)
    ts.push_back({name, "F32", {1}, bytes_of(std::vector<float>{v})});
  return make_file(ts);
}

void write_index(const fs::path& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 16}}}, {"weight_map", weight_map}};
  write_file(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace

TEST_CASE("checkpoint: a single model.safetensors", "[safetensors]") {
  TempDir dir;
  write_file(dir.path / "model.safetensors", f32_tensor_file({{"w", 1.0f}}));
  write_file(dir.path / "pytorch_model.bin", "not read");
  const auto paths = xcaption::checkpoint_files(dir.path);
  REQUIRE(paths.size() == 1);
  CHECK(paths[0] == dir.path / "model.safetensors");
  auto files = xcaption::open_checkpoint(dir.path);
  REQUIRE(files.size() == 1);
  CHECK(files[0].find("w") != nullptr);
}

TEST_CASE("checkpoint: sharded index loads every shard", "[safetensors]") {
  TempDir dir;
  write_file(dir.path / "model-00001-of-00002.safetensors",
             f32_tensor_file({{"a", 1.0f}, {"b", 2.0f}}));
  write_file(dir.path / "model-00002-of-00002.safetensors", f32_tensor_file({{"c", 3.0f}}));
  write_index(dir.path, {{"a", "model-00001-of-00002.safetensors"},
                         {"c", "model-00002-of-00002.safetensors"},
                         {"b", "model-00001-of-00002.safetensors"}});
  const auto paths = xcaption::checkpoint_files(dir.path);
  REQUIRE(paths.size() == 2);
  CHECK(paths[0].filename() == "model-00001-of-00002.safetensors");
  CHECK(paths[1].filename() == "model-00002-of-00002.safetensors");

  auto files = xcaption::open_checkpoint(dir.path);
  REQUIRE(files.size() == 2);
  std::vector<float> seen;
  for (const char* name : {"a", "b", "c"}) {
    const xcaption::TensorInfo* t = nullptr;
    for (const auto& f : files)
      if ((t = f.find(name))) break;
    REQUIRE(t);
    float v = 0;
    std::memcpy(&v, t->data, 4);
    seen.push_back(v);
  }
  CHECK(seen == std::vector<float>{1.0f, 2.0f, 3.0f});
}

TEST_CASE("checkpoint: sharded index errors name the index and the shard", "[safetensors]") {
  TempDir dir;
  const auto index_error = [&] {
    return message_of<FormatError>([&] { xcaption::open_checkpoint(dir.path); });
  };
  write_file(dir.path / "s1.safetensors", f32_tensor_file({{"a", 1.0f}}));
  write_file(dir.path / "s2.safetensors", f32_tensor_file({{"b", 2.0f}, {"a", 9.0f}}));

  write_index(dir.path, {{"a", "s1.safetensors"}, {"b", "missing.safetensors"}});
  CHECK_THAT(index_error(), Contains("model.safetensors.index.json: shard 'missing.safetensors'") &&
                                Contains("does not exist"));

  write_index(dir.path, {{"a", "s1.safetensors"}, {"zz", "s1.safetensors"}});
  CHECK_THAT(index_error(),
             Contains("model.safetensors.index.json") &&
                 Contains("tensor 'zz' in 's1.safetensors', but that shard does not contain it"));

  write_index(dir.path, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  CHECK_THAT(index_error(), Contains("tensor 'a' appears in two shards"));

  write_index(dir.path, {{"a", "../s1.safetensors"}});
  CHECK_THAT(index_error(), Contains("not a file inside the model folder"));

  write_index(dir.path, {{"a", 3}});
  CHECK_THAT(index_error(), Contains("weight_map['a']: expected a file name string"));

  write_file(dir.path / "model.safetensors.index.json", R"({"metadata": {}})");
  CHECK_THAT(index_error(), Contains("model.safetensors.index.json: missing key 'weight_map'"));

  write_file(dir.path / "model.safetensors.index.json", R"({"weight_map": )");
  CHECK_THAT(index_error(), Contains("model.safetensors.index.json: invalid JSON"));

  // A broken shard is reported with the shard's own name.
  write_file(dir.path / "s2.safetensors", "bad");
  write_index(dir.path, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  CHECK_THAT(index_error(), Contains("s2.safetensors: file is 3 bytes"));
}

TEST_CASE("checkpoint: folder order, pytorch_model.bin and TF/Flax-only folders", "[safetensors]") {
  TempDir dir;
  CHECK_THAT(message_of<FormatError>([&] { xcaption::checkpoint_files(dir.path); }),
             Contains("no model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                      "pytorch_model.bin.index.json"));
  write_file(dir.path / "tf_model.h5", "hdf5");
  CHECK_THAT(message_of<FormatError>([&] { xcaption::checkpoint_files(dir.path); }),
             Contains(dir.path.string()) && Contains("found tf_model.h5") && Contains("not TensorFlow or Flax") &&
                 Contains("safe_serialization=True"));

  // The .bin index comes after pytorch_model.bin, which comes after both safetensors forms.
  write_file(dir.path / "pytorch_model-1.bin", "x");
  write_file(dir.path / "pytorch_model.bin.index.json", R"({"weight_map": {"a": "pytorch_model-1.bin"}})");
  auto layout = xcaption::find_checkpoint(dir.path);
  CHECK(layout.format == xcaption::CheckpointFormat::PyTorch);
  CHECK(layout.files == std::vector<fs::path>{dir.path / "pytorch_model-1.bin"});
  CHECK(layout.index == dir.path / "pytorch_model.bin.index.json");
  write_file(dir.path / "pytorch_model.bin", "pickle");
  layout = xcaption::find_checkpoint(dir.path);
  CHECK(layout.format == xcaption::CheckpointFormat::PyTorch);
  CHECK(layout.files == std::vector<fs::path>{dir.path / "pytorch_model.bin"});
  CHECK(layout.index.empty());
  CHECK_THAT(message_of<FormatError>([&] { xcaption::open_checkpoint(dir.path); }),
             Contains("pytorch_model.bin, not safetensors"));
  write_file(dir.path / "s1.safetensors", f32_tensor_file({{"a", 1.0f}}));
  write_index(dir.path, {{"a", "s1.safetensors"}});
  layout = xcaption::find_checkpoint(dir.path);
  CHECK(layout.format == xcaption::CheckpointFormat::Safetensors);
  CHECK(layout.files == std::vector<fs::path>{dir.path / "s1.safetensors"});
  write_file(dir.path / "model.safetensors", f32_tensor_file({{"w", 1.0f}}));
  CHECK(xcaption::checkpoint_files(dir.path) == std::vector<fs::path>{dir.path / "model.safetensors"});
  CHECK_THAT(message_of<FormatError>([&] { xcaption::checkpoint_files(dir.path / "nope"); }),
             Contains("no such directory"));
}
