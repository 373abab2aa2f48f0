// A read-only memory mapping of a whole file, for checkpoint readers that parse in place.
#pragma once

#include <cstddef>
#include <filesystem>

namespace xcaption {

class MappedFile {
 public:
  /// Maps `path` read-only (MAP_PRIVATE). An empty file gives an empty mapping (data() null).
  /// Throws FormatError "<file>: cannot open/stat/map: <reason>" or "not a regular file".
  static MappedFile open(const std::filesystem::path& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool mapped() const { return data_ != nullptr; }

  /// Unmaps the file; data() becomes null. Idempotent.
  void release();

  /// Drops the whole pages covering [p, p + n) from resident memory (MADV_DONTNEED). The mapping
  /// stays valid: a later read faults the pages in again from the page cache. `p` must point into
  /// this mapping; a range partly outside it is clipped. Advisory: errors are ignored.
  void evict(const void* p, std::size_t n) const;

 private:
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace xcaption
