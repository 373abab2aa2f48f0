// Caption a video into SubRip subtitles: one caption per second of video, equal captions merged.
//   sample_video_subtitles MODEL_DIR VIDEO OUT.srt
#include <cstdio>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>
#include <xcaption/viz.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sample_video_subtitles MODEL_DIR VIDEO OUT.srt\n");
    return 2;
  }
  try {
    xcaption::Captioner captioner = xcaption::Captioner::load(argv[1]);
    // Sample one frame per second of stream time; still frames reuse the previous caption.
    xcaption::video::Options options;
    options.every = 1.0;
    // Report each sample as it is taken.
    options.on_sample = [](const xcaption::video::Segment& s, bool reused) {
      std::fprintf(stderr, "%7.3f s frame %lld%s: %s\n", s.start, static_cast<long long>(s.frame_index),
                   reused ? " (unchanged)" : "", s.caption.c_str());
    };
    // Read the whole video; consecutive equal captions become one segment.
    const xcaption::video::Result result = xcaption::video::caption_video(captioner, argv[2], options);
    // Format the segments as SubRip, save them atomically and show them.
    const std::string srt = xcaption::video::to_srt(result.segments);
    xcaption::viz::write_file_atomic(argv[3], srt);
    std::printf("%s", srt.c_str());
    return 0;
  } catch (const xcaption::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
