// Read-only access to safetensors checkpoints through mmap, with the header validated the way the
// reference implementation (huggingface/safetensors, `SafeTensors::read_metadata`) validates it.
//
// File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object that begins
// with '{' and may be padded with trailing spaces), then the data region. Each header entry other
// than "__metadata__" is {"dtype", "shape", "data_offsets": [begin, end]}, offsets relative to the
// start of the data region. The tensors must tile the data region exactly: no overlap, no hole and
// nothing after the last tensor (the format forbids holes to rule out polyglot files).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "src/io/mapped_file.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {

/// One tensor of a safetensors file. `data` points into the file mapping: valid until the owning
/// SafeTensorsFile is released or destroyed, and not necessarily aligned for the element type
/// (read it with convert_to_f32 or memcpy).
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;  // meaningful only when `supported`
  std::vector<std::int64_t> shape;
  const void* data = nullptr;  // null after release()
  std::size_t nbytes = 0;
  /// False for a dtype xcaption does not compute with (I64, F64, U8, BOOL, ...). Real checkpoints
  /// carry such buffers (e.g. an I64 position_ids); they are recorded, and only
  /// SafeTensorsFile::get refuses them, so a file fails only when the model actually asks for one.
  bool supported = true;
  std::string dtype_name;  // as written in the header: "F32", "I64", ...

  std::int64_t numel() const;
};

class SafeTensorsFile {
 public:
  /// Maps `path` read-only and validates its header. Throws FormatError naming the file and the
  /// tensor or field at fault: file shorter than 8 bytes, header length beyond the file or above
  /// 100 MB, header not UTF-8 / not JSON / not an object / not starting with '{', "__metadata__"
  /// not a string-to-string object, a tensor entry missing or mistyping dtype/shape/data_offsets,
  /// an unknown dtype name, negative or overflowing shape, offsets out of bounds or reversed, byte
  /// size not matching dtype × shape, overlapping tensors, holes or trailing bytes in the data
  /// region.
  static SafeTensorsFile open(const std::filesystem::path& path);

  SafeTensorsFile(SafeTensorsFile&& other) noexcept;
  SafeTensorsFile& operator=(SafeTensorsFile&& other) noexcept;
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;
  ~SafeTensorsFile();

  /// nullptr if absent. Also returns tensors whose dtype is not supported.
  const TensorInfo* find(std::string_view name) const;
  /// The tensor `name`, which must exist and have a supported dtype (F32, F16, BF16).
  /// Throws FormatError "<file>: tensor 'x' ..." otherwise.
  const TensorInfo& get(std::string_view name) const;
  /// All tensors in data-region order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }
  std::size_t file_size() const { return map_.size(); }

  /// Unmaps the file early (after the weights were copied or reordered). Tensor metadata stays
  /// readable; every TensorInfo::data becomes null. Idempotent.
  void release();
  bool released() const { return !map_.mapped(); }

  /// Drops the pages holding `tensor` (one of this file's) from the process's resident memory
  /// once its values were copied: the mapping stays valid and a later read faults them in again
  /// from the file. Keeps peak memory near one copy of the weights while a model loads.
  void evict(const TensorInfo& tensor) const;

 private:
  SafeTensorsFile() = default;
  void parse_header(const unsigned char* bytes);

  std::filesystem::path path_;
  MappedFile map_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

/// Opens every file of a safetensors model folder (find_checkpoint in checkpoint_folder.hpp). For
/// a sharded checkpoint also checks that each tensor of the weight_map is present in the shard the
/// index names, and that no tensor name appears in two shards. Throws FormatError, also when the
/// folder's checkpoint is pytorch_model.bin (WeightStore reads both formats).
std::vector<SafeTensorsFile> open_checkpoint(const std::filesystem::path& dir);

}  // namespace xcaption
