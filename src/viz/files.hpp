// Atomic file output helpers (internal).
#pragma once

#include <filesystem>

namespace xcaption::viz::detail {

/// A unique hidden name next to `path` that keeps its extension (OpenCV's VideoWriter picks the
/// container from it): "dir/.name.xcaption-tmp-PID-N.ext". Temporaries of the same `path` left by
/// a process that no longer runs (killed with SIGKILL, say) are removed first.
std::filesystem::path temporary_sibling(const std::filesystem::path& path);

/// Temporaries that a forced exit must not leave behind. `track` records `tmp` (false when the
/// fixed table of slots is full or the path is too long: the file is then only removed by the
/// normal paths); `untrack` forgets it.
bool track_temporary(const std::filesystem::path& tmp);
void untrack_temporary(const std::filesystem::path& tmp);

/// Unlinks every tracked temporary. Async-signal-safe: for a signal handler that exits at once.
void unlink_tracked_temporaries() noexcept;

/// Tracks a temporary for as long as it lives.
class TrackedTemporary {
 public:
  explicit TrackedTemporary(std::filesystem::path tmp) : path_(std::move(tmp)), tracked_(track_temporary(path_)) {}
  ~TrackedTemporary() {
    if (tracked_) untrack_temporary(path_);
  }
  TrackedTemporary(const TrackedTemporary&) = delete;
  TrackedTemporary& operator=(const TrackedTemporary&) = delete;

 private:
  std::filesystem::path path_;
  bool tracked_;
};

/// Renames `tmp` over `path` (atomic on one file system). Removes `tmp` and throws FormatError
/// naming `path` on failure.
void commit_temporary(const std::filesystem::path& tmp, const std::filesystem::path& path);

}  // namespace xcaption::viz::detail
