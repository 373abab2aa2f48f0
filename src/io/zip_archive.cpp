#include "src/io/zip_archive.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kZip64EndSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::size_t kEndSize = 22;
constexpr std::size_t kLocatorSize = 20;
constexpr std::size_t kZip64EndSize = 56;
constexpr std::size_t kCentralSize = 46;
constexpr std::size_t kLocalSize = 30;
constexpr std::size_t kMaxComment = 0xffff;
constexpr std::uint32_t kSat32 = 0xffffffffu;
constexpr std::uint16_t kSat16 = 0xffffu;

std::uint16_t rd16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t rd32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t rd64(const unsigned char* p) {
  return static_cast<std::uint64_t>(rd32(p)) | (static_cast<std::uint64_t>(rd32(p + 4)) << 32);
}

const char* method_name(std::uint16_t m) {
  switch (m) {
    case 0: return "stored";
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "unknown method";
  }
}

// The printable form of an entry name for messages (control bytes escaped, long names cut).
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  if (s.size() > 200) out += "...";
  return out;
}

// The values a ZIP64 extended information extra field (id 0x0001) supplies: each is present only
// when the corresponding header field is saturated, in this order (APPNOTE 4.5.3).
struct Zip64Values {
  std::optional<std::uint64_t> size, compressed_size, local_header_offset;
  std::optional<std::uint32_t> disk;
};

// Walks the extra-field block [p, p + n) and reads the ZIP64 field for the saturated values.
// Returns an error text (empty when fine).
std::string read_zip64(const unsigned char* p, std::size_t n, bool need_size, bool need_csize,
                       bool need_offset, bool need_disk, Zip64Values& out) {
  bool found = false;
  std::size_t at = 0;
  while (at < n) {
    if (n - at < 4) return fmt::format("extra field block ends inside a field header ({} stray bytes)", n - at);
    const std::uint16_t id = rd16(p + at), len = rd16(p + at + 2);
    if (len > n - at - 4)
      return fmt::format("extra field 0x{:04x} of {} bytes overruns the {}-byte extra block", id, len, n);
    if (id == 0x0001 && !found) {
      found = true;
      const unsigned char* q = p + at + 4;
      std::size_t left = len;
      const auto take64 = [&](std::optional<std::uint64_t>& v) {
        if (left < 8) return false;
        v = rd64(q);
        q += 8;
        left -= 8;
        return true;
      };
      if ((need_size && !take64(out.size)) || (need_csize && !take64(out.compressed_size)) ||
          (need_offset && !take64(out.local_header_offset)))
        return fmt::format("ZIP64 extra field of {} bytes is too short for the saturated header values", len);
      if (need_disk) {
        if (left < 4) return "ZIP64 extra field is too short for the disk number";
        out.disk = rd32(q);
      }
    }
    at += 4 + std::size_t{len};
  }
  if ((need_size || need_csize || need_offset || need_disk) && !found)
    return "a size or offset is 0xffffffff but there is no ZIP64 extra field";
  return {};
}

}  // namespace

std::uint32_t crc32(const unsigned char* p, std::size_t n, std::uint32_t crc) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

ZipArchive ZipArchive::parse(const unsigned char* b, std::size_t size, std::string file) {
  ZipArchive z;
  z.bytes_ = b;
  z.size_ = size;
  z.file_ = std::move(file);
  const std::string where = z.file_ + ": zip archive";
  if (size < kEndSize)
    throw FormatError(fmt::format("{}: {} bytes, too short for an end of central directory record "
                                  "(truncated, or not a zip archive)", where, size));

  // End of central directory: the last record whose comment length reaches the end of the file.
  std::optional<std::size_t> end_at;
  const std::size_t lowest = size - kEndSize > kMaxComment ? size - kEndSize - kMaxComment : 0;
  for (std::size_t p = size - kEndSize + 1; p-- > lowest;) {
    if (rd32(b + p) == kEndSig && rd16(b + p + 20) == size - p - kEndSize) {
      end_at = p;
      break;
    }
  }
  if (!end_at)
    throw FormatError(fmt::format("{}: no end of central directory record in the last {} bytes "
                                  "(truncated, or not a zip archive)", where, size - lowest));
  const unsigned char* e = b + *end_at;
  std::uint32_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  std::uint64_t on_disk = rd16(e + 8), count = rd16(e + 10), cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  std::uint64_t cd_limit = *end_at;  // where the central directory must end

  if (*end_at >= kLocatorSize && rd32(e - kLocatorSize) == kZip64LocatorSig) {
    z.zip64_ = true;
    const std::size_t loc = *end_at - kLocatorSize;
    const std::uint32_t z_disk = rd32(b + loc + 4), disks = rd32(b + loc + 16);
    const std::uint64_t z_at = rd64(b + loc + 8);
    if (z_disk != 0 || disks > 1)
      throw FormatError(fmt::format("{}: spans {} disks; only single-file archives are supported", where, disks));
    if (z_at > loc || loc - z_at < kZip64EndSize)
      throw FormatError(fmt::format("{}: the ZIP64 locator points at offset {}, outside the archive", where, z_at));
    const unsigned char* r = b + z_at;
    if (rd32(r) != kZip64EndSig)
      throw FormatError(fmt::format("{}: no ZIP64 end of central directory record at offset {} "
                                    "(where the locator points)", where, z_at));
    const std::uint64_t rec = rd64(r + 4);
    if (rec < kZip64EndSize - 12 || rec > loc - z_at - 12)
      throw FormatError(fmt::format("{}: ZIP64 end of central directory record declares {} bytes, "
                                    "which does not fit before the locator", where, rec));
    const std::uint32_t z_disk_no = rd32(r + 16), z_cd_disk = rd32(r + 20);
    const std::uint64_t z_on_disk = rd64(r + 24), z_count = rd64(r + 32), z_cd_size = rd64(r + 40),
                        z_cd_offset = rd64(r + 48);
    const auto agree = [&](const char* what, std::uint64_t classic, std::uint64_t sat, std::uint64_t v) {
      if (classic != sat && classic != v)
        throw FormatError(fmt::format("{}: end of central directory says {} {} but the ZIP64 record says {}",
                                      where, what, classic, v));
    };
    agree("entry count", count, kSat16, z_count);
    agree("central directory size", cd_size, kSat32, z_cd_size);
    agree("central directory offset", cd_offset, kSat32, z_cd_offset);
    disk = z_disk_no;
    cd_disk = z_cd_disk;
    on_disk = z_on_disk;
    count = z_count;
    cd_size = z_cd_size;
    cd_offset = z_cd_offset;
    cd_limit = z_at;
  }
  if (disk != 0 || cd_disk != 0 || on_disk != count)
    throw FormatError(fmt::format("{}: a multi-disk archive (disk {}, {} of {} entries on it); only "
                                  "single-file archives are supported", where, disk, on_disk, count));
  if (count > kMaxEntries)
    throw FormatError(fmt::format("{}: declares {} entries, more than the {} this reader accepts", where,
                                  count, kMaxEntries));
  if (cd_offset > cd_limit || cd_size != cd_limit - cd_offset)
    throw FormatError(fmt::format("{}: central directory at offset {} of {} bytes does not end where the end "
                                  "record begins (offset {})", where, cd_offset, cd_size, cd_limit));
  if (count * kCentralSize > cd_size)
    throw FormatError(fmt::format("{}: a {}-byte central directory cannot hold {} entries", where, cd_size, count));

  // Central directory entries, each checked against its local header.
  const std::uint64_t cd_end = cd_offset + cd_size;
  std::uint64_t cur = cd_offset;
  z.entries_.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    if (cd_end - cur < kCentralSize)
      throw FormatError(fmt::format("{}: central directory entry {} is truncated", where, i));
    const unsigned char* p = b + cur;
    if (rd32(p) != kCentralSig)
      throw FormatError(fmt::format("{}: central directory entry {} at offset {} has a bad signature", where, i, cur));
    ZipEntry en;
    en.flags = rd16(p + 8);
    en.method = rd16(p + 10);
    en.crc32 = rd32(p + 16);
    const std::uint32_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
    const std::uint16_t nlen = rd16(p + 28), elen = rd16(p + 30), clen = rd16(p + 32), dstart = rd16(p + 34);
    const std::uint64_t total = kCentralSize + std::uint64_t{nlen} + elen + clen;
    if (total > cd_end - cur)
      throw FormatError(fmt::format("{}: central directory entry {} runs past the central directory", where, i));
    en.name.assign(reinterpret_cast<const char*>(p + kCentralSize), nlen);
    const std::string ename = fmt::format("{}: entry '{}'", where, printable(en.name));
    Zip64Values z64;
    const std::string err = read_zip64(p + kCentralSize + nlen, elen, usize == kSat32, csize == kSat32,
                                       lho == kSat32, dstart == kSat16, z64);
    if (!err.empty()) throw FormatError(fmt::format("{}: {}", ename, err));
    en.size = z64.size.value_or(usize);
    en.compressed_size = z64.compressed_size.value_or(csize);
    en.local_header_offset = z64.local_header_offset.value_or(lho);
    if (z64.disk.value_or(dstart) != 0)
      throw FormatError(fmt::format("{}: starts on disk {}; only single-file archives are supported", ename,
                                    z64.disk.value_or(dstart)));
    if (en.flags & 0x0001) throw FormatError(fmt::format("{}: is encrypted", ename));
    if (en.method == 0 && en.compressed_size != en.size)
      throw FormatError(fmt::format("{}: stored, but its compressed size {} differs from its size {}", ename,
                                    en.compressed_size, en.size));

    // Local header: inside the data area (before the central directory), same name and method.
    const std::uint64_t lh = en.local_header_offset;
    if (lh > cd_offset || cd_offset - lh < kLocalSize)
      throw FormatError(fmt::format("{}: local header offset {} is outside the archive's data area "
                                    "(which ends at {})", ename, lh, cd_offset));
    const unsigned char* l = b + lh;
    if (rd32(l) != kLocalSig)
      throw FormatError(fmt::format("{}: no local header at offset {}", ename, lh));
    const std::uint16_t lmethod = rd16(l + 8), lnlen = rd16(l + 26), lelen = rd16(l + 28);
    const std::uint32_t lcrc = rd32(l + 14), lcsize = rd32(l + 18), lusize = rd32(l + 22);
    if (std::uint64_t{lnlen} + lelen > cd_offset - lh - kLocalSize)
      throw FormatError(fmt::format("{}: local header at offset {} runs into the central directory", ename, lh));
    if (lnlen != nlen || std::memcmp(l + kLocalSize, en.name.data(), nlen) != 0)
      throw FormatError(fmt::format("{}: the local header at offset {} names '{}'", ename, lh,
                                    printable({reinterpret_cast<const char*>(l + kLocalSize), lnlen})));
    if (lmethod != en.method)
      throw FormatError(fmt::format("{}: local header says method {}, central directory {}", ename, lmethod,
                                    en.method));
    Zip64Values lz64;
    const bool deferred = (en.flags & 0x0008) != 0;  // CRC and sizes in a data descriptor
    if (!deferred || lusize == kSat32 || lcsize == kSat32) {
      const std::string lerr =
          read_zip64(l + kLocalSize + lnlen, lelen, lusize == kSat32, lcsize == kSat32, false, false, lz64);
      if (!lerr.empty()) throw FormatError(fmt::format("{}: local header: {}", ename, lerr));
    }
    const std::uint64_t l_usize = lz64.size.value_or(lusize), l_csize = lz64.compressed_size.value_or(lcsize);
    // With bit 3 set the local fields may be zero (the writer did not know them yet).
    const auto same = [&](std::uint64_t local, std::uint64_t central) {
      return local == central || (deferred && local == 0);
    };
    if (!same(lcrc, en.crc32) || !same(l_usize, en.size) || !same(l_csize, en.compressed_size))
      throw FormatError(fmt::format("{}: local header (CRC {:08x}, sizes {}/{}) disagrees with the central "
                                    "directory (CRC {:08x}, sizes {}/{})", ename, lcrc, l_csize, l_usize,
                                    en.crc32, en.compressed_size, en.size));
    en.data_offset = lh + kLocalSize + lnlen + lelen;
    if (en.compressed_size > cd_offset - en.data_offset)
      throw FormatError(fmt::format("{}: its {} bytes of data at offset {} run past the data area (which "
                                    "ends at {}; truncated file?)", ename, en.compressed_size, en.data_offset,
                                    cd_offset));
    if (!z.index_.emplace(en.name, z.entries_.size()).second)
      throw FormatError(fmt::format("{}: appears twice in the central directory", ename));
    z.entries_.push_back(std::move(en));
    cur += total;
  }
  if (cur != cd_end)
    throw FormatError(fmt::format("{}: central directory has {} bytes after its {} entries", where,
                                  cd_end - cur, count));

  // No two entries may share bytes (a zip-bomb and polyglot trick).
  std::vector<const ZipEntry*> by_offset;
  by_offset.reserve(z.entries_.size());
  for (const auto& en : z.entries_) by_offset.push_back(&en);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const ZipEntry* a, const ZipEntry* c) { return a->local_header_offset < c->local_header_offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const ZipEntry& a = *by_offset[i - 1];
    const ZipEntry& c = *by_offset[i];
    if (a.data_offset + a.compressed_size > c.local_header_offset)
      throw FormatError(fmt::format("{}: entries '{}' and '{}' overlap", where, printable(a.name), printable(c.name)));
  }
  return z;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const unsigned char> ZipArchive::data(const ZipEntry& e) const {
  if (e.method != 0)
    throw FormatError(fmt::format(
        "{}: zip archive: entry '{}' is compressed ({}); xcaption reads only stored (uncompressed) entries, "
        "which is how torch.save writes them: re-save the weights with torch.save, or convert them to "
        "safetensors", file_, printable(e.name), method_name(e.method)));
  return {bytes_ + e.data_offset, static_cast<std::size_t>(e.size)};
}

void ZipArchive::check_crc(const ZipEntry& e) const {
  const auto bytes = data(e);
  const std::uint32_t got = crc32(bytes.data(), bytes.size());
  if (got != e.crc32)
    throw FormatError(fmt::format("{}: zip archive: entry '{}' fails its CRC-32 check (recorded {:08x}, "
                                  "computed {:08x}): the file is corrupt", file_, printable(e.name), e.crc32, got));
}

}  // namespace xcaption
