// Progress of a long run on stderr: a redrawn bar (count, images/s, ETA, errors) on a terminal,
// a plain line every 10 s otherwise, or nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace xcaption::cli {

enum class ProgressMode { Auto, Bar, Plain, None };

/// "auto", "bar", "plain" or "none" (UsageError otherwise).
ProgressMode parse_progress_mode(const std::string& text);

class Progress {
 public:
  /// Auto picks Bar when stderr is a terminal, else Plain.
  Progress(std::int64_t total, ProgressMode mode);
  /// One item done (failed or not).
  void advance(bool failed);
  /// A message line on stderr, "xcaption: " + line; the bar is redrawn below it.
  void note(const std::string& line);
  /// Erases the bar, before something else is written to the same terminal.
  void clear();
  /// Draws the final state (a bar ends its line; a plain run prints a last line if it printed any).
  void finish();

 private:
  void draw(bool force);
  std::string status() const;

  using Clock = std::chrono::steady_clock;
  std::int64_t total_, done_ = 0, failed_ = 0;
  ProgressMode mode_;
  Clock::time_point start_, last_draw_;
  bool drawn_ = false, printed_plain_ = false;
};

}  // namespace xcaption::cli
