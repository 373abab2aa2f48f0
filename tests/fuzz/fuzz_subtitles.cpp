// libFuzzer target for the subtitle writers: arbitrary captions (any bytes: line breaks, "-->",
// tags, invalid UTF-8) and arbitrary times (negative, NaN, infinite, huge) go through
// SegmentBuilder and to_srt / to_webvtt / to_jsonl, and the output is checked for the structure a
// player relies on: cues numbered 1..n, each "number / start --> end / one text line / blank",
// start <= end, no "-->" or '<' in WebVTT text, one JSON object per JSONL line.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>

#include "tests/fuzz/fuzz_util.hpp"

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& text) {
  std::fprintf(stderr, "fuzz_subtitles: %s in:\n%s\n", what.c_str(), text.c_str());
  std::abort();
}

double time_from(xcaption::fuzz::Bytes& in) {
  switch (in.u8() % 8) {
    case 0: return std::numeric_limits<double>::quiet_NaN();
    case 1: return std::numeric_limits<double>::infinity();
    case 2: return -std::numeric_limits<double>::infinity();
    case 3: return -static_cast<double>(in.u16());
    case 4: return 1e300;
    default: {
      double d;
      std::uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits |= static_cast<std::uint64_t>(in.u8()) << (8 * i);
      std::memcpy(&d, &bits, sizeof d);
      return d;
    }
  }
}

std::int64_t parse_ms(const std::string& t, char sep, const std::string& text) {
  // HH+:MM:SS<sep>mmm
  const auto c1 = t.find(':');
  if (c1 == std::string::npos || c1 < 2 || t.size() != c1 + 10 || t[c1 + 3] != ':' || t[c1 + 6] != sep)
    fail("malformed timestamp '" + t + "'", text);
  for (std::size_t i = 0; i < t.size(); ++i)
    if (i != c1 && i != c1 + 3 && i != c1 + 6 && (t[i] < '0' || t[i] > '9')) fail("malformed timestamp '" + t + "'", text);
  const std::int64_t h = std::stoll(t.substr(0, c1)), m = std::stoll(t.substr(c1 + 1, 2)),
                     s = std::stoll(t.substr(c1 + 4, 2)), ms = std::stoll(t.substr(c1 + 7, 3));
  if (m > 59 || s > 59) fail("minutes or seconds over 59 in '" + t + "'", text);
  return ((h * 60 + m) * 60 + s) * 1000 + ms;
}

void check_cues(const std::string& out, std::size_t skip, char sep, bool webvtt) {
  std::istringstream in(out.substr(skip));
  std::string line;
  int expected = 1;
  while (std::getline(in, line)) {
    if (line != std::to_string(expected)) fail("cue number " + std::to_string(expected) + " expected, got '" + line + "'", out);
    std::string times, text, blank;
    if (!std::getline(in, times) || !std::getline(in, text) || !std::getline(in, blank)) fail("a cue cut short", out);
    const auto arrow = times.find(" --> ");
    if (arrow == std::string::npos) fail("no ' --> ' in '" + times + "'", out);
    const std::int64_t a = parse_ms(times.substr(0, arrow), sep, out), b = parse_ms(times.substr(arrow + 5), sep, out);
    if (!(a < b)) fail("a cue that does not end after its start: " + times, out);
    if (text.empty() || text.front() == ' ' || text.back() == ' ') fail("empty or untrimmed cue text", out);
    if (text.find('\r') != std::string::npos) fail("a carriage return in cue text", out);
    if (webvtt && (text.find("-->") != std::string::npos || text.find('<') != std::string::npos))
      fail("unescaped WebVTT text '" + text + "'", out);
    if (!blank.empty()) fail("no blank line after a cue", out);
    ++expected;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  fuzz::Bytes in(data, size);
  const int n = in.range(0, 8);
  // Segments straight from the input (any times), and through SegmentBuilder (increasing times).
  std::vector<video::Segment> raw;  // any times
  video::SegmentBuilder builder;
  double last = -1e18;
  for (int i = 0; i < n; ++i) {
    video::Segment s;
    s.start = time_from(in);
    s.end = time_from(in);
    s.caption = in.string(200);
    s.frame_index = in.u16();
    s.mean_logprob = time_from(in);
    raw.push_back(s);
    try {
      builder.add(s.start, s.caption, s.frame_index, s.mean_logprob);
      if (!std::isnan(s.start) && s.start >= last) last = s.start;
    } catch (const InputError&) {
    }
  }
  const std::vector<video::Segment> merged = builder.finish(time_from(in));
  const std::vector<video::Segment>* both[] = {&raw, &merged};
  for (const std::vector<video::Segment>* segments : both) {
    const std::string srt = video::to_srt(*segments);
    check_cues(srt, 0, ',', false);
    const std::string vtt = video::to_webvtt(*segments);
    if (vtt.rfind("WEBVTT\n\n", 0) != 0) fail("no WEBVTT header", vtt);
    check_cues(vtt, 8, '.', true);
    std::istringstream jl(video::to_jsonl(*segments));
    std::string line;
    std::size_t lines = 0;
    while (std::getline(jl, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) fail("a JSONL line that is not an object", line);
      ++lines;
    }
    if (lines != segments->size()) fail("JSONL lines do not match the segments", std::to_string(lines));
  }
  for (const double t : {time_from(in), time_from(in)}) {
    video::format_timestamp(t, ',');
  }
  return 0;
}
