// convert_model on hand-made checkpoints: rounding to f16/bf16 (nearest even), integer buffers
// copied byte for byte, the header's metadata, order, alignment and padding, shards merged, and
// nothing left behind when a conversion fails.
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <xcaption/convert.hpp>
#include <xcaption/errors.hpp>

#include "src/io/safetensors.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using xcaption::ConvertOptions;
using xcaption::FormatError;
using xcaption::StorageType;
using xcaption::test::TempDir;

namespace {

struct Tensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// A safetensors file with the tensors in the order given.
void write_safetensors(const fs::path& path, const std::vector<Tensor>& tensors) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  std::string data;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  const std::string header = h.dump();
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary) << len << header << data;
}

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Values straddling f16 and bf16 rounding boundaries. 1 + 2^-11 is halfway between the f16
// neighbours 1 and 1 + 2^-10 (ties to the even one, 1.0); 1 + 3*2^-11 is halfway between
// 1 + 2^-10 and 1 + 2^-9 (ties to 1 + 2^-9). For bf16 the same with 2^-8 steps.
const std::vector<float> kValues = {
    1.0f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-20f, -2.5f, 65504.0f, 65520.0f, 1e-5f,
    1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, from_bits(0x3f808001u), 0.0f};

struct Source {
  TempDir dir{"convert-src"};
  Source() {
    dir.write("config.json", R"({"model_type": "test"})");
    dir.write("tokenizer.json", R"({"model": {}})");
    dir.write("vocab.txt", "[PAD]\n");
    dir.write("README.md", "not copied");
    write_safetensors(dir.path / "model.safetensors",
                      {{"z.values", "F32", {3, 4}, bytes_of(kValues)},
                       {"a.mask", "U8", {2, 3}, std::string("\x01\x00\x01\x01\x00\x01", 6)},
                       {"m.ids", "I64", {3}, bytes_of(std::vector<std::int64_t>{7, -1, 1ll << 40})},
                       {"b.half", "F16", {2}, bytes_of(std::vector<std::uint16_t>{0x3c00, 0xc000})},
                       {"c.empty", "F32", {0, 4}, ""},
                       {"d.scalar", "F32", {}, bytes_of(std::vector<float>{-1e4f})}});
  }
};

struct Written {
  nlohmann::json header;
  std::uint64_t header_len = 0;
  std::string data;
  std::string raw(const std::string& name) const {
    const auto& off = header[name]["data_offsets"];
    return data.substr(off[0].get<std::size_t>(), off[1].get<std::size_t>() - off[0].get<std::size_t>());
  }
};

Written read_written(const fs::path& file) {
  const std::string all = xcaption::test::read_file(file);
  Written w;
  for (int i = 7; i >= 0; --i) w.header_len = (w.header_len << 8) | static_cast<unsigned char>(all[i]);
  w.header = nlohmann::json::parse(all.substr(8, w.header_len));
  w.data = all.substr(8 + w.header_len);
  return w;
}

template <class T>
std::vector<T> values_of(const std::string& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("convert keeps stored dtypes by default and writes the header transformers writes", "[convert]") {
  Source src;
  TempDir out_root("convert-out");
  const fs::path out = out_root.path / "m";
  const auto report = xcaption::convert_model(src.dir.path.string(), out);
  CHECK(report.source == src.dir.path);
  CHECK(report.weights == out / "model.safetensors");
  CHECK(report.tensors == 6);
  CHECK(report.dtypes == std::vector<std::string>{"F16", "F32", "I64", "U8"});
  CHECK(report.kept_as_stored == std::vector<std::string>{"a.mask", "m.ids"});
  CHECK(report.dropped.empty());
  CHECK(report.copied_files == std::vector<std::string>{"config.json", "tokenizer.json", "vocab.txt"});
  CHECK(entries(out) == std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"});
  CHECK(entries(out_root.path) == std::vector<std::string>{"m"});  // no temporary folder left
  CHECK(static_cast<std::int64_t>(fs::file_size(out / "model.safetensors")) == report.bytes);

  const Written w = read_written(out / "model.safetensors");
  CHECK(w.header_len % 8 == 0);
  CHECK(w.header["__metadata__"] == nlohmann::json({{"format", "pt"}}));
  // Order: element size descending, then name; each tensor aligned to its element size.
  const std::string text = xcaption::test::read_file(out / "model.safetensors").substr(8, w.header_len);
  std::vector<std::size_t> at;
  for (const char* name : {"\"__metadata__\"", "\"m.ids\"", "\"c.empty\"", "\"d.scalar\"", "\"z.values\"",
                           "\"b.half\"", "\"a.mask\""})
    at.push_back(text.find(name));
  CHECK(std::is_sorted(at.begin(), at.end()));
  CHECK(at.back() != std::string::npos);
  std::uint64_t prev_end = 0;
  for (const char* name : {"m.ids", "c.empty", "d.scalar", "z.values", "b.half", "a.mask"}) {
    const auto& off = w.header[name]["data_offsets"];
    CHECK(off[0].get<std::uint64_t>() == prev_end);
    const std::string dtype = w.header[name]["dtype"];
    const std::uint64_t size = dtype == "I64" ? 8 : dtype == "F32" ? 4 : dtype == "F16" ? 2 : 1;
    CHECK((8 + w.header_len + off[0].get<std::uint64_t>()) % size == 0);
    prev_end = off[1].get<std::uint64_t>();
  }
  CHECK(w.header["d.scalar"]["shape"] == nlohmann::json::array());
  CHECK(w.header["c.empty"]["shape"] == nlohmann::json({0, 4}));
  // Bytes unchanged.
  CHECK(values_of<float>(w.raw("z.values")) == kValues);
  CHECK(w.raw("a.mask") == std::string("\x01\x00\x01\x01\x00\x01", 6));
  CHECK(values_of<std::int64_t>(w.raw("m.ids")) == std::vector<std::int64_t>{7, -1, 1ll << 40});
  CHECK(values_of<std::uint16_t>(w.raw("b.half")) == std::vector<std::uint16_t>{0x3c00, 0xc000});
  // Our own reader accepts the file.
  CHECK(xcaption::SafeTensorsFile::open(out / "model.safetensors").metadata().at("format") == "pt");
}

TEST_CASE("convert to f16 and bf16 rounds to nearest even, integers stay as stored", "[convert]") {
  Source src;
  TempDir out_root("convert-out16");
  ConvertOptions f16;
  f16.dtype = StorageType::F16;
  xcaption::convert_model(src.dir.path.string(), out_root.path / "f16", f16);
  const Written h = read_written(out_root.path / "f16" / "model.safetensors");
  CHECK(h.header["z.values"]["dtype"] == "F16");
  CHECK(h.header["d.scalar"]["dtype"] == "F16");
  CHECK(h.header["m.ids"]["dtype"] == "I64");
  CHECK(h.header["a.mask"]["dtype"] == "U8");
  CHECK(values_of<std::uint16_t>(h.raw("z.values")) ==
        std::vector<std::uint16_t>{0x3c00,   // 1
                                   0x3c00,   // 1 + 2^-11: tie, to even (1)
                                   0x3c02,   // 1 + 3*2^-11: tie, to even (1 + 2^-9)
                                   0x3c01,   // just above the tie: up
                                   0xc100,   // -2.5
                                   0x7bff,   // 65504, the largest f16
                                   0x7c00,   // 65520: tie between 65504 and 65536 -> inf
                                   0x00a8,   // 1e-5: subnormal, 168 * 2^-24
                                   0x3c04,   // 1 + 2^-8 exactly
                                   0x3c0c,   // 1 + 3*2^-8 exactly
                                   0x3c04,   // 1 + 2^-8 + 2^-23 rounds to 1 + 2^-8
                                   0x0000});
  CHECK(values_of<std::int64_t>(h.raw("m.ids")) == std::vector<std::int64_t>{7, -1, 1ll << 40});

  ConvertOptions bf16;
  bf16.dtype = StorageType::BF16;
  xcaption::convert_model(src.dir.path.string(), out_root.path / "bf16", bf16);
  const Written b = read_written(out_root.path / "bf16" / "model.safetensors");
  CHECK(b.header["b.half"]["dtype"] == "BF16");
  CHECK(values_of<std::uint16_t>(b.raw("z.values")) ==
        std::vector<std::uint16_t>{0x3f80, 0x3f80, 0x3f80, 0x3f80, 0xc020,
                                   0x4780,    // 65504 = 0x477fe000 rounds up to 65536
                                   0x4780, 0x3728,
                                   0x3f80,    // 1 + 2^-8: tie, to even (1)
                                   0x3f82,    // 1 + 3*2^-8: tie, to even (1 + 2^-6)
                                   0x3f81,    // just above the tie: up
                                   0x0000});
  // F16 widened then narrowed to bf16: 1 and -2 are exact.
  CHECK(values_of<std::uint16_t>(b.raw("b.half")) == std::vector<std::uint16_t>{0x3f80, 0xc000});
}

TEST_CASE("convert merges shards into one file", "[convert]") {
  TempDir src("convert-shards");
  src.write("config.json", "{}");
  write_safetensors(src.path / "model-00001-of-00002.safetensors", {{"b", "F32", {2}, bytes_of(std::vector<float>{1, 2})}});
  write_safetensors(src.path / "model-00002-of-00002.safetensors", {{"a", "BF16", {1}, bytes_of(std::vector<std::uint16_t>{0x4040})}});
  src.write("model.safetensors.index.json",
            R"({"metadata": {}, "weight_map": {"b": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}})");
  TempDir out("convert-shards-out");
  const auto r = xcaption::convert_model(src.path.string(), out.path / "one");
  CHECK(r.tensors == 2);
  CHECK(entries(out.path / "one") == std::vector<std::string>{"config.json", "model.safetensors"});
  const Written w = read_written(out.path / "one" / "model.safetensors");
  CHECK(values_of<float>(w.raw("b")) == std::vector<float>{1, 2});
  CHECK(values_of<std::uint16_t>(w.raw("a")) == std::vector<std::uint16_t>{0x4040});
}

TEST_CASE("a failed conversion leaves nothing behind and an existing folder untouched", "[convert]") {
  TempDir root("convert-fail");
  const fs::path out = root.path / "out";
  auto error_of = [&](const std::string& source, const fs::path& dest, ConvertOptions o = {}) -> std::string {
    try {
      xcaption::convert_model(source, dest, o);
    } catch (const FormatError& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK_THAT(error_of((root.path / "absent").string(), out), Contains("model folder not found"));
  TempDir no_config("convert-noconfig");
  CHECK_THAT(error_of(no_config.path.string(), out), Contains("no config.json"));
  // Weights that fail to open: a truncated file.
  Source src;
  const fs::path weights = src.dir.path / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) - 3);
  CHECK_THAT(error_of(src.dir.path.string(), out), Contains("model.safetensors"));
  CHECK(fs::is_empty(root.path));
  CHECK_THAT(error_of(src.dir.path.string(), root.path / "no" / "parent"), Contains("parent folder"));

  // A failure half-way through writing (here a cancelling progress callback) removes the
  // temporary folder.
  Source good;
  ConvertOptions cancel;
  int calls = 0;
  cancel.progress = [&](std::int64_t done, std::int64_t total) {
    CHECK(done <= total);
    if (++calls == 2) throw std::runtime_error("cancelled");
  };
  CHECK_THROWS_WITH(xcaption::convert_model(good.dir.path.string(), out, cancel), "cancelled");
  CHECK(calls == 2);
  CHECK(fs::is_empty(root.path));

  // An existing destination: refused without force, with force only when it looks like a model.
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "mine";
  CHECK_THAT(error_of(good.dir.path.string(), out), Contains("already exists"));
  ConvertOptions force;
  force.force = true;
  CHECK_THAT(error_of(good.dir.path.string(), out, force), Contains("does not look like a model folder"));
  CHECK(xcaption::test::read_file(out / "keep.txt") == "mine");
  std::ofstream(out / "config.json") << "{}";
  CHECK(error_of(good.dir.path.string(), out, force) == "no error");
  CHECK_FALSE(fs::exists(out / "keep.txt"));
  CHECK(fs::exists(out / "model.safetensors"));
  CHECK(entries(root.path) == std::vector<std::string>{"out"});  // the old folder was removed
  // Never over the source itself or a folder holding it.
  CHECK_THAT(error_of(good.dir.path.string(), good.dir.path, force), Contains("would delete the source"));
  CHECK(fs::exists(good.dir.path / "model.safetensors"));
}
