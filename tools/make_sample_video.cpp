// Renders samples/data/shapes.mp4: a few seconds of shapes-world scenes in which shapes appear,
// move and change, for the video samples and the README. Deterministic for one OpenCV build.
//
//   make_sample_video OUT.mp4 [--still OUT.png] [--seed N] [--fps N] [--width W --height H]
//
// --still also writes the two-shape scene as a PNG at its own canvas size (samples/data/shapes.png).
//
// Timeline (seconds): 0-2 one shape; 2-4 a second shape appears; 4-6 the first shape slides to
// the other side of the second; 6-8 a different scene with three shapes. Each phase is a scene of
// the project's renderer (src/scenes), drawn at its own canvas size and resized to the frame size.
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_sample_video OUT.mp4 [--still OUT.png] [--seed N] [--fps N] [--width W --height H]\n");
    return 2;
  }
  const std::string out = argv[1];
  std::string still;
  std::uint64_t seed = 11;
  int fps = 10, width = 256, height = 192;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--still") still = argv[i + 1];
    else if (k == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (k == "--fps") fps = std::atoi(argv[i + 1]);
    else if (k == "--width") width = std::atoi(argv[i + 1]);
    else if (k == "--height") height = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "make_sample_video: unknown option %s\n", k.c_str());
      return 2;
    }
  }
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
  auto emit = [&](const detail::Layout& l) {
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
    emit(l);
  }
  for (int f = 0; f < phase; ++f) emit(pair);  // the second appears
  for (int f = 0; f < phase; ++f) {             // the first slides across
    detail::Layout l = pair;
    translate(l.geometry[0], static_cast<int>(static_cast<long long>(shift16) * (f + 1) / phase));
    emit(l);
  }
  for (int f = 0; f < phase; ++f) emit(trio);  // cut to three shapes
  writer.release();
  std::printf("%s: %d frames at %d fps, %dx%d\n  0-2 s: %s %s %s\n  2-4 s: %s\n  4-6 s: the %s %s moves to the "
              "other side\n  6-8 s: %s\n",
              out.c_str(), 4 * phase, fps, width, height, o[0].size.c_str(), o[0].color.c_str(), o[0].shape.c_str(),
              pair.scene.captions[0].c_str(), o[0].color.c_str(), o[0].shape.c_str(), trio.scene.captions[0].c_str());
  return 0;
}
