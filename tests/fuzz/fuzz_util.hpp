// Shared pieces of the libFuzzer targets: a byte reader that turns the fuzzer's input into sizes
// and strings, and a private scratch folder for the parsers that read files.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace xcaption::fuzz {

/// Takes fixed-size values from the front of the input and the rest as bytes. Running out gives
/// zeros, so every input is valid.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  std::uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | u8() << 8); }
  /// A value in [lo, hi].
  int range(int lo, int hi) { return lo + static_cast<int>(u16() % static_cast<unsigned>(hi - lo + 1)); }
  /// Up to `max` bytes up to the next 0 byte (consumed) or the end.
  std::string string(std::size_t max) {
    std::string s;
    while (n_ > 0 && s.size() < max) {
      const std::uint8_t c = u8();
      if (c == 0) break;
      s += static_cast<char>(c);
    }
    return s;
  }
  std::string_view rest() const { return {reinterpret_cast<const char*>(p_), n_}; }
  std::size_t left() const { return n_; }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

/// A scratch folder of this process, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("xcaption-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    static const std::filesystem::path keep = d;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return d;
  }();
  return dir;
}

/// Writes `bytes` to scratch_dir()/name (replacing it) and returns the path.
inline std::filesystem::path write_file(const std::string& name, std::string_view bytes) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

inline void remove_file(const std::string& name) {
  std::error_code ec;
  std::filesystem::remove(scratch_dir() / name, ec);
}

/// The input split at the first `sep` (absent: everything is the first part).
inline std::pair<std::string_view, std::string_view> split(std::string_view s, std::string_view sep) {
  const auto at = s.find(sep);
  if (at == std::string_view::npos) return {s, {}};
  return {s.substr(0, at), s.substr(at + sep.size())};
}

}  // namespace xcaption::fuzz
