// Atomic file output helpers (internal).
#pragma once

#include <filesystem>

namespace xcaption::viz::detail {

/// A unique hidden name next to `path` that keeps its extension (OpenCV's VideoWriter picks the
/// container from it): "dir/.name.xcaption-tmp-PID-N.ext".
std::filesystem::path temporary_sibling(const std::filesystem::path& path);

/// Renames `tmp` over `path` (atomic on one file system). Removes `tmp` and throws FormatError
/// naming `path` on failure.
void commit_temporary(const std::filesystem::path& tmp, const std::filesystem::path& path);

}  // namespace xcaption::viz::detail
