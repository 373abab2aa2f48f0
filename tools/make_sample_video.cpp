// Renders samples/data/shapes.mp4: a few seconds of shapes-world scenes in which shapes appear,
// move and change, for the video samples and the README. Deterministic for one OpenCV build.
//
//   make_sample_video OUT.mp4 [--still OUT.png] [--seed N] [--fps N] [--width W --height H]
//   make_sample_video OUT.mp4 --scenes N [--scene-seconds S] [--truth TRUTH.jsonl] [--seed N] [--fps N]
//                     [--width W --height H]
//
// --scenes writes a test video for the subtitle stabiliser instead: N scenes of S seconds each
// (default 3). Every scene is a layout of the renderer whose objects drift together (a slow
// horizontal sway that keeps every relation, so the caption stays the same), and in every third
// scene with two objects the second one appears halfway through (a caption change inside the
// scene). --truth writes the true timeline, one JSON object per line: {"start", "end", "caption"}
// (the renderer's canonical caption), which tools/video_segments.py compares with `xcaption video`.
//
// --still also writes the two-shape scene as a PNG at its own canvas size (samples/data/shapes.png).
//
// Timeline (seconds): 0-2 one shape; 2-4 a second shape appears; 4-6 the first shape slides to
// the other side of the second; 6-8 a different scene with three shapes. Each phase is a scene of
// the project's renderer (src/scenes), drawn at its own canvas size and resized to the frame size.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <xcaption/scenes.hpp>

#include "src/scenes/render.hpp"

using namespace xcaption::scenes;

namespace {

// First scene index (from `start`) whose layout satisfies `want`.
detail::Layout find_layout(const RenderOptions& options, std::int64_t start, bool (*want)(const detail::Layout&)) {
  for (std::int64_t i = start; i < start + 100000; ++i) {
    detail::Layout l = detail::make_layout(options, i);
    if (want(l)) return l;
  }
  std::fprintf(stderr, "make_sample_video: no suitable scene found\n");
  std::exit(1);
}

// Two objects side by side ("left/right of"), far enough apart vertically never to overlap, such
// that mirroring the first across the canvas centre puts it clearly on the other side of the second.
double mirrored_x(const detail::Layout& l) { return l.scene.width - l.scene.objects[0].center[0]; }

bool side_by_side(const detail::Layout& l) {
  const auto& o = l.scene.objects;
  if (o.size() != 2 || l.background.kind == detail::BackgroundKind::Texture || l.scene.width < 200) return false;
  const auto h0 = o[0].bbox[3] - o[0].bbox[1], h1 = o[1].bbox[3] - o[1].bbox[1];
  const double dy = std::abs(o[0].center[1] - o[1].center[1]);
  const double before = o[1].center[0] - o[0].center[0], after = o[1].center[0] - mirrored_x(l);
  return relation_between(o[0], o[1]).find("of") != std::string::npos && dy > 0.5 * (h0 + h1) + 4 &&
         std::abs(before) > 1.3 * dy + 10 && std::abs(after) > 1.3 * dy + 10 && before * after < 0;
}

bool three(const detail::Layout& l) { return l.scene.objects.size() == 3 && l.scene.width >= 200; }

void translate(detail::ObjectGeometry& g, int dx16) {
  g.center16.x += dx16;
  for (auto& p : g.polygon16) p.x += dx16;
}

// Largest shift (1/16 px, both ways) that keeps every object of `l` inside its canvas border.
int sway_amplitude16(const detail::Layout& l) {
  const int border = std::max(2, std::min(l.scene.width, l.scene.height) * 2 / 100);
  int slack = l.scene.width;
  for (const auto& o : l.scene.objects) slack = std::min({slack, o.bbox[0] - border, l.scene.width - border - o.bbox[2]});
  return std::clamp(slack, 0, l.scene.width / 10) * detail::kOne;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

// The true timeline: the canonical caption from each frame on, merged while it stays the same.
struct Truth {
  struct Piece {
    double start, end;
    std::string caption;
  };
  std::vector<Piece> pieces;
  void mark(double t, const std::string& caption) {
    if (!pieces.empty() && pieces.back().caption == caption) return;
    if (!pieces.empty()) pieces.back().end = t;
    pieces.push_back({t, t, caption});
  }
  bool write(const std::string& path, double end) {
    if (pieces.empty()) return true;
    pieces.back().end = end;
    if (path.empty()) return true;
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "make_sample_video: cannot write %s\n", path.c_str());
      return false;
    }
    for (const auto& p : pieces)
      std::fprintf(f, "{\"start\": %.3f, \"end\": %.3f, \"caption\": %s}\n", p.start, p.end, json_string(p.caption).c_str());
    std::fclose(f);
    return true;
  }
};

int write_test_video(const std::string& out, const std::string& truth_path, std::uint64_t seed, int fps, int width,
                     int height, int scene_count, double scene_seconds) {
  RenderOptions options;
  options.seed = seed;
  options.jpeg_probability = 0.0;
  cv::VideoWriter writer(out, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, {width, height});
  if (!writer.isOpened()) {
    std::fprintf(stderr, "make_sample_video: cannot write %s\n", out.c_str());
    return 1;
  }
  Truth truth;
  const int frames_per_scene = std::max(2, static_cast<int>(scene_seconds * fps + 0.5));
  std::int64_t next_index = 0;
  std::int64_t frame_no = 0;
  for (int j = 0; j < scene_count; ++j) {
    // Object counts cycle 1, 2, 3, 2 so that neighbouring scenes always differ.
    const int want = std::array<int, 4>{1, 2, 3, 2}[static_cast<std::size_t>(j % 4)];
    detail::Layout l;
    for (;; ++next_index) {
      l = detail::make_layout(options, next_index);
      if (static_cast<int>(l.scene.objects.size()) == want && l.background.kind != detail::BackgroundKind::Texture &&
          (truth.pieces.empty() || l.scene.captions[0] != truth.pieces.back().caption))
        break;
    }
    ++next_index;
    const bool appear = want == 2 && j % 4 == 1;
    const int amp16 = sway_amplitude16(l);
    for (int f = 0; f < frames_per_scene; ++f, ++frame_no) {
      const double t = static_cast<double>(frame_no) / fps;
      detail::Layout shown = l;
      const bool one = appear && f < frames_per_scene / 2;
      if (one) {
        shown.geometry.resize(1);
        shown.scene.objects.resize(1);
      }
      // Integer sway: a triangle wave of amplitude amp16 over the scene.
      const int phase = 4 * f * 1000 / frames_per_scene;  // 0..3999
      const int tri = phase < 1000 ? phase : phase < 3000 ? 2000 - phase : phase - 4000;  // -1000..1000
      const int dx16 = static_cast<int>(static_cast<long long>(amp16) * tri / 1000);
      for (auto& g : shown.geometry) translate(g, dx16);
      truth.mark(t, one ? captions_for(shown.scene.objects)[0] : l.scene.captions[0]);
      cv::Mat resized;
      cv::resize(detail::render_layout(shown), resized, {width, height}, 0, 0, cv::INTER_AREA);
      writer.write(resized);
    }
  }
  writer.release();
  if (!truth.write(truth_path, static_cast<double>(frame_no) / fps)) return 1;
  std::printf("%s: %lld frames at %d fps, %dx%d, %zu true segments\n", out.c_str(), static_cast<long long>(frame_no), fps,
              width, height, truth.pieces.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_sample_video OUT.mp4 [--still OUT.png] [--seed N] [--fps N] [--width W --height H]\n");
    return 2;
  }
  const std::string out = argv[1];
  std::string still, truth;
  int scene_count = 0;
  double scene_seconds = 3.0;
  std::uint64_t seed = 11;
  int fps = 10, width = 256, height = 192;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--still") still = argv[i + 1];
    else if (k == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (k == "--fps") fps = std::atoi(argv[i + 1]);
    else if (k == "--width") width = std::atoi(argv[i + 1]);
    else if (k == "--height") height = std::atoi(argv[i + 1]);
    else if (k == "--scenes") scene_count = std::atoi(argv[i + 1]);
    else if (k == "--scene-seconds") scene_seconds = std::atof(argv[i + 1]);
    else if (k == "--truth") truth = argv[i + 1];
    else {
      std::fprintf(stderr, "make_sample_video: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (fps < 1 || width < 16 || height < 16 || scene_count < 0 || !(scene_seconds > 0)) {
    std::fprintf(stderr, "make_sample_video: --fps >= 1, --width/--height >= 16, --scenes >= 0, --scene-seconds > 0\n");
    return 2;
  }
  if (scene_count > 0) return write_test_video(out, truth, seed, fps, width, height, scene_count, scene_seconds);
  RenderOptions options;
  options.seed = seed;
  options.jpeg_probability = 0.0;
  const detail::Layout pair = find_layout(options, 0, side_by_side);
  const detail::Layout trio = find_layout(options, 0, three);

  if (!still.empty() && !cv::imwrite(still, detail::render_layout(pair))) {
    std::fprintf(stderr, "make_sample_video: cannot write %s\n", still.c_str());
    return 1;
  }
  cv::VideoWriter writer(out, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, {width, height});
  if (!writer.isOpened()) {
    std::fprintf(stderr, "make_sample_video: cannot write %s\n", out.c_str());
    return 1;
  }
  Truth timeline;
  int frame_no = 0;
  auto emit = [&](const detail::Layout& l) {
    timeline.mark(static_cast<double>(frame_no++) / fps, captions_for(l.scene.objects)[0]);
    cv::Mat frame, resized;
    frame = detail::render_layout(l);
    cv::resize(frame, resized, {width, height}, 0, 0, cv::INTER_AREA);
    writer.write(resized);
  };

  // Object 0 slides to its mirror image across the canvas centre, past object 1.
  const auto& o = pair.scene.objects;
  const int shift16 = static_cast<int>((mirrored_x(pair) - o[0].center[0]) * detail::kOne);
  const int phase = 2 * fps;
  for (int f = 0; f < phase; ++f) {  // one shape
    detail::Layout l = pair;
    l.geometry.resize(1);
    l.scene.objects.resize(1);
    emit(l);
  }
  for (int f = 0; f < phase; ++f) emit(pair);  // the second appears
  for (int f = 0; f < phase; ++f) {             // the first slides across
    detail::Layout l = pair;
    const int dx16 = static_cast<int>(static_cast<long long>(shift16) * (f + 1) / phase);
    translate(l.geometry[0], dx16);
    l.scene.objects[0].center[0] += static_cast<double>(dx16) / detail::kOne;
    emit(l);
  }
  for (int f = 0; f < phase; ++f) emit(trio);  // cut to three shapes
  writer.release();
  if (!timeline.write(truth, static_cast<double>(frame_no) / fps)) return 1;
  std::printf("%s: %d frames at %d fps, %dx%d\n  0-2 s: %s %s %s\n  2-4 s: %s\n  4-6 s: the %s %s moves to the "
              "other side\n  6-8 s: %s\n",
              out.c_str(), 4 * phase, fps, width, height, o[0].size.c_str(), o[0].color.c_str(), o[0].shape.c_str(),
              pair.scene.captions[0].c_str(), o[0].color.c_str(), o[0].shape.c_str(), trio.scene.captions[0].c_str());
  return 0;
}
