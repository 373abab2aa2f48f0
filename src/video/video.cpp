// The video captioning loop: capture, sampling, near-duplicate skip, captioning, segments and the
// annotated copy (include/xcaption/video.hpp).
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/video.hpp>

#include "encoders/image_processor.hpp"
#include "src/io/image_header.hpp"
#include "src/video/frame_clock.hpp"
#include "src/viz/draw.hpp"
#include "src/viz/files.hpp"

namespace xcaption::video {

namespace {

constexpr int kThumbSide = 16;

// 16 x 16 cells of mean grey level (area averaging), float.
cv::Mat thumbnail(const cv::Mat& image, int gray_code) {
  cv::Mat gray, f, small;
  if (image.channels() == 1) gray = image;
  else cv::cvtColor(image, gray, gray_code);
  gray.convertTo(f, CV_32F);
  cv::resize(f, small, {kThumbSide, kThumbSide}, 0, 0, cv::INTER_AREA);
  return small;
}

double thumb_difference(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  double max = 0;
  cv::minMaxLoc(d, nullptr, &max);
  return max / 255.0;
}

// The annotated video's temporary: removed unless committed, also by a forced exit (tracked).
struct TempFile {
  std::filesystem::path path;
  std::optional<viz::detail::TrackedTemporary> tracking;
  void set(std::filesystem::path p) {
    path = std::move(p);
    tracking.emplace(path);
  }
  void forget() {
    tracking.reset();
    path.clear();
  }
  ~TempFile() {
    if (!path.empty()) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
};

}  // namespace

double frame_difference(const RgbImage& a, const RgbImage& b) {
  const cv::Mat ma = viz::detail::bgr_from_rgb(a), mb = viz::detail::bgr_from_rgb(b);
  return thumb_difference(thumbnail(ma, cv::COLOR_BGR2GRAY), thumbnail(mb, cv::COLOR_BGR2GRAY));
}

bool is_camera_index(std::string_view source) {
  if (source.empty() || source.size() > 4) return false;
  for (char c : source)
    if (c < '0' || c > '9') return false;
  std::error_code ec;
  return !std::filesystem::exists(std::filesystem::path(source), ec);
}

Result caption_video(Captioner& captioner, const std::string& source, const Options& options) {
  if (!(options.every > 0) || !std::isfinite(options.every))
    throw InputError(fmt::format("video: sampling interval must be > 0 seconds, got {}", options.every));
  if (!(options.diff_threshold >= 0) || options.diff_threshold > 1)
    throw InputError(fmt::format("video: difference threshold must lie in [0, 1], got {}", options.diff_threshold));
  if (!(options.assumed_fps > 0) || options.assumed_fps > 1000)
    throw InputError(fmt::format("video: assumed frame rate must lie in (0, 1000], got {}", options.assumed_fps));
  if (options.max_frames && *options.max_frames < 1)
    throw InputError(fmt::format("video: maximum frame count must be at least 1, got {}", *options.max_frames));
  if (options.max_pixels < 1)
    throw InputError(fmt::format("video: maximum frame size must be at least 1 pixel, got {}", options.max_pixels));
  (void)stabilize({}, 0, options.stabilize);  // validates the stabiliser options before any work
  if (options.max_duration && !(*options.max_duration > 0))
    throw InputError(fmt::format("video: maximum duration must be > 0 seconds, got {}", *options.max_duration));
  if (!options.annotate.empty() && options.annotate_fourcc.size() != 4)
    throw InputError(fmt::format("video: a fourcc has four characters, got '{}'", options.annotate_fourcc));
  if (!(options.overlay.alpha >= 0 && options.overlay.alpha <= 1))
    throw InputError(fmt::format("video: overlay alpha must lie in [0, 1], got {}", options.overlay.alpha));

  cv::VideoCapture cap;
  if (is_camera_index(source)) {
    cap.open(std::stoi(source));
  } else {
    // A plain path must exist (URLs "scheme://..." and patterns like "img_%03d.png" are left to
    // OpenCV); this also spares the user the backends' own complaints about a missing file.
    std::error_code ec;
    const bool url = source.find("://") != std::string::npos, pattern = source.find('%') != std::string::npos;
    if (!url && !pattern && !std::filesystem::exists(source, ec))
      throw FormatError(fmt::format("cannot open video '{}': no such file", source));
    if (!url && !pattern && std::filesystem::is_directory(source, ec))
      throw FormatError(fmt::format("cannot open video '{}': it is a folder, not a file", source));
    if (!url && !pattern && std::filesystem::is_regular_file(source, ec) && std::filesystem::file_size(source, ec) == 0)
      throw FormatError(fmt::format("cannot open video '{}': the file is empty", source));
    // FFmpeg first (files and network streams), then, for URLs and patterns only, whatever else
    // OpenCV has (GStreamer, ...): for a local file FFmpeg's verdict stands, and the other
    // backends would only add their own complaints on stderr.
    try {
      if (!cap.open(source, cv::CAP_FFMPEG) && (url || pattern)) cap.open(source, cv::CAP_ANY);
    } catch (const cv::Exception& e) {
      throw FormatError(fmt::format("cannot open video '{}': {}", source, e.what()));
    }
  }
  if (!cap.isOpened())
    throw FormatError(fmt::format("cannot open video '{}' (missing file, unknown format or unreachable stream)", source));

  // The frame size the container declares, before anything is decoded.
  const double declared_w = cap.get(cv::CAP_PROP_FRAME_WIDTH), declared_h = cap.get(cv::CAP_PROP_FRAME_HEIGHT);
  if (std::isfinite(declared_w) && std::isfinite(declared_h) && declared_w * declared_h > static_cast<double>(options.max_pixels))
    throw FormatError(fmt::format("video '{}': frames of {:.0f}x{:.0f} are more than the limit of {} pixels (--max-pixels)",
                                  source, declared_w, declared_h, options.max_pixels));

  Result result;
  result.fps = cap.get(cv::CAP_PROP_FPS);
  if (!std::isfinite(result.fps) || result.fps < 0) result.fps = 0;
  const double count = cap.get(cv::CAP_PROP_FRAME_COUNT);
  Progress progress;
  progress.frames_total = std::isfinite(count) && count > 0 ? static_cast<std::int64_t>(count) : -1;
  if (progress.frames_total > 0 && result.fps > 0 && result.fps <= 1000)
    progress.duration = static_cast<double>(progress.frames_total) / result.fps;

  detail::FrameClock clock(result.fps, options.assumed_fps);
  detail::Sampler sampler(options.every);
  SegmentBuilder builder;
  CaptionRequest request = options.request;
  const bool annotate = !options.annotate.empty();
  if (annotate && options.annotate_attention) request.capture_cross_attention = true;

  TempFile tmp;
  cv::VideoWriter writer;
  cv::Mat frame, last_thumb, out;
  std::string caption;                  // caption shown from the last sample on
  std::vector<float> heat;              // upsampled main-words map of `caption`, frame-sized
  bool have_caption = false;
  std::optional<double> cut_at;          // set when max_duration ends the run
  const auto t0 = std::chrono::steady_clock::now();

  for (;;) {
    if (options.should_stop && options.should_stop()) {
      result.stopped = true;
      break;
    }
    if (options.max_frames && result.frames_read >= *options.max_frames) break;  // ends where the last frame ends
    if (!cap.grab()) break;
    const double t = clock.next(cap.get(cv::CAP_PROP_POS_MSEC));
    if (options.max_duration && t >= *options.max_duration) {
      cut_at = *options.max_duration;
      break;
    }
    const bool sample = sampler.take(t);
    if (sample || annotate) {
      if (!cap.retrieve(frame) || frame.empty()) continue;  // undecodable frame: skip it
      if (exceeds_pixels(frame.cols, frame.rows, options.max_pixels))
        throw FormatError(fmt::format("video '{}': a frame of {}x{} is more than the limit of {} pixels (--max-pixels)",
                                      source, frame.cols, frame.rows, options.max_pixels));
      if (frame.type() != CV_8UC3) {
        cv::Mat converted;
        if (frame.channels() == 1) cv::cvtColor(frame, converted, cv::COLOR_GRAY2BGR);
        else if (frame.channels() == 4) cv::cvtColor(frame, converted, cv::COLOR_BGRA2BGR);
        else throw FormatError(fmt::format("video '{}': unsupported frame type {}", source, frame.type()));
        frame = converted;
      }
    }
    ++result.frames_read;

    if (sample) {
      ++result.samples;
      const cv::Mat thumb = thumbnail(frame, cv::COLOR_BGR2GRAY);
      const bool reuse = have_caption && options.diff_threshold > 0 &&
                         thumb_difference(thumb, last_thumb) < options.diff_threshold;
      Segment s;
      s.start = s.end = t;
      s.frame_index = result.frames_read - 1;
      if (reuse) {
        s.caption = caption;
        builder.add(t, caption, s.frame_index, 0.0);
        result.samples_seen.push_back(s);
      } else {
        const CaptionResult r = captioner.caption(rgb_from_bgr(frame), request);
        ++result.captioned;
        caption = r.caption;
        have_caption = true;
        last_thumb = thumb;
        s.caption = caption;
        s.mean_logprob = r.logprobs.empty() ? 0.0
                                            : std::accumulate(r.logprobs.begin(), r.logprobs.end(), 0.0) /
                                                  static_cast<double>(r.logprobs.size());
        builder.add(t, caption, s.frame_index, s.mean_logprob);
        result.samples_seen.push_back(s);
        if (annotate && options.annotate_attention) {
          const auto tokens = viz::token_attentions(captioner, r, options.map);
          heat = viz::upsample_map(viz::main_words_map(tokens), frame.cols, frame.rows, options.overlay.flat_floor);
        }
      }
      if (options.on_sample) options.on_sample(s, reuse);
    }

    if (annotate) {
      if (!writer.isOpened()) {
        tmp.set(viz::detail::temporary_sibling(options.annotate));
        const auto& f = options.annotate_fourcc;
        const double fps = result.fps > 0 && result.fps <= 1000 ? result.fps : options.assumed_fps;
        writer.open(tmp.path.string(), cv::VideoWriter::fourcc(f[0], f[1], f[2], f[3]), fps, frame.size());
        if (!writer.isOpened())
          throw FormatError(fmt::format("cannot write annotated video '{}': OpenCV's writer refused fourcc '{}' "
                                        "for this container (try mp4v with .mp4, MJPG with .avi)",
                                        options.annotate.string(), f));
      }
      frame.copyTo(out);
      if (out.size() == frame.size() && !heat.empty() &&
          heat.size() == static_cast<std::size_t>(out.rows) * out.cols)
        viz::detail::blend_heat(out, heat, options.overlay.colormap, options.overlay.alpha);
      viz::detail::draw_caption_band(out, caption, 3);
      writer.write(out);
    }

    progress.frames_read = result.frames_read;
    progress.samples = result.samples;
    progress.captioned = result.captioned;
    progress.position = t;
    progress.elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (options.on_progress) options.on_progress(progress);
  }

  result.timestamps = clock.used_timestamps();
  // The stream ends one frame after the last frame read, or where max_duration cut it.
  result.end_time = cut_at ? *cut_at : clock.end();
  // The builder's plain merging checked the sample times as they came; the stabiliser then
  // decides which caption changes are real.
  (void)builder.finish(result.end_time);
  result.segments = stabilize(result.samples_seen, result.end_time, options.stabilize);
  if (writer.isOpened()) {
    writer.release();
    viz::detail::commit_temporary(tmp.path, options.annotate);
    tmp.forget();
  }
  return result;
}

}  // namespace xcaption::video
