// Segment merging and the SubRip / WebVTT / JSONL writers (include/xcaption/video.hpp).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>

namespace xcaption::video {

void SegmentBuilder::add(double time, std::string_view caption, std::int64_t frame_index, double mean_logprob) {
  if (!segments_.empty() && time < last_time_)
    throw InputError(fmt::format("segments: sample at {} s comes before the previous one at {} s", time, last_time_));
  last_time_ = time;
  if (!segments_.empty() && segments_.back().caption == caption) {
    segments_.back().end = time;
    ++segments_.back().samples;
    return;
  }
  if (!segments_.empty()) segments_.back().end = time;
  Segment s;
  s.start = s.end = time;
  s.caption = std::string(caption);
  s.frame_index = frame_index;
  s.mean_logprob = mean_logprob;
  s.samples = 1;
  segments_.push_back(std::move(s));
}

std::vector<Segment> SegmentBuilder::finish(double end_time) const {
  std::vector<Segment> out = segments_;
  if (!out.empty()) out.back().end = std::max(out.back().start, end_time);
  return out;
}

namespace {

// Times past this (about 31,700 years) are written as this: a cast of a larger double (or of
// infinity) to an integer is undefined behaviour, and no stream runs that long.
constexpr double kMaxSeconds = 1e12;

std::int64_t to_ms(double seconds) {
  if (!(seconds > 0)) return 0;  // negative and NaN
  return static_cast<std::int64_t>(std::floor(std::min(seconds, kMaxSeconds) * 1000.0 + 0.5));
}

std::string timestamp_ms(std::int64_t ms, char separator) {
  return fmt::format("{:02}:{:02}:{:02}{}{:03}", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, separator, ms % 1000);
}

// One line of cue text: line breaks and tabs become spaces, runs of spaces collapse, ends trimmed.
std::string one_line(std::string_view text) {
  std::string out;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string vtt_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else out += c;
  }
  return out;
}

std::string cues(std::span<const Segment> segments, char separator, bool webvtt) {
  std::string out;
  int number = 0;
  for (const auto& s : segments) {
    std::string text = one_line(s.caption);
    if (text.empty()) continue;
    if (webvtt) text = vtt_escape(text);
    const std::int64_t start = to_ms(s.start);
    const std::int64_t end = std::max(to_ms(s.end), start + 1);
    out += fmt::format("{}\n{} --> {}\n{}\n\n", ++number, timestamp_ms(start, separator), timestamp_ms(end, separator),
                       text);
  }
  return out;
}

}  // namespace

std::string format_timestamp(double seconds, char separator) { return timestamp_ms(to_ms(seconds), separator); }

std::string to_srt(std::span<const Segment> segments) { return cues(segments, ',', false); }

std::string to_webvtt(std::span<const Segment> segments) { return "WEBVTT\n\n" + cues(segments, '.', true); }

std::string to_jsonl(std::span<const Segment> segments) {
  std::string out;
  for (const auto& s : segments) {
    nlohmann::ordered_json j;
    j["start"] = std::round(s.start * 1000.0) / 1000.0;
    j["end"] = std::round(s.end * 1000.0) / 1000.0;
    j["caption"] = s.caption;
    j["frame"] = s.frame_index;
    j["mean_logprob"] = s.mean_logprob;
    j["samples"] = s.samples;
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
  }
  return out;
}

}  // namespace xcaption::video
