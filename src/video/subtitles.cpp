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

// ---- Stable segments ---------------------------------------------------------------------------

Stabilizer parse_stabilizer(std::string_view name) {
  if (name == "none") return Stabilizer::None;
  if (name == "consecutive") return Stabilizer::Consecutive;
  if (name == "majority") return Stabilizer::Majority;
  throw InputError(fmt::format("unknown stabilizer '{}' (valid: none, consecutive, majority)", name));
}

std::string_view stabilizer_name(Stabilizer kind) {
  switch (kind) {
    case Stabilizer::None: return "none";
    case Stabilizer::Consecutive: return "consecutive";
    case Stabilizer::Majority: return "majority";
  }
  return "?";
}

namespace {

// The caption each sample is shown with after the stabiliser (before min_segment).
std::vector<std::string> stable_captions(std::span<const Segment> samples, const StabilizeOptions& o) {
  const std::size_t n = samples.size();
  std::vector<std::string> out(n);
  if (o.kind == Stabilizer::None || o.window <= 1) {
    for (std::size_t i = 0; i < n; ++i) out[i] = samples[i].caption;
    return out;
  }
  if (o.kind == Stabilizer::Majority) {
    const std::size_t half = static_cast<std::size_t>(o.window / 2);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t lo = i >= half ? i - half : 0, hi = std::min(n - 1, i + half);
      // Windows are a few samples wide: counting by pairwise comparison is cheaper than a map.
      std::size_t best = i, best_count = 0;
      for (std::size_t j = lo; j <= hi; ++j) {
        std::size_t count = 0;
        for (std::size_t k = lo; k <= hi; ++k) count += samples[k].caption == samples[j].caption;
        // Ties: the sample's own caption, else the one shown for the previous sample (no change
        // without a majority for it), else the first seen.
        auto rank = [&](std::size_t x) {
          if (samples[x].caption == samples[i].caption) return 2;
          return i > 0 && samples[x].caption == out[i - 1] ? 1 : 0;
        };
        if (count > best_count || (count == best_count && rank(j) > rank(best))) best = j, best_count = count;
      }
      out[i] = samples[best].caption;
    }
    return out;
  }
  // Consecutive: runs of equal captions; a run of at least K samples is stable.
  struct Run {
    std::size_t first, count;
  };
  std::vector<Run> runs;
  for (std::size_t i = 0; i < n; ++i) {
    if (!runs.empty() && samples[i].caption == samples[runs.back().first].caption) ++runs.back().count;
    else runs.push_back({i, 1});
  }
  const auto k = static_cast<std::size_t>(o.window);
  // Samples before the first stable run belong to it (nothing stable was shown before it); with no
  // stable run at all the first caption stays.
  std::string current = samples[runs.front().first].caption;
  for (const Run& r : runs)
    if (r.count >= k) {
      current = samples[r.first].caption;
      break;
    }
  for (const Run& r : runs) {
    if (r.count >= k) current = samples[r.first].caption;
    for (std::size_t i = r.first; i < r.first + r.count; ++i) out[i] = current;
  }
  return out;
}

double duration_of(const std::vector<Segment>& segs, std::size_t i, double end_time) {
  const double end = i + 1 < segs.size() ? segs[i + 1].start : std::max(segs[i].start, end_time);
  return end - segs[i].start;
}

}  // namespace

std::vector<Segment> stabilize(std::span<const Segment> samples, double end_time, const StabilizeOptions& options) {
  if (options.window < 1)
    throw InputError(fmt::format("segments: stabilizer window must be >= 1 sample, got {}", options.window));
  if (options.kind == Stabilizer::Majority && options.window % 2 == 0)
    throw InputError(fmt::format("segments: a majority window must be odd, got {}", options.window));
  if (!(options.min_segment >= 0) || !std::isfinite(options.min_segment))
    throw InputError(fmt::format("segments: minimum segment length must be >= 0 seconds, got {}", options.min_segment));
  for (std::size_t i = 1; i < samples.size(); ++i)
    if (samples[i].start < samples[i - 1].start)
      throw InputError(fmt::format("segments: sample at {} s comes before the previous one at {} s", samples[i].start,
                                   samples[i - 1].start));
  if (samples.empty()) return {};

  const std::vector<std::string> shown = stable_captions(samples, options);
  std::vector<Segment> segs;
  std::vector<bool> represented;  // the segment's frame/log-prob come from a sample with its caption
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Segment& s = samples[i];
    if (segs.empty() || segs.back().caption != shown[i]) {
      Segment g = s;
      g.caption = shown[i];
      g.samples = 0;
      segs.push_back(std::move(g));
      represented.push_back(s.caption == shown[i]);
    } else if (!represented.back() && s.caption == shown[i]) {
      segs.back().frame_index = s.frame_index;
      segs.back().mean_logprob = s.mean_logprob;
      represented.back() = true;
    }
    segs.back().samples += s.samples > 0 ? s.samples : 1;
  }

  if (options.min_segment > 0) {
    for (;;) {
      std::size_t shortest = segs.size();
      double shortest_len = options.min_segment;
      for (std::size_t i = 0; i < segs.size() && segs.size() > 1; ++i) {
        const double d = duration_of(segs, i, end_time);
        if (d < shortest_len) shortest = i, shortest_len = d;
      }
      if (shortest == segs.size()) break;
      const std::size_t i = shortest;
      const bool has_prev = i > 0, has_next = i + 1 < segs.size();
      const bool into_prev =
          has_prev && (!has_next || duration_of(segs, i - 1, end_time) >= duration_of(segs, i + 1, end_time));
      if (into_prev) {
        segs[i - 1].samples += segs[i].samples;
      } else {
        segs[i + 1].samples += segs[i].samples;
        segs[i + 1].start = segs[i].start;
      }
      segs.erase(segs.begin() + static_cast<std::ptrdiff_t>(i));
      // The neighbours now touching may carry the same caption: one segment.
      const std::size_t a = into_prev ? i - 1 : (i > 0 ? i - 1 : 0);
      if (a + 1 < segs.size() && segs[a].caption == segs[a + 1].caption) {
        segs[a].samples += segs[a + 1].samples;
        segs.erase(segs.begin() + static_cast<std::ptrdiff_t>(a + 1));
      }
    }
  }
  for (std::size_t i = 0; i < segs.size(); ++i)
    segs[i].end = i + 1 < segs.size() ? segs[i + 1].start : std::max(segs[i].start, end_time);
  return segs;
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
