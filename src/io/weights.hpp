// Checkpoint weights looked up by name, validated against a model family's table of expected
// tensors before any of them is used (ref: whisper.cpp whisper_model_load).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "src/io/safetensors.hpp"
#include "src/io/torch_checkpoint.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {

struct ExpectedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  bool required = true;  // false: may be absent (e.g. a tied lm_head)
};

/// The tensors of a model folder, checked against a table: model.safetensors, the shards of
/// model.safetensors.index.json, pytorch_model.bin or the shards of pytorch_model.bin.index.json,
/// in that order of preference (find_checkpoint).
class WeightStore {
 public:
  /// Opens the checkpoint in `dir`. For a sharded one also checks the index against the shards.
  /// Throws FormatError naming the file on any problem.
  static WeightStore open(const std::filesystem::path& dir);
  WeightStore(WeightStore&&) noexcept;
  WeightStore& operator=(WeightStore&&) noexcept;
  ~WeightStore();

  /// Checks every expected tensor: present (unless optional), float dtype, exact shape.
  /// Throws ShapeError/FormatError: "<file>: tensor 'name': expected [768], got [512]".
  /// Tensors in the file that are not in the table are ignored (pooler, attention-mask buffers).
  void validate(const std::vector<ExpectedTensor>& table) const;

  bool has(const std::string& name) const;
  /// The tensor converted to float32 (F16/BF16 widened; a strided view of a torch storage gathered
  /// in row-major order). Its pages of the file mapping are then dropped from resident memory
  /// (evict), so that loading a model tensor by tensor never holds the whole file and the prepared
  /// weights at once. Precondition: validate() accepted it.
  FloatBuffer load(const std::string& name) const;
  std::vector<std::int64_t> shape(const std::string& name) const;
  DType dtype(const std::string& name) const;
  /// Storage dtype of most tensors (for `info`).
  DType main_dtype() const;
  std::string description() const;  // the file(s) read
  /// "safetensors" or "pytorch (zip)": the format of the files read.
  std::string format() const;
  std::int64_t total_bytes() const;
  /// Sizes read from config.json checked against what this checkpoint can hold, before a family
  /// builds its tensor table from them (nothing is allocated from a size the file does not back):
  /// `layers` layers need at least one tensor each, and a tensor of `elements` values at least
  /// two bytes per value (F16/BF16, the smallest dtypes read). `where` names the file and key.
  /// Throws ShapeError.
  void require_layers(const std::string& where, std::int64_t layers) const;
  void require_elements(const std::string& where, const std::string& what, double elements) const;
  /// Number of values in the tensors of `table` that are present.
  std::int64_t total_parameters(const std::vector<ExpectedTensor>& table) const;

  /// Every tensor of the checkpoint, unsupported dtypes included, in storage order (shards in
  /// index order).
  std::vector<std::string> names() const;
  /// The dtype as stored, spelled as safetensors does ("F32", "BF16", "I64", "BOOL", ...).
  /// Throws FormatError when `name` is missing.
  std::string stored_dtype(const std::string& name) const;
  /// The stored bytes of `name`, of any dtype (little-endian, row-major, contiguous), or an empty
  /// span when the source cannot give them in that form. Valid until release(). Throws
  /// FormatError when `name` is missing or the files were released.
  std::span<const std::byte> stored_bytes(const std::string& name) const;

  /// Unmaps the files once every weight was copied into the backend's layout.
  void release();

 private:
  WeightStore() = default;
  using File = std::variant<SafeTensorsFile, TorchCheckpointFile>;
  const TensorInfo* find(const std::string& name, const File** file) const;
  std::vector<File> files_;
};

}  // namespace xcaption
