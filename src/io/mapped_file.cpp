#include "src/io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

MappedFile MappedFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FormatError(fmt::format("{}: cannot open: {}", file, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw FormatError(fmt::format("{}: cannot stat: {}", file, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(fmt::format("{}: not a regular file", file));
  }
  MappedFile m;
  m.size_ = static_cast<std::size_t>(st.st_size);
  if (m.size_ == 0) {
    ::close(fd);
    return m;
  }
  void* addr = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (addr == MAP_FAILED)
    throw FormatError(fmt::format("{}: cannot map {} bytes: {}", file, m.size_, std::strerror(map_err)));
  m.data_ = static_cast<const unsigned char*>(addr);
  return m;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
  data_ = nullptr;
}

void MappedFile::evict(const void* p, std::size_t n) const {
  if (!data_ || !p || n == 0) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<std::uintptr_t>(data_);
  const auto limit = base + size_;
  auto begin = reinterpret_cast<std::uintptr_t>(p);
  if (begin < base || begin >= limit) return;
  const auto end = std::min(limit, begin + std::min<std::uintptr_t>(n, limit - begin));
  // Whole pages only (a page shared with a neighbour is dropped too: a re-read from the page
  // cache later, never wrong data). The mapping starts on a page boundary.
  begin = begin / page * page;
  const auto end_page = (end + page - 1) / page * page;
  ::madvise(reinterpret_cast<void*>(begin), end_page - begin, MADV_DONTNEED);
}

}  // namespace xcaption
