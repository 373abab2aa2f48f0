// Video captioning pieces: timestamps and the SubRip / WebVTT formats against their specs, segment
// merging, frame timing fallbacks, sampling, the near-duplicate test and the capture loop on short
// generated videos (include/xcaption/video.hpp).
#include <catch2/catch.hpp>

#include <filesystem>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>

#include <xcaption/scenes.hpp>

#include "src/scenes/render.hpp"
#include "src/video/frame_clock.hpp"
#include "tests/e2e/cli_runner.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace xcaption;
using namespace xcaption::video;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;

Segment seg(double start, double end, std::string caption, std::int64_t frame = 0) {
  Segment s;
  s.start = start;
  s.end = end;
  s.caption = std::move(caption);
  s.frame_index = frame;
  return s;
}

RgbImage solid(int w, int h, std::uint8_t v) {
  RgbImage img;
  img.width = w;
  img.height = h;
  img.data.assign(static_cast<std::size_t>(w) * h * 3, v);
  return img;
}

// Writes an MJPG .avi of `scenes` (BGR colours), each shown for `seconds_each`, with a small
// white square in a per-scene position so scenes differ locally too.
fs::path write_scenes_video(const fs::path& dir, const std::vector<cv::Scalar>& scenes, double seconds_each,
                            int fps, const std::string& name = "scenes.avi") {
  const fs::path path = dir / name;
  cv::VideoWriter w(path.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps, {96, 64});
  REQUIRE(w.isOpened());
  for (std::size_t s = 0; s < scenes.size(); ++s) {
    cv::Mat m(64, 96, CV_8UC3, scenes[s]);
    cv::rectangle(m, cv::Rect(8 + 20 * static_cast<int>(s % 4), 20, 14, 14), {255, 255, 255}, cv::FILLED);
    for (int f = 0; f < static_cast<int>(seconds_each * fps + 0.5); ++f) w.write(m);
  }
  w.release();
  return path;
}

}  // namespace

TEST_CASE("timestamps follow SubRip and WebVTT: HH:MM:SS,mmm / HH:MM:SS.mmm, rounded to ms", "[video]") {
  CHECK(format_timestamp(0, ',') == "00:00:00,000");
  CHECK(format_timestamp(1.5, ',') == "00:00:01,500");
  CHECK(format_timestamp(61.25, '.') == "00:01:01.250");
  CHECK(format_timestamp(3661.007, ',') == "01:01:01,007");
  CHECK(format_timestamp(0.0004, ',') == "00:00:00,000");
  CHECK(format_timestamp(0.0005, ',') == "00:00:00,001");  // halves round up
  CHECK(format_timestamp(0.0015, ',') == "00:00:00,002");
  CHECK(format_timestamp(59.9996, ',') == "00:01:00,000");  // carries into minutes
  CHECK(format_timestamp(3599.9995, '.') == "01:00:00.000");  // and hours
  CHECK(format_timestamp(100 * 3600 + 0.1, ',') == "100:00:00,100");  // hours grow past two digits
  CHECK(format_timestamp(-3, ',') == "00:00:00,000");
  CHECK(format_timestamp(2.0 / 3.0, '.') == "00:00:00.667");
}

TEST_CASE("SubRip output: numbered cues, timing line, one text line, blank line after each", "[video]") {
  const std::vector<Segment> segs = {seg(0, 2, "a red circle"), seg(2, 3.5, ""), seg(3.5, 3723.004, "a <b> & c\nd")};
  const std::string srt = to_srt(segs);
  CHECK(srt ==
        "1\n00:00:00,000 --> 00:00:02,000\na red circle\n\n"
        "2\n00:00:03,500 --> 01:02:03,004\na <b> & c d\n\n");
  // Every block matches the SubRip grammar.
  const std::regex timing(R"(\d{2,}:\d{2}:\d{2},\d{3} --> \d{2,}:\d{2}:\d{2},\d{3})");
  int n = 0;
  for (const auto& b : test::blocks(srt)) {
    REQUIRE(b.size() == 3);
    CHECK(b[0] == std::to_string(++n));
    CHECK(std::regex_match(b[1], timing));
  }
  // A zero-length segment still gets a cue that ends after it starts.
  CHECK(to_srt(std::vector<Segment>{seg(1.0, 1.0, "x")}) == "1\n00:00:01,000 --> 00:00:01,001\nx\n\n");
  CHECK(to_srt(std::vector<Segment>{}).empty());
}

TEST_CASE("WebVTT output: header, identifiers, '.' before ms, &, < and > escaped", "[video]") {
  const std::vector<Segment> segs = {seg(0, 1.25, "cats & dogs"), seg(1.25, 2, "a <i>b</i> --> c")};
  const std::string vtt = to_webvtt(segs);
  CHECK(vtt ==
        "WEBVTT\n\n"
        "1\n00:00:00.000 --> 00:00:01.250\ncats &amp; dogs\n\n"
        "2\n00:00:01.250 --> 00:00:02.000\na &lt;i&gt;b&lt;/i&gt; --&gt; c\n\n");
  // Cue text never contains "-->" or a raw '<'; the header is the first line on its own.
  const auto b = test::blocks(vtt);
  REQUIRE(b.size() == 3);
  CHECK(b[0] == std::vector<std::string>{"WEBVTT"});
  for (std::size_t i = 1; i < b.size(); ++i) {
    CHECK(b[i][2].find("-->") == std::string::npos);
    CHECK(b[i][2].find('<') == std::string::npos);
  }
  CHECK(to_webvtt(std::vector<Segment>{}) == "WEBVTT\n\n");
}

TEST_CASE("JSON lines carry start, end, caption, frame and mean log-prob per segment", "[video]") {
  auto s = seg(0.5, 1.5, "a \"quoted\" word", 12);
  s.mean_logprob = -0.25;
  s.samples = 3;
  const std::vector<Segment> segs = {s, seg(1.5, 2, "b", 15)};
  std::istringstream in(to_jsonl(segs));
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["start"] == 0.5);
  CHECK(rows[0]["end"] == 1.5);
  CHECK(rows[0]["caption"] == "a \"quoted\" word");
  CHECK(rows[0]["frame"] == 12);
  CHECK(rows[0]["mean_logprob"] == -0.25);
  CHECK(rows[0]["samples"] == 3);
  CHECK(rows[1]["frame"] == 15);
}

TEST_CASE("SegmentBuilder merges equal consecutive captions", "[video]") {
  SegmentBuilder b;
  CHECK(b.empty());
  b.add(0, "a", 0, -1.0);
  b.add(1, "a", 30, -9.0);
  b.add(2, "b", 60, -2.0);
  b.add(3, "b", 90, -9.0);
  b.add(4, "a", 120, -3.0);
  const auto segs = b.finish(4.7);
  REQUIRE(segs.size() == 3);
  CHECK(segs[0].caption == "a");
  CHECK(segs[0].start == 0);
  CHECK(segs[0].end == 2);          // ends where the next starts
  CHECK(segs[0].frame_index == 0);  // the first sample's frame and score
  CHECK(segs[0].mean_logprob == -1.0);
  CHECK(segs[0].samples == 2);
  CHECK(segs[1].start == 2);
  CHECK(segs[1].end == 4);
  CHECK(segs[1].frame_index == 60);
  CHECK(segs[2].start == 4);
  CHECK(segs[2].end == 4.7);
  CHECK(segs[2].samples == 1);
  CHECK(b.finish(3.0).back().end == 4.0);  // never before its start
  CHECK_THROWS_AS(b.add(3.5, "c", 1, 0), InputError);
}

TEST_CASE("FrameClock uses timestamps and falls back to fps, then to the assumed rate", "[video]") {
  using detail::FrameClock;
  SECTION("good timestamps win over the reported rate") {
    FrameClock c(25, 30);
    CHECK(c.next(0) == 0);
    CHECK(c.next(100) == Approx(0.1));
    CHECK(c.next(250) == Approx(0.25));  // irregular spacing kept
    CHECK(c.used_timestamps());
  }
  SECTION("FFmpeg's zero timestamps at the end of B-frame streams are extrapolated") {
    FrameClock c(10, 25);
    c.next(0);
    c.next(100);
    c.next(200);
    CHECK(c.next(0) == Approx(0.3));
    CHECK(c.next(0) == Approx(0.4));
    CHECK(c.end() == Approx(0.5));
  }
  SECTION("no timestamps and no rate: the assumed rate") {
    FrameClock c(0, 20);
    CHECK(c.next(-1) == 0);
    CHECK(c.next(std::nan("")) == Approx(0.05));
    CHECK(c.next(0) == Approx(0.1));
    CHECK_FALSE(c.used_timestamps());
  }
  SECTION("an absurd rate is ignored") {
    FrameClock c(90000, 25);
    c.next(0);
    CHECK(c.next(0) == Approx(0.04));
  }
  SECTION("clock timestamps of live sources start at zero") {
    FrameClock c(30, 25);
    CHECK(c.next(5'000'000) == 0);
    CHECK(c.next(5'000'040) == Approx(0.04));
  }
}

TEST_CASE("Sampler takes the first frame at or after each multiple of the interval", "[video]") {
  auto picks = [](double every, double fps, int frames) {
    detail::Sampler s(every);
    std::vector<int> out;
    for (int i = 0; i < frames; ++i)
      if (s.take(std::round(i / fps * 1000) / 1000)) out.push_back(i);  // millisecond timestamps
    return out;
  };
  CHECK(picks(1.0, 30, 100) == std::vector<int>{0, 30, 60, 90});
  CHECK(picks(0.5, 10, 21) == std::vector<int>{0, 5, 10, 15, 20});
  CHECK(picks(1.0, 29.97, 91) == std::vector<int>{0, 30, 60, 90});  // 1.001, 2.002, 3.003 s
  CHECK(picks(1.0, 3, 10) == std::vector<int>{0, 3, 6, 9});
  CHECK(picks(0.25, 2, 5) == std::vector<int>{0, 1, 2, 3, 4});  // coarser frames than the interval
  // A gap in the stream does not trigger a burst of catch-up samples.
  detail::Sampler s(1.0);
  CHECK(s.take(0));
  CHECK(s.take(5.3));
  CHECK_FALSE(s.take(5.9));
  CHECK(s.take(6.0));
}

TEST_CASE("frame_difference: noise and compression stay low, a small new object stands out", "[video]") {
  const RgbImage a = solid(320, 240, 120);
  CHECK(frame_difference(a, a) == 0);
  // Per-pixel noise of +-6 grey levels.
  RgbImage noisy = a;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u(-6, 6);
  for (auto& v : noisy.data) v = static_cast<std::uint8_t>(v + u(rng));
  CHECK(frame_difference(a, noisy) < 0.01);
  // A 20 x 20 dark square (0.5% of the frame).
  RgbImage square = a;
  for (int y = 100; y < 120; ++y)
    for (int x = 200; x < 220; ++x)
      for (int ch = 0; ch < 3; ++ch) square.data[(static_cast<std::size_t>(y) * 320 + x) * 3 + ch] = 40;
  CHECK(frame_difference(a, square) > 0.1);
  Options defaults;
  CHECK(frame_difference(a, noisy) < defaults.diff_threshold);
  CHECK(frame_difference(a, square) > defaults.diff_threshold);
  // Different sizes of the same content compare equal.
  CHECK(frame_difference(a, solid(64, 48, 120)) == 0);
  CHECK_THROWS_AS(frame_difference(a, RgbImage{}), InputError);
}

TEST_CASE("caption_video samples by stream time, skips still frames and merges segments", "[video]") {
  const test::TempDir tmp("video");
  const fs::path& dir = tmp.path;
  // Three 2-second scenes at 10 fps: samples at 0..5 s, two per scene.
  const auto video = write_scenes_video(dir, {{40, 40, 200}, {200, 60, 40}, {40, 200, 40}}, 2.0, 10);
  Captioner captioner = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  Options o;
  o.request.generation.max_new_tokens = 4;
  std::vector<std::pair<double, bool>> samples;
  o.on_sample = [&](const Segment& s, bool reused) { samples.emplace_back(s.start, reused); };
  std::vector<Progress> progress;
  o.on_progress = [&](const Progress& p) { progress.push_back(p); };
  const Result r = caption_video(captioner, video.string(), o);

  CHECK(r.frames_read == 60);
  CHECK(r.fps == Approx(10));
  CHECK(r.timestamps);
  CHECK(r.samples == 6);
  CHECK(r.captioned == 3);  // the second sample of each scene reuses the caption
  REQUIRE(samples.size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK(samples[i].first == Approx(i).margin(1e-3));
    CHECK(samples[i].second == (i % 2 == 1));
  }
  CHECK(r.end_time == Approx(6.0));
  REQUIRE(!r.segments.empty());
  CHECK(r.segments.front().start == 0);
  CHECK(r.segments.back().end == Approx(6.0));
  for (std::size_t i = 1; i < r.segments.size(); ++i) {
    CHECK(r.segments[i].start == r.segments[i - 1].end);
    CHECK(r.segments[i].caption != r.segments[i - 1].caption);
  }
  std::int64_t merged = 0;
  for (const auto& s : r.segments) merged += s.samples;
  CHECK(merged == 6);
  REQUIRE(progress.size() == 60);
  CHECK(progress.back().frames_total == 60);
  CHECK(progress.back().duration == Approx(6.0));
  CHECK(progress.back().frames_read == 60);

  // Threshold 0: every sample runs the model.
  o.diff_threshold = 0;
  o.on_sample = nullptr;
  o.on_progress = nullptr;
  CHECK(caption_video(captioner, video.string(), o).captioned == 6);
  // max_duration cuts the stream.
  o.max_duration = 2.5;
  const Result cut = caption_video(captioner, video.string(), o);
  CHECK(cut.samples == 3);
  CHECK(cut.end_time == Approx(2.5));
}

TEST_CASE("caption_video stops cleanly and writes an annotated copy atomically", "[video]") {
  const test::TempDir tmp("annotate");
  const fs::path& dir = tmp.path;
  const auto video = write_scenes_video(dir, {{40, 40, 200}, {200, 60, 40}}, 1.0, 10);
  Captioner captioner = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  Options o;
  o.request.generation.max_new_tokens = 3;
  o.every = 0.5;
  o.annotate = dir / "out.mp4";
  o.annotate_attention = true;
  int polls = 0;
  o.should_stop = [&] { return ++polls > 12; };  // stop after 12 frames
  const Result r = caption_video(captioner, video.string(), o);
  CHECK(r.stopped);
  CHECK(r.frames_read == 12);
  CHECK(r.samples == 3);  // 0, 0.5, 1.0 s
  CHECK(r.end_time == Approx(1.2));
  REQUIRE(fs::exists(o.annotate));
  cv::VideoCapture back(o.annotate.string());
  REQUIRE(back.isOpened());
  CHECK(back.get(cv::CAP_PROP_FRAME_WIDTH) == 96);
  int frames = 0;
  cv::Mat f, bottom_band;
  while (back.read(f)) ++frames;
  CHECK(frames == 12);
  // Only the output is left: no temporary file.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);

  // A fourcc the container refuses: FormatError, and nothing is left behind.
  Options bad = o;
  bad.should_stop = nullptr;
  bad.annotate = dir / "bad.mp4";
  bad.annotate_fourcc = "ZZZZ";
  CHECK_THROWS_AS(caption_video(captioner, video.string(), bad), FormatError);
  CHECK_FALSE(fs::exists(bad.annotate));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);
  // Missing input.
  CHECK_THROWS_WITH(caption_video(captioner, (dir / "nope.mp4").string(), o), Catch::Contains("nope.mp4"));
  // Bad options.
  Options zero = o;
  zero.every = 0;
  CHECK_THROWS_AS(caption_video(captioner, video.string(), zero), InputError);
  CHECK(is_camera_index("0"));
  CHECK_FALSE(is_camera_index("0.5"));
  CHECK_FALSE(is_camera_index(video.string()));
}

TEST_CASE("segments of the bundled model follow the scene changes of a rendered video", "[video][model]") {
  // Needs the trained default model; the tiny test checkpoints caption noise.
  const fs::path model = default_model_dir();
  if (!fs::exists(model / "model.safetensors")) {
    WARN("no trained model at " << model.string() << ": scene-change test not run");
    return;
  }
  // Three single-object scenes of the shapes world, all different, cut at 2.4 s and 5.2 s: not on
  // a sampling instant, so each change is first seen by the next sample.
  scenes::RenderOptions ro;
  ro.seed = 2024;
  ro.min_objects = ro.max_objects = 1;
  ro.jpeg_probability = 0;
  std::vector<scenes::Scene> shown;
  std::vector<cv::Mat> frames;
  for (std::int64_t i = 0; shown.size() < 3; ++i) {
    cv::Mat m;
    const scenes::Scene s = scenes::make_scene_mat(ro, i, &m);
    const auto& o = s.objects[0];
    const bool seen = std::any_of(shown.begin(), shown.end(), [&](const scenes::Scene& t) {
      return t.objects[0].shape == o.shape || t.objects[0].color == o.color;
    });
    if (seen) continue;
    cv::Mat resized;
    cv::resize(m, resized, {192, 160}, 0, 0, cv::INTER_AREA);
    shown.push_back(s);
    frames.push_back(resized);
  }
  const test::TempDir tmp("scene-change");
  const fs::path video = tmp.path / "cuts.avi";
  const double cuts[] = {0.0, 2.4, 5.2};
  {
    cv::VideoWriter w(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, {192, 160});
    REQUIRE(w.isOpened());
    for (int f = 0; f < 80; ++f) w.write(frames[f < 24 ? 0 : f < 52 ? 1 : 2]);
  }
  Captioner captioner = Captioner::load(model);
  for (double every : {1.0, 0.5}) {
    INFO("every " << every << " s");
    Options o;
    o.every = every;
    const Result r = caption_video(captioner, video.string(), o);
    REQUIRE(r.segments.size() == 3);
    CHECK(r.captioned == 3);  // still frames within a scene reuse its caption
    for (int k = 0; k < 3; ++k) {
      INFO("scene " << k << ": " << shown[k].captions[0] << " / segment: " << r.segments[k].caption);
      CHECK(r.segments[k].start >= cuts[k]);
      CHECK(r.segments[k].start <= cuts[k] + every + 1e-6);
      // Each segment names the object of the scene it covers.
      const auto parsed = scenes::parse_caption(r.segments[k].caption);
      REQUIRE(parsed.ok);
      REQUIRE(parsed.objects.size() == 1);
      CHECK(parsed.objects[0].color == shown[k].objects[0].color);
      CHECK(parsed.objects[0].shape == shown[k].objects[0].shape);
    }
    CHECK(r.segments.back().end == Approx(8.0));
  }
}

namespace {

// One raw sample per caption, `every` seconds apart, frame i * 10.
std::vector<Segment> fake_samples(const std::vector<std::string>& captions, double every) {
  std::vector<Segment> out;
  for (std::size_t i = 0; i < captions.size(); ++i) {
    Segment s;
    s.start = s.end = static_cast<double>(i) * every;
    s.caption = captions[i];
    s.frame_index = static_cast<std::int64_t>(i) * 10;
    s.mean_logprob = -0.01 * static_cast<double>(i + 1);
    out.push_back(std::move(s));
  }
  return out;
}

std::string joined(const std::vector<Segment>& segs) {
  std::string out;
  for (const auto& s : segs) out += fmt::format("{}@{:g}x{} ", s.caption, s.start, s.samples);
  return out;
}

}  // namespace

TEST_CASE("stabilize: none keeps every change, consecutive and majority remove flicker", "[video]") {
  // Three scenes A, B, C of 6 samples; B flickers to x and y while its shapes pass each other.
  const std::vector<std::string> c = {"A", "A", "A", "A", "A", "A", "B", "B", "x", "B", "y", "x",
                                      "B", "B", "C", "C", "C", "C"};
  const auto samples = fake_samples(c, 0.5);
  const double end = 9.0;
  const auto none = stabilize(samples, end, {Stabilizer::None, 1, 0});
  CHECK(none.size() == 8);  // A B x B y x B C

  const auto k2 = stabilize(samples, end, {Stabilizer::Consecutive, 2, 0});
  INFO(joined(k2));
  REQUIRE(k2.size() == 3);
  CHECK(k2[0].caption == "A");
  CHECK(k2[1].caption == "B");
  CHECK(k2[2].caption == "C");
  CHECK(k2[1].start == 3.0);  // the true boundaries, not delayed: the run's first sample
  CHECK(k2[2].start == 7.0);
  CHECK(k2[1].end == 7.0);
  CHECK(k2[2].end == end);
  CHECK(k2[1].samples == 8);
  CHECK(k2[1].frame_index == 60);  // first sample of the segment with its caption
  CHECK(k2[1].mean_logprob == Approx(-0.07));

  // Majority over 3: the isolated x goes, but "y x" (two different flickers in a row) leaves one.
  const auto m3 = stabilize(samples, end, {Stabilizer::Majority, 3, 0});
  INFO(joined(m3));
  CHECK(m3.size() > 3);
  const auto m5 = stabilize(samples, end, {Stabilizer::Majority, 5, 0});
  INFO(joined(m5));
  REQUIRE(m5.size() == 3);
  CHECK(m5[1].start == 3.0);
  CHECK(m5[2].start == 7.0);

  // min_segment alone also removes the one-sample segments (each is 0.5 s long).
  const auto ms = stabilize(samples, end, {Stabilizer::None, 1, 1.0});
  INFO(joined(ms));
  REQUIRE(ms.size() == 3);
  CHECK(ms[1].caption == "B");
  CHECK(ms[2].start == 7.0);
  std::int64_t total = 0;
  for (const auto& s : ms) total += s.samples;
  CHECK(total == static_cast<std::int64_t>(c.size()));
}

TEST_CASE("stabilize: a short real scene survives consecutive K when it lasts K samples", "[video]") {
  const auto samples = fake_samples({"A", "A", "A", "B", "B", "C", "C", "C"}, 1.0);
  const auto k2 = stabilize(samples, 8.0, {Stabilizer::Consecutive, 2, 0});
  INFO(joined(k2));
  REQUIRE(k2.size() == 3);
  CHECK(k2[1].start == 3.0);
  // K = 3 is longer than B: it is absorbed into A.
  const auto k3 = stabilize(samples, 8.0, {Stabilizer::Consecutive, 3, 0});
  INFO(joined(k3));
  REQUIRE(k3.size() == 2);
  CHECK(k3[1].caption == "C");
  CHECK(k3[1].start == 5.0);
  // Leading flicker joins the first stable caption.
  const auto lead = stabilize(fake_samples({"x", "A", "A", "B", "B"}, 1.0), 5.0, {Stabilizer::Consecutive, 2, 0});
  REQUIRE(lead.size() == 2);
  CHECK(lead[0].caption == "A");
  CHECK(lead[0].start == 0.0);
  CHECK(lead[0].frame_index == 10);
}

TEST_CASE("stabilize validates its options and sample order", "[video]") {
  const auto samples = fake_samples({"A", "B"}, 1.0);
  CHECK_THROWS_AS(stabilize(samples, 2.0, {Stabilizer::Consecutive, 0, 0}), InputError);
  CHECK_THROWS_AS(stabilize(samples, 2.0, {Stabilizer::Majority, 4, 0}), InputError);
  CHECK_THROWS_AS(stabilize(samples, 2.0, {Stabilizer::None, 1, -1}), InputError);
  auto reversed = samples;
  std::swap(reversed[0], reversed[1]);
  CHECK_THROWS_AS(stabilize(reversed, 2.0, {}), InputError);
  CHECK(stabilize({}, 0, {}).empty());
  CHECK(parse_stabilizer("majority") == Stabilizer::Majority);
  CHECK(stabilizer_name(parse_stabilizer("consecutive")) == "consecutive");
  CHECK_THROWS_AS(parse_stabilizer("vote"), InputError);
}

TEST_CASE("stabilised segments of the bundled model: one per scene of a moving-shapes video, 4:3 and 16:9",
          "[video][model]") {
  const fs::path model = default_model_dir();
  if (!fs::exists(model / "model.safetensors")) {
    WARN("no trained model at " << model.string() << ": moving-shapes test not run");
    return;
  }
  // Four scenes of 1, 2, 3 and 2 objects, 3 s each at 10 fps; all objects of a scene sway together
  // (relations and captions stay the same, every frame differs), so only the cuts change the caption.
  scenes::RenderOptions ro;
  ro.seed = 11;
  ro.jpeg_probability = 0;
  std::vector<scenes::detail::Layout> layouts;
  for (std::int64_t i = 0; layouts.size() < 4; ++i) {
    auto l = scenes::detail::make_layout(ro, i);
    const std::size_t want = std::array<std::size_t, 4>{1, 2, 3, 2}[layouts.size()];
    if (l.scene.objects.size() == want && l.background.kind != scenes::detail::BackgroundKind::Texture)
      layouts.push_back(std::move(l));
  }
  Captioner captioner = Captioner::load(model);
  for (const cv::Size size : {cv::Size(256, 192), cv::Size(320, 180)}) {
    INFO("frame " << size.width << "x" << size.height);
    const test::TempDir tmp("moving");
    const fs::path video = tmp.path / "moving.avi";
    {
      cv::VideoWriter w(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, size);
      REQUIRE(w.isOpened());
      for (const auto& l : layouts) {
        const int slack = l.scene.width / 12 * scenes::detail::kOne;
        for (int f = 0; f < 30; ++f) {
          auto shown = l;
          const int dx = (f < 15 ? f : 30 - f) * 2 * slack / 15 - slack;  // -slack .. slack .. -slack
          for (auto& g : shown.geometry) {
            g.center16.x += dx;
            for (auto& p : g.polygon16) p.x += dx;
          }
          cv::Mat frame, resized;
          frame = scenes::detail::render_layout(shown);
          cv::resize(frame, resized, size, 0, 0, cv::INTER_AREA);
          w.write(resized);
        }
      }
    }
    Options o;
    o.every = 0.5;
    o.stabilize = {Stabilizer::Consecutive, 2, 0};
    const Result r = caption_video(captioner, video.string(), o);
    std::string seen;
    for (const auto& s : r.samples_seen) seen += fmt::format("{:.1f} {}\n", s.start, s.caption);
    INFO("samples:\n" << seen);
    INFO("segments: " << joined(r.segments));
    REQUIRE(r.segments.size() == 4);
    for (std::size_t k = 0; k < 4; ++k) {
      CHECK(std::abs(r.segments[k].start - 3.0 * static_cast<double>(k)) <= o.every + 1e-6);
      const auto parsed = scenes::parse_caption(r.segments[k].caption);
      CHECK(parsed.ok);
      CHECK(parsed.objects.size() == layouts[k].scene.objects.size());
    }
  }
}
