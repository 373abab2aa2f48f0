// Atomic writes: temporary file in the destination folder, flushed, then renamed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/viz/draw.hpp"
#include "src/viz/files.hpp"

namespace xcaption::viz {

namespace detail {

namespace {

// Slots for tracked temporaries: a slot's path is written while `state` is kFree -> kWriting, and
// read by the signal handler only in state kUsed.
constexpr int kFree = 0, kWriting = 1, kUsed = 2;
constexpr std::size_t kSlots = 16, kMaxPath = 4096;
struct Slot {
  std::atomic<int> state{kFree};
  std::array<char, kMaxPath> path{};
};
std::array<Slot, kSlots> g_slots;

// Removes ".NAME.xcaption-tmp-PID-N..." siblings of `path` whose process is gone.
void remove_stale_temporaries(const std::filesystem::path& path) {
  const std::string prefix = fmt::format(".{}.xcaption-tmp-", path.filename().string());
  std::error_code ec;
  const auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const auto dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || dash > 9 ||
        rest.find_first_not_of("0123456789") != dash)
      continue;
    const long pid = std::stol(rest.substr(0, dash));
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      std::filesystem::remove(it->path(), rm);
    }
  }
}

}  // namespace

std::filesystem::path temporary_sibling(const std::filesystem::path& path) {
  static std::atomic<unsigned> counter{0};
  remove_stale_temporaries(path);
  const auto name = path.filename().string();
  return path.parent_path() /
         fmt::format(".{}.xcaption-tmp-{}-{}{}", name, static_cast<long>(::getpid()), counter++,
                     path.extension().string());
}

bool track_temporary(const std::filesystem::path& tmp) {
  const std::string text = tmp.string();
  if (text.empty() || text.size() >= kMaxPath) return false;
  for (auto& slot : g_slots) {
    int expected = kFree;
    if (!slot.state.compare_exchange_strong(expected, kWriting)) continue;
    std::memcpy(slot.path.data(), text.c_str(), text.size() + 1);
    slot.state.store(kUsed);
    return true;
  }
  return false;
}

void untrack_temporary(const std::filesystem::path& tmp) {
  const std::string text = tmp.string();
  for (auto& slot : g_slots) {
    if (slot.state.load() == kUsed && std::strcmp(slot.path.data(), text.c_str()) == 0) {
      slot.state.store(kFree);
      return;
    }
  }
}

void unlink_tracked_temporaries() noexcept {
  for (auto& slot : g_slots)
    if (slot.state.load() == kUsed) ::unlink(slot.path.data());
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
  const detail::TrackedTemporary tracking(tmp);
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

namespace {
bool png_bytes(const RgbImage& image, std::vector<std::uint8_t>& buffer) {
  const cv::Mat bgr = detail::bgr_from_rgb(image);
  // zlib level 6 (its own default) rather than OpenCV's faster level 1: about 10% smaller here.
  return cv::imencode(".png", bgr, buffer, {cv::IMWRITE_PNG_COMPRESSION, 6});
}
}  // namespace

std::string encode_png(const RgbImage& image) {
  std::vector<std::uint8_t> buffer;
  if (!png_bytes(image, buffer)) throw InputError("PNG encoding failed");
  return {reinterpret_cast<const char*>(buffer.data()), buffer.size()};
}

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  std::vector<std::uint8_t> buffer;
  if (!png_bytes(image, buffer))
    throw FormatError(fmt::format("cannot write '{}': PNG encoding failed", path.string()));
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()));
}

}  // namespace xcaption::viz
