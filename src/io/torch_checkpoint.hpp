// pytorch_model.bin as torch.save writes it (torch >= 1.6, `_use_new_zipfile_serialization`):
// a zip archive of stored records under one folder named by the writer (`archive/`, or the file's
// stem): `data.pkl` (the pickled state dict, read by the restricted unpickler), `data/<key>` (the
// raw little-endian bytes of each storage), `version`, and in newer versions `byteorder`,
// `.data/serialization_id` and others (tolerated, not read). Tensors are views of storages:
// (storage, storage_offset, size, stride), several of them possibly sharing one storage.
//
// ref: torch/serialization.py (_save, _load), caffe2/serialize/inline_container.h (the record
// layout; records are stored uncompressed and aligned to 64 bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "src/io/mapped_file.hpp"
#include "src/io/safetensors.hpp"  // TensorInfo
#include "src/io/unpickler.hpp"

namespace xcaption {

/// The tensors of one torch.save archive, validated. Fields of TensorInfo: `dtype_name` is the
/// safetensors-style name of the storage type ("F32", "I64", ...); `data` points at the tensor's
/// first element inside the file mapping and `nbytes` spans from it to the end of its last
/// element: for a contiguous tensor exactly its values (readable in place like a safetensors
/// tensor), for a strided view a range that also holds other bytes: read those with read_f32.
struct TorchArchive {
  std::string prefix;  // the archive's folder, with its '/': "archive/"
  std::vector<TensorInfo> tensors;  // in state dict order
  struct Layout {
    std::vector<std::int64_t> stride;  // elements, as pickled
    bool contiguous = true;            // row-major and dense: `data` holds exactly the values
    std::size_t storage = 0;           // index into storages
  };
  std::vector<Layout> layouts;              // parallel to tensors
  std::vector<PickledStorage> storages;     // as the pickle declared them
  std::vector<const unsigned char*> storage_data;  // parallel to storages; null when no tensor uses it
  bool zip64 = false;
};

/// Reads and checks the archive in `bytes` (not copied: tensors point into it). `file` names it
/// in messages. Refuses, with a FormatError naming `file` and the problem:
/// an empty file; a safetensors file (say so: rename it); a legacy pre-1.6 torch.save file
/// (pickle with data appended) or tar file (say how to re-save it); anything else that is not a
/// zip; zip errors (ZipArchive::parse); no or several `*/data.pkl`; a TorchScript archive; a
/// compressed record; a `byteorder` record other than "little"; a data.pkl failing its CRC or the
/// restricted unpickler; a storage record that is missing or whose byte length is not numel x
/// element size; a tensor whose element count, byte size or last element (storage_offset +
/// sum((size-1) x stride)) overflows or lies past its storage.
TorchArchive read_torch_archive(const unsigned char* bytes, std::size_t size, const std::string& file);

/// Writes the values of `tensor` (supported dtype, data not null) as float32 into `dst` (numel()
/// floats), honouring `layout`'s strides: a contiguous tensor is converted in one pass, a strided
/// view gathered element by element in row-major order.
void read_f32(const TensorInfo& tensor, const TorchArchive::Layout& layout, float* dst);

/// A pytorch_model.bin (or shard) mapped read-only, with the interface of SafeTensorsFile.
class TorchCheckpointFile {
 public:
  /// Maps `path` and runs read_torch_archive on it. Throws FormatError.
  static TorchCheckpointFile open(const std::filesystem::path& path);

  TorchCheckpointFile(TorchCheckpointFile&&) noexcept = default;
  TorchCheckpointFile& operator=(TorchCheckpointFile&&) noexcept = default;
  TorchCheckpointFile(const TorchCheckpointFile&) = delete;
  TorchCheckpointFile& operator=(const TorchCheckpointFile&) = delete;

  /// nullptr if absent. Also returns tensors whose dtype is not supported (integer buffers).
  const TensorInfo* find(std::string_view name) const;
  /// The tensor `name`, which must exist and be F32, F16 or BF16. Throws FormatError otherwise.
  const TensorInfo& get(std::string_view name) const;
  const std::vector<TensorInfo>& tensors() const { return archive_.tensors; }
  const std::filesystem::path& path() const { return path_; }
  std::size_t file_size() const { return map_.size(); }
  const std::string& archive_prefix() const { return archive_.prefix; }
  bool contiguous(const TensorInfo& tensor) const;

  /// Writes the values of `tensor` (one of this file's, supported dtype) as float32 into `dst`
  /// (numel() floats), honouring its strides: a contiguous tensor is converted in one pass from
  /// the mapping, a strided view is gathered element by element. Throws FormatError after release().
  void read_f32(const TensorInfo& tensor, float* dst) const;

  /// Unmaps the file; metadata stays readable, every TensorInfo::data becomes null. Idempotent.
  void release();
  bool released() const { return !map_.mapped(); }
  /// Drops the pages of `tensor`'s span from resident memory (see SafeTensorsFile::evict).
  void evict(const TensorInfo& tensor) const;

 private:
  TorchCheckpointFile() = default;
  std::size_t index_of(const TensorInfo& tensor) const;

  std::filesystem::path path_;
  MappedFile map_;
  TorchArchive archive_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace xcaption
