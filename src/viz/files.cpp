// Atomic writes: temporary file in the destination folder, flushed, then renamed.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/viz/draw.hpp"
#include "src/viz/files.hpp"

namespace xcaption::viz {

namespace detail {

std::filesystem::path temporary_sibling(const std::filesystem::path& path) {
  static std::atomic<unsigned> counter{0};
  const auto name = path.filename().string();
  return path.parent_path() /
         fmt::format(".{}.xcaption-tmp-{}-{}{}", name, static_cast<long>(::getpid()), counter++,
                     path.extension().string());
}

void commit_temporary(const std::filesystem::path& tmp, const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw FormatError(fmt::format("cannot write '{}': {}", path.string(), ec.message()));
  }
}

}  // namespace detail

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  const auto tmp = detail::temporary_sibling(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw FormatError(fmt::format("cannot write '{}': {}", path.string(), std::strerror(errno)));
  auto fail = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw FormatError(fmt::format("cannot write '{}': {}", path.string(), std::strerror(err)));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) fail(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw FormatError(fmt::format("cannot write '{}': {}", path.string(), std::strerror(err)));
  }
  detail::commit_temporary(tmp, path);
}

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  const cv::Mat bgr = detail::bgr_from_rgb(image);
  std::vector<std::uint8_t> buffer;
  // zlib level 6 (its own default) rather than OpenCV's faster level 1: about 10% smaller here.
  if (!cv::imencode(".png", bgr, buffer, {cv::IMWRITE_PNG_COMPRESSION, 6}))
    throw FormatError(fmt::format("cannot write '{}': PNG encoding failed", path.string()));
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()));
}

}  // namespace xcaption::viz
