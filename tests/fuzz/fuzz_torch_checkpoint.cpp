// libFuzzer target for the pytorch_model.bin reader: the zip reader, the restricted unpickler and
// the tensor checks (read_torch_archive), then every accepted tensor read as float32, so that a
// view the checks let through but that reaches outside the input is caught by AddressSanitizer.
// Inputs that are not zips also go straight to the unpickler. Build: -DXCAPTION_BUILD_FUZZERS=ON
// with clang (tests/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <xcaption/errors.hpp>

#include "src/io/torch_checkpoint.hpp"
#include "src/io/unpickler.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  try {
    const TorchArchive a = read_torch_archive(data, size, "fuzz.bin");
    std::vector<float> values;
    for (std::size_t i = 0; i < a.tensors.size(); ++i) {
      const TensorInfo& t = a.tensors[i];
      if (!t.supported || t.numel() > (1 << 22)) continue;
      values.resize(static_cast<std::size_t>(t.numel()));
      read_f32(t, a.layouts[i], values.data());
    }
  } catch (const Error&) {
  }
  if (size < 2 || data[0] != 'P' || data[1] != 'K') {
    try {
      unpickle_state_dict(std::span<const unsigned char>(data, size), "fuzz.pkl");
    } catch (const Error&) {
    }
  }
  return 0;
}
