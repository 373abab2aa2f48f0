#include "src/cli/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace {
std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(seconds < 0 ? 0 : seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}
constexpr auto kPlainEvery = std::chrono::seconds(10);
constexpr auto kBarEvery = std::chrono::milliseconds(100);
}  // namespace

ProgressMode parse_progress_mode(const std::string& t) {
  if (t == "auto") return ProgressMode::Auto;
  if (t == "bar") return ProgressMode::Bar;
  if (t == "plain") return ProgressMode::Plain;
  if (t == "none") return ProgressMode::None;
  throw UsageError(fmt::format("--progress must be auto, bar, plain or none, got '{}'", t));
}

Progress::Progress(std::int64_t total, ProgressMode mode) : total_(total), mode_(mode), start_(Clock::now()) {
  if (mode_ == ProgressMode::Auto) mode_ = ::isatty(STDERR_FILENO) ? ProgressMode::Bar : ProgressMode::Plain;
  last_draw_ = start_;
}

std::string Progress::status() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  std::string s = fmt::format("{}/{} images, {:.2f} img/s", done_, total_, rate);
  if (rate > 0 && done_ < total_) s += ", ETA " + clock_text(static_cast<double>(total_ - done_) / rate);
  if (failed_ > 0) s += fmt::format(", {} error{}", failed_, failed_ == 1 ? "" : "s");
  return s;
}

void Progress::draw(bool force) {
  const auto now = Clock::now();
  if (mode_ == ProgressMode::Bar) {
    if (!force && now - last_draw_ < kBarEvery) return;
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * done_ / total_) : kWidth;
    std::fprintf(stderr, "\r\033[K[%s%s] %s", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), status().c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else if (mode_ == ProgressMode::Plain) {
    if (!force && now - last_draw_ < kPlainEvery) return;
    std::fprintf(stderr, "xcaption: %s\n", status().c_str());
    printed_plain_ = true;
  } else {
    return;
  }
  last_draw_ = now;
}

void Progress::advance(bool failed) {
  ++done_;
  if (failed) ++failed_;
  draw(false);
}

void Progress::clear() {
  if (drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }
}

void Progress::note(const std::string& line) {
  clear();
  std::fprintf(stderr, "xcaption: %s\n", line.c_str());
  if (mode_ == ProgressMode::Bar) draw(true);
}

void Progress::finish() {
  if (mode_ == ProgressMode::Bar) {
    draw(true);
    std::fputc('\n', stderr);
    drawn_ = false;
  } else if (mode_ == ProgressMode::Plain && printed_plain_) {
    draw(true);
  }
}

}  // namespace xcaption::cli
