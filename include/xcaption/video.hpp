// Captioning video: sample frames by stream time, caption them, merge equal consecutive captions
// into timed segments, and write SubRip, WebVTT, JSON lines or an annotated copy of the video.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>
#include <xcaption/viz.hpp>

namespace xcaption::video {

/// A stretch of video with one caption. Times are seconds of stream time.
struct Segment {
  double start = 0;            // time of the first sample with this caption
  double end = 0;              // start of the next segment; for the last one, end of what was read
  std::string caption;
  std::int64_t frame_index = 0;  // 0-based index of the frame whose caption this is
  double mean_logprob = 0;     // mean log-probability of that caption's tokens (end of text included)
  std::int64_t samples = 1;    // sampled frames merged into the segment
};

// ---- Segments ----------------------------------------------------------------------------------

/// Merges consecutive samples with equal captions. Samples must come in increasing time.
class SegmentBuilder {
 public:
  /// Adds a sample. Equal caption (byte for byte) to the open segment: the segment grows; else the
  /// open segment ends at `time` and a new one starts with this sample's frame and log-prob.
  /// Throws InputError when `time` is earlier than the previous sample's time.
  void add(double time, std::string_view caption, std::int64_t frame_index, double mean_logprob);
  /// The segments so far with the open one ending at `end_time` (never before its start).
  std::vector<Segment> finish(double end_time) const;
  bool empty() const { return segments_.empty(); }

 private:
  std::vector<Segment> segments_;  // the last one is open
  double last_time_ = 0;
};

// ---- Stable segments ---------------------------------------------------------------------------

/// How consecutive samples are turned into segments. A captioner looking at a moving scene may
/// give neighbouring frames different captions (a relation flips while two shapes pass each other,
/// a size word comes and goes); without stabilising, each flicker becomes its own subtitle.
enum class Stabilizer {
  None,         // every change of caption starts a segment (SegmentBuilder's merging)
  Consecutive,  // a new caption starts a segment only once it is seen on `window` consecutive
                // samples; the segment starts at the first of them, shorter runs stay in the
                // segment that is open
  Majority,     // each sample's caption is replaced by the most frequent caption of the `window`
                // samples centred on it (ties: the sample's own caption if it is among the tied,
                // else the previous sample's result, else the one seen first), then equal
                // neighbours merge
};

struct StabilizeOptions {
  Stabilizer kind = Stabilizer::Consecutive;
  /// Consecutive: K >= 1 (1 is the same as None). Majority: an odd window >= 1.
  int window = 2;
  /// After stabilising, a segment shorter than this (seconds, >= 0) is merged into its longer
  /// neighbour (two neighbours left with the same caption merge too); 0 keeps every segment. The
  /// last segment is measured up to `end_time`.
  double min_segment = 0;
};

/// "none", "consecutive" or "majority"; throws InputError naming the valid values otherwise.
Stabilizer parse_stabilizer(std::string_view name);
std::string_view stabilizer_name(Stabilizer kind);

/// Segments from raw samples (one Segment per sample with start = its time, samples = 1, in
/// increasing time) stabilised as `options` says; every segment ends where the next starts, the
/// last at max(end_time, its start). A segment keeps the frame index and mean log-prob of its
/// first sample that carries its caption; `samples` counts every sample it covers.
/// Throws InputError for invalid options or samples out of time order.
std::vector<Segment> stabilize(std::span<const Segment> samples, double end_time, const StabilizeOptions& options);

// ---- Subtitle formats --------------------------------------------------------------------------

/// "HH:MM:SS,mmm" (SubRip) or "HH:MM:SS.mmm" (WebVTT) with `separator` ',' or '.'. Seconds are
/// rounded to the nearest millisecond (halves up); negative times are clamped to 0; hours have at
/// least two digits and grow beyond 99.
std::string format_timestamp(double seconds, char separator);

/// SubRip: cues numbered from 1, "start --> end", the caption on one line (line breaks and tabs
/// in a caption become spaces), a blank line after every cue. Segments whose caption is empty
/// after that are left out (the numbering stays consecutive). An end that would round to the
/// start is moved 1 ms later. SubRip defines no escaping, so the text is otherwise kept as is.
std::string to_srt(std::span<const Segment> segments);

/// WebVTT: "WEBVTT", a blank line, then cues as to_srt writes them with '.' before the
/// milliseconds, the cue number as its identifier, and the text escaped as the WebVTT cue text
/// syntax requires: '&' -> "&amp;", '<' -> "&lt;", '>' -> "&gt;" (so "-->" cannot occur).
std::string to_webvtt(std::span<const Segment> segments);

/// One JSON object per segment and line:
/// {"start": S, "end": S, "caption": TEXT, "frame": N, "mean_logprob": X, "samples": N}.
std::string to_jsonl(std::span<const Segment> segments);

// ---- Near-duplicate frames ---------------------------------------------------------------------

/// The difference test used to skip captioning a frame nearly identical to the last captioned
/// one: both frames are reduced to a 16 x 16 grid of cells holding their mean grey level (BT.601
/// luma, area averaging), and the difference is the largest absolute change of a cell divided by
/// 255, in [0, 1]. Using the largest cell change rather than the mean over the frame keeps a small
/// object that appears or moves from being diluted by the unchanged rest; averaging over a cell
/// keeps pixel noise and compression artefacts far below it. Sizes may differ.
/// Throws InputError for an empty image.
double frame_difference(const RgbImage& a, const RgbImage& b);

// ---- Captioning a video ------------------------------------------------------------------------

struct Progress {
  std::int64_t frames_read = 0;
  std::int64_t frames_total = -1;  // the container's frame count, -1 when unknown
  std::int64_t samples = 0;        // frames sampled so far
  std::int64_t captioned = 0;      // samples that ran the model (the others reused a caption)
  double position = 0;             // stream time of the last frame read, seconds
  double duration = -1;            // frames_total / fps when both are known, else -1
  double elapsed = 0;              // wall-clock seconds since the start
};

struct Options {
  /// Sampling interval in stream seconds: the first frame is sampled, then the first frame at or
  /// after each multiple of `every` (> 0).
  double every = 1.0;
  /// frame_difference below which a sample reuses the last caption instead of running the model.
  /// 0 disables the skip. The default 0.02 (no 1/256th of the frame changed its mean by 5 grey
  /// levels) skips frames that are visually still; compression noise of a still shot stays
  /// below 0.01, and a small shape appearing changes some cell by 0.05 or more.
  double diff_threshold = 0.02;
  /// Rate used to time frames when the source reports neither timestamps nor a frame rate.
  double assumed_fps = 25.0;
  /// Stop after this much stream time (seconds); unset = read to the end (or until stopped).
  std::optional<double> max_duration;
  /// How captions of neighbouring samples become segments (Result::segments); the raw per-sample
  /// captions are in Result::samples_seen. The default (3 consecutive samples) was chosen by
  /// measurement on rendered videos, see docs/attention-and-video.md.
  StabilizeOptions stabilize;
  /// Stop after reading this many frames; unset = no limit.
  std::optional<std::int64_t> max_frames;
  /// Frames larger than this (width * height) are refused (FormatError): checked on the size the
  /// container declares before the first frame is decoded, and on every decoded frame.
  std::int64_t max_pixels = ImageLimits{}.max_pixels;
  /// Generation settings; capture_cross_attention is set automatically when needed.
  CaptionRequest request;

  /// When set, a copy of the video is written there (atomically, when the run ends) with the
  /// current caption (that of the last sampled frame) burned in at the bottom of every frame, on up
  /// to three lines.
  std::filesystem::path annotate;
  std::string annotate_fourcc = "mp4v";  // four characters, as cv::VideoWriter::fourcc takes them
  /// Blend the attention map of the current caption's main words (viz::main_words_map) into the
  /// annotated frames.
  bool annotate_attention = false;
  viz::MapOptions map;
  viz::OverlayOptions overlay{viz::Colormap::Inferno, 0.45f, 4.0f};

  /// Called after every frame read (on the calling thread). May be empty.
  std::function<void(const Progress&)> on_progress;
  /// Polled before every frame; returning true ends the run cleanly after the current frame
  /// (segments so far are returned, the annotated video is closed and kept). May be empty.
  std::function<bool()> should_stop;
  /// Called for every sample (captioned or reused), in order. May be empty.
  std::function<void(const Segment& sample, bool reused)> on_sample;
};

struct Result {
  std::vector<Segment> segments;
  std::int64_t frames_read = 0;
  std::int64_t samples = 0;
  std::int64_t captioned = 0;
  double fps = 0;               // as reported by the source (0 when unknown)
  bool timestamps = false;      // the source reported usable timestamps
  bool stopped = false;         // should_stop ended the run
  double end_time = 0;          // stream time where reading ended
  std::vector<Segment> samples_seen;  // every sample with its own caption, in time order
};

/// True when `source` names a camera (a non-negative integer that is not an existing file).
bool is_camera_index(std::string_view source);

/// Reads `source` (a file or URL OpenCV's FFmpeg backend opens, or a camera index) and captions
/// it. Frame times come from the stream's timestamps (CAP_PROP_POS_MSEC, relative to the first
/// frame when the first timestamp is above 1 s, as live sources count from their clock); a frame
/// without a usable timestamp (missing, or not after the previous one) is placed 1 / fps after
/// the previous frame, with the reported fps, else `assumed_fps`.
/// Throws FormatError when the source cannot be opened or the annotated video cannot be written,
/// InputError for invalid options; errors of Captioner::caption propagate. On an exception no
/// annotated file is left behind.
Result caption_video(Captioner& captioner, const std::string& source, const Options& options);

}  // namespace xcaption::video
