// xcaption video INPUT : caption a video into timed segments (SubRip, WebVTT, JSON lines, an
// annotated copy).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <opencv2/core/utils/logger.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>

#include "src/cli/cli.hpp"
#include "src/viz/files.hpp"

namespace xcaption::cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

// First Ctrl-C: stop after the current frame and keep what is done. Second: quit at once (a
// frame can take long, or a stream can stall in a read), removing the temporaries of unfinished
// outputs. Only async-signal-safe calls here.
extern "C" void on_sigint(int sig) {
  if (g_interrupted == 0 && sig == SIGINT) {
    g_interrupted = 1;
    static const char msg[] = "\nxcaption: stopping after this frame (Ctrl-C again to quit now)\n";
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    return;
  }
  viz::detail::unlink_tracked_temporaries();
  static const char msg[] = "\nxcaption: quit; unfinished outputs removed\n";
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  ::_exit(sig == SIGINT ? 130 : 128 + sig);
}

// Installs on_sigint for SIGINT and SIGTERM (SIGTERM quits at once) until destroyed, so that the
// outputs written after the frame loop are covered too.
class SignalGuard {
 public:
  SignalGuard() {
    g_interrupted = 0;
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous_int_);
    ::sigaction(SIGTERM, &action, &previous_term_);
  }
  ~SignalGuard() {
    ::sigaction(SIGINT, &previous_int_, nullptr);
    ::sigaction(SIGTERM, &previous_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction previous_int_ {}, previous_term_{};
};

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(seconds < 0 ? 0 : seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

// One status line, redrawn in place at most 5 times a second.
class ProgressLine {
 public:
  void update(const video::Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (shown_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    shown_ = true;
    std::string line;
    if (p.frames_total > 0) {
      const double done = static_cast<double>(p.frames_read) / static_cast<double>(p.frames_total);
      const std::string eta = done > 0 && p.frames_read < p.frames_total ? clock_text(p.elapsed / done - p.elapsed) : "0:00";
      line = fmt::format("frames {}/{} ({:.0f}%)  captions {}/{}  elapsed {}  ETA {}", p.frames_read,
                         p.frames_total, 100 * done, p.captioned, p.samples, clock_text(p.elapsed), eta);
    } else {
      line = fmt::format("frames {}  at {}  captions {}/{}  elapsed {}", p.frames_read, clock_text(p.position),
                         p.captioned, p.samples, clock_text(p.elapsed));
    }
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
  }
  void end() {
    if (shown_) std::fprintf(stderr, "\n");
  }

 private:
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace

int cmd_video(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("every", po::value<double>()->default_value(1.0, "1")->value_name("SECONDS"),
       "sampling interval in stream time")
      ("srt", po::value<std::string>()->value_name("FILE"), "write SubRip subtitles")
      ("vtt", po::value<std::string>()->value_name("FILE"), "write WebVTT subtitles")
      ("jsonl", po::value<std::string>()->value_name("FILE"),
       "write one JSON object per segment: start, end, caption, frame, mean_logprob, samples")
      ("annotate", po::value<std::string>()->value_name("OUT.mp4"), "write a copy with the captions burned in")
      ("overlay", po::value<std::string>()->default_value("none")->value_name("none|attention"),
       "with --annotate: blend the attention of the caption's main words into the frames")
      ("fourcc", po::value<std::string>()->default_value("mp4v")->value_name("CODE"),
       "codec of --annotate (mp4v: MPEG-4 part 2 in .mp4; avc1: H.264 where FFmpeg has an encoder; "
       "MJPG in .avi)")
      ("diff-threshold", po::value<double>()->default_value(0.02, "0.02")->value_name("X"),
       "reuse the last caption when a sampled frame differs from the last captioned one by less than X "
       "(largest change of the mean grey level of a cell in a 16x16 grid, 0..1; 0 = caption every sample)")
      ("stabilizer", po::value<std::string>()->default_value("consecutive")->value_name("none|consecutive|majority"),
       "how a caption change becomes a new segment: none (every change), consecutive (only once the new "
       "caption is seen on --window consecutive samples), majority (each sample takes the most frequent "
       "caption of the --window samples around it)")
      ("window", po::value<int>()->default_value(2)->value_name("N"),
       "stabilizer window in samples (consecutive: N >= 1; majority: odd N)")
      ("min-segment", po::value<double>()->default_value(0.0, "0")->value_name("SECONDS"),
       "merge segments shorter than this into their longer neighbour (0 keeps all)")
      ("assume-fps", po::value<double>()->default_value(25.0, "25")->value_name("FPS"),
       "frame rate used when the source reports neither timestamps nor a frame rate")
      ("duration", po::value<double>()->value_name("SECONDS"), "stop after this much stream time")
      ("max-frames", po::value<std::int64_t>()->value_name("N"), "stop after reading N frames")
      ("max-pixels", po::value<std::int64_t>()->default_value(ImageLimits{}.max_pixels)->value_name("N"),
       "refuse a video whose frames have more than N pixels (width x height), as declared by the "
       "container before any frame is decoded and as decoded")
      ("layer", po::value<std::string>()->default_value("last")->value_name("N|mean|last"), "overlay: decoder layer")
      ("head", po::value<std::string>()->default_value("mean")->value_name("N|mean|last"), "overlay: head")
      ("rollout", "overlay: combine layers by attention rollout (see xcaption attend --help)")
      ("colormap", po::value<std::string>()->default_value("inferno")->value_name("NAME"),
       "overlay: inferno, viridis, turbo or jet")
      ("alpha", po::value<double>()->default_value(0.45, "0.45")->value_name("X"), "overlay: heat weight 0..1")
      ("input", po::value<std::string>(), "video file, stream URL, or camera index");
  add_model_options(options);
  add_generation_options(options);
  po::positional_options_description positional;
  positional.add("input", 1);
  try {
    const auto vm = parse("video", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help(
          "xcaption video INPUT [OPTIONS]",
          "Captions a video: reads INPUT with OpenCV (files and streams its FFmpeg backend reads; an\n"
          "integer is a camera index), takes the first frame and then one frame per --every seconds of\n"
          "stream time, captions it, and merges consecutive equal captions into segments; a changed\n"
          "caption starts a new segment only when it is stable (--stabilizer, --window, --min-segment).\n"
          "A sampled frame nearly identical to the last captioned one reuses its caption\n"
          "(--diff-threshold).\n"
          "Without --srt/--vtt/--jsonl/--annotate the SubRip text goes to stdout.",
          options,
          "Timing: frames are timed by the stream's timestamps; a frame without a usable one is placed\n"
          "one frame after the previous (1 / reported fps, else --assume-fps). Segments end where the\n"
          "next begins; the last one at the end of what was read.\n\n"
          "Output files are written atomically when the run ends. Ctrl-C stops after the current frame,\n"
          "writes the segments so far (and closes the annotated video), and exits with 130; a second\n"
          "Ctrl-C, or SIGTERM, quits at once without writing anything (exit 130, 143). Progress\n"
          "(frames done/total, elapsed, ETA) is shown on stderr when it is a terminal.\n");
      return kOk;
    }
    if (!vm.count("input")) throw UsageError("video: no input given (see xcaption video --help)");
    const std::string input = vm["input"].as<std::string>();

    video::Options o;
    o.every = vm["every"].as<double>();
    if (!(o.every > 0)) throw UsageError("--every must be > 0 seconds");
    o.diff_threshold = vm["diff-threshold"].as<double>();
    if (!(o.diff_threshold >= 0 && o.diff_threshold <= 1)) throw UsageError("--diff-threshold must lie in [0, 1]");
    o.assumed_fps = vm["assume-fps"].as<double>();
    if (!(o.assumed_fps > 0 && o.assumed_fps <= 1000)) throw UsageError("--assume-fps must lie in (0, 1000]");
    if (vm.count("duration")) {
      o.max_duration = vm["duration"].as<double>();
      if (!(*o.max_duration > 0)) throw UsageError("--duration must be > 0 seconds");
    }
    try {
      o.stabilize.kind = video::parse_stabilizer(vm["stabilizer"].as<std::string>());
    } catch (const InputError& e) {
      throw UsageError(fmt::format("--stabilizer: {}", e.what()));
    }
    o.stabilize.window = vm["window"].as<int>();
    if (o.stabilize.window < 1) throw UsageError("--window must be >= 1 sample");
    if (o.stabilize.kind == video::Stabilizer::Majority && o.stabilize.window % 2 == 0)
      throw UsageError(fmt::format("--window {}: a majority window must be odd", o.stabilize.window));
    o.stabilize.min_segment = vm["min-segment"].as<double>();
    if (!(o.stabilize.min_segment >= 0) || !std::isfinite(o.stabilize.min_segment))
      throw UsageError("--min-segment must be >= 0 seconds");
    if (vm.count("max-frames")) {
      o.max_frames = vm["max-frames"].as<std::int64_t>();
      if (*o.max_frames < 1) throw UsageError("--max-frames must be at least 1");
    }
    o.max_pixels = vm["max-pixels"].as<std::int64_t>();
    if (o.max_pixels < 1) throw UsageError("--max-pixels must be at least 1");
    const std::string overlay = vm["overlay"].as<std::string>();
    if (overlay != "none" && overlay != "attention")
      throw UsageError(fmt::format("--overlay takes none or attention, got '{}'", overlay));
    if (vm.count("annotate")) o.annotate = vm["annotate"].as<std::string>();
    else if (overlay != "none") throw UsageError("--overlay needs --annotate OUT.mp4");
    o.annotate_attention = overlay == "attention";
    o.annotate_fourcc = vm["fourcc"].as<std::string>();
    if (o.annotate_fourcc.size() != 4) throw UsageError("--fourcc takes four characters, e.g. mp4v");
    o.overlay.colormap = viz::parse_colormap(vm["colormap"].as<std::string>());
    o.overlay.alpha = static_cast<float>(vm["alpha"].as<double>());
    if (!(o.overlay.alpha >= 0 && o.overlay.alpha <= 1)) throw UsageError("--alpha must lie in [0, 1]");
    o.map.rollout = vm.count("rollout") > 0;
    {
      const bool capture = o.request.capture_cross_attention;
      o.request = caption_request(vm);
      o.request.capture_cross_attention = capture;
    }

    // OpenCV's backends log their own warnings (unsupported tags, GStreamer probing); errors
    // reach the user through our exceptions instead.
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
    Captioner captioner = load_captioner(vm);
    const ModelInfo info = captioner.info();
    o.map.layer = parse_map_index(vm, "layer", info.decoder_layers);
    o.map.head = parse_map_index(vm, "head", info.decoder_heads);
    if (o.map.rollout) o.map.layer.reset();
    if (o.map.rollout && !vm["layer"].defaulted() && vm["layer"].as<std::string>() != "mean") throw UsageError("video: --rollout combines all layers; drop --layer");

    ProgressLine line;
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    if (tty) o.on_progress = [&](const video::Progress& p) { line.update(p); };
    const SignalGuard signals;
    o.should_stop = [] { return g_interrupted != 0; };

    video::Result result;
    try {
      result = video::caption_video(captioner, input, o);
    } catch (...) {
      if (tty) line.end();
      throw;
    }
    if (tty) line.end();

    const auto& segs = result.segments;
    bool any = false;
    if (vm.count("srt")) viz::write_file_atomic(vm["srt"].as<std::string>(), video::to_srt(segs)), any = true;
    if (vm.count("vtt")) viz::write_file_atomic(vm["vtt"].as<std::string>(), video::to_webvtt(segs)), any = true;
    if (vm.count("jsonl")) viz::write_file_atomic(vm["jsonl"].as<std::string>(), video::to_jsonl(segs)), any = true;
    if (!any && o.annotate.empty()) std::cout << video::to_srt(segs) << std::flush;
    std::fprintf(stderr, "xcaption: %lld frames, %lld samples, %lld captioned, %zu segments%s\n",
                 static_cast<long long>(result.frames_read), static_cast<long long>(result.samples),
                 static_cast<long long>(result.captioned), segs.size(),
                 result.stopped ? " (interrupted: kept the segments so far)" : "");
    return result.stopped ? kInterrupted : kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
