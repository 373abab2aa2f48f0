// libFuzzer target for the safetensors reader: the input is a whole model.safetensors (8-byte
// header length, JSON header, data region) opened through SafeTensorsFile::open, then every
// accepted tensor converted to float32, so that an entry the header checks let through but that
// reaches past the mapping is caught by AddressSanitizer. Inputs holding "\n--index--\n" are a
// sharded folder instead: the part after it is model.safetensors.index.json, the part before it
// the one shard it may name (model-00001-of-00001.safetensors), read through open_checkpoint.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xcaption/errors.hpp>

#include "src/io/safetensors.hpp"
#include "src/tensor/tensor.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto [shard, index] = fuzz::split(input, "\n--index--\n");
  try {
    if (index.empty()) {
      fuzz::remove_file("model.safetensors.index.json");
      fuzz::remove_file("model-00001-of-00001.safetensors");
      const auto path = fuzz::write_file("model.safetensors", input);
      const SafeTensorsFile f = SafeTensorsFile::open(path);
      std::vector<float> values;
      for (const TensorInfo& t : f.tensors()) {
        if (!t.supported || t.numel() > (1 << 22)) continue;
        values.resize(static_cast<std::size_t>(t.numel()));
        convert_to_f32(t.dtype, t.data, values.data(), values.size());
      }
    } else {
      fuzz::remove_file("model.safetensors");
      fuzz::write_file("model-00001-of-00001.safetensors", shard);
      fuzz::write_file("model.safetensors.index.json", index);
      open_checkpoint(fuzz::scratch_dir());
    }
  } catch (const Error&) {
  }
  return 0;
}
