// A read-only view of a zip archive held in memory (a file mapping), as torch.save writes them:
// the container of pytorch_model.bin. Only what such archives use is accepted: one disk, stored
// (uncompressed) entries read in place, ZIP64 records for archives and entries over 4 GB.
//
// ref: PKWARE APPNOTE.TXT 6.3 (4.3.7 local file header, 4.3.12 central directory header,
// 4.3.14-4.3.16 ZIP64 end of central directory record/locator and end of central directory,
// 4.5.3 ZIP64 extended information extra field).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption {

struct ZipEntry {
  std::string name;
  std::uint16_t flags = 0;   // general purpose bit flag
  std::uint16_t method = 0;  // 0 stored, 8 deflate, ...
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;  // uncompressed
  std::uint64_t local_header_offset = 0;
  std::uint64_t data_offset = 0;  // first byte of the entry's (compressed) data in the archive
};

class ZipArchive {
 public:
  /// Most entries a central directory may declare (a state dict has one per storage).
  static constexpr std::uint64_t kMaxEntries = 1u << 20;

  /// Reads the central directory of the archive `bytes` (`size` bytes, not copied: they must
  /// outlive the archive). `file` names the archive in messages. Checks, with overflow-safe
  /// arithmetic: the end of central directory record (searched in the last 64 KiB + 22 bytes,
  /// comment length matching the bytes after it), the ZIP64 locator and record when present, the
  /// central directory inside the archive and fully used, each entry's ZIP64 extra field, its
  /// local header (signature, same name and method; sizes and CRC equal to the central ones unless
  /// bit 3 defers them to a data descriptor), its data inside the archive before the central
  /// directory, no two entries overlapping, no duplicate names, no encryption, no multi-disk
  /// archive. Compressed entries are listed; data() refuses them. Throws FormatError
  /// "<file>: zip archive: ...".
  static ZipArchive parse(const unsigned char* bytes, std::size_t size, std::string file);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// nullptr if absent.
  const ZipEntry* find(std::string_view name) const;
  /// The bytes of a stored entry, in place (no copy). Throws FormatError for a compressed entry
  /// (xcaption does not inflate: torch.save stores every record uncompressed).
  std::span<const unsigned char> data(const ZipEntry& entry) const;
  /// Checks the CRC-32 of a stored entry's bytes against the central directory. Throws FormatError.
  void check_crc(const ZipEntry& entry) const;
  bool zip64() const { return zip64_; }
  const std::string& file() const { return file_; }

 private:
  const unsigned char* bytes_ = nullptr;
  std::size_t size_ = 0;
  std::string file_;
  bool zip64_ = false;
  std::vector<ZipEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// CRC-32 (ISO-HDLC, the zip and gzip checksum) of n bytes, continuing from `crc`.
std::uint32_t crc32(const unsigned char* p, std::size_t n, std::uint32_t crc = 0);

}  // namespace xcaption
