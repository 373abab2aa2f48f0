// Stream time of decoded frames and the sampling schedule (internal; see include/xcaption/video.hpp).
#pragma once

#include <cmath>
#include <cstdint>

namespace xcaption::video::detail {

/// Turns what a capture reports after each grab into frame times in seconds.
/// A timestamp is used when it is finite, >= 0 and (after the first frame) later than the
/// previous frame's time; otherwise the frame is placed one frame duration after the previous
/// one, the duration being 1 / reported fps when that lies in (0, 1000], else 1 / assumed fps.
/// FFmpeg reports 0 for the last frames of streams with B-frames, cameras report clock times,
/// image sequences and some streams report nothing: all of these land on a sensible time line.
class FrameClock {
 public:
  FrameClock(double reported_fps, double assumed_fps)
      : step_(reported_fps > 0 && reported_fps <= 1000 ? 1.0 / reported_fps : 1.0 / assumed_fps) {}

  /// Time of the next frame given the capture's CAP_PROP_POS_MSEC for it.
  double next(double pos_msec) {
    const bool valid = std::isfinite(pos_msec) && pos_msec >= 0;
    double t;
    if (frames_ == 0) {
      // Live sources count from their clock: start their time line at the first frame.
      if (valid && pos_msec > 1000.0) offset_ms_ = pos_msec;
      t = valid ? (pos_msec - offset_ms_) / 1000.0 : 0.0;
      stamped_ += valid ? 1 : 0;
    } else if (valid && (pos_msec - offset_ms_) / 1000.0 > last_) {
      t = (pos_msec - offset_ms_) / 1000.0;
      ++stamped_;
    } else {
      t = last_ + step_;
    }
    ++frames_;
    last_ = t;
    return t;
  }

  /// Time where the stream ends: one frame duration after the last frame.
  double end() const { return frames_ == 0 ? 0.0 : last_ + step_; }
  double step() const { return step_; }
  /// More than half of the frames after the first carried a usable timestamp.
  bool used_timestamps() const { return frames_ > 1 && 2 * (stamped_ - 1) > frames_ - 1; }

 private:
  double step_;
  double offset_ms_ = 0;
  double last_ = 0;
  std::int64_t frames_ = 0;
  std::int64_t stamped_ = 0;
};

/// Samples the first frame and then the first frame at or after each multiple of `every`.
/// Times within half a millisecond of a multiple count as reaching it (millisecond timestamps).
class Sampler {
 public:
  explicit Sampler(double every) : every_(every) {}
  bool take(double t) {
    if (!started_ || t >= next_ - 5e-4) {
      started_ = true;
      next_ = (std::floor((t + 5e-4) / every_) + 1) * every_;
      return true;
    }
    return false;
  }

 private:
  double every_;
  double next_ = 0;
  bool started_ = false;
};

}  // namespace xcaption::video::detail
