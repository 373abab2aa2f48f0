// The captioning engine behind the server: one Captioner, a bounded queue of prepared images and
// one worker thread. The worker takes everything waiting, runs the requests that share their
// generation settings as one caption_prepared() batch (images through the encoder together, all
// of them decoded in the same steps), and repeats. HTTP threads prepare images themselves
// (Captioner::prepare is thread-safe) and wait on their Job.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <xcaption/captioner.hpp>

namespace xcaption::server {

using Clock = std::chrono::steady_clock;

/// One image to caption and its answer. Shared by the HTTP thread that waits for it and the
/// worker that fills it.
class Job {
 public:
  Job(PreparedImage image, CaptionRequest request, Clock::time_point deadline);

  /// Asks the worker to stop this job (client gone, timed out). Safe from any thread.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  Clock::time_point deadline() const { return deadline_; }

  /// Waits until the job is finished or `until`; true when finished.
  bool wait_until(Clock::time_point until);
  /// Waits until new tokens arrive, the job finishes or `until`. Moves the tokens reported since
  /// the last call into `tokens`; true when the job is finished (the tokens then are complete).
  bool wait_tokens(Clock::time_point until, std::vector<std::int64_t>& tokens);

  bool finished() const;
  /// After finished(): the result, or the error (status 400 for InputError, else 500).
  const std::optional<CaptionResult>& result() const { return result_; }
  const std::string& error() const { return error_; }
  int error_status() const { return error_status_; }

  // For the engine.
  const PreparedImage& image() const { return image_; }
  const CaptionRequest& request() const { return request_; }
  const std::string& settings_key() const { return key_; }
  bool report(std::span<const std::int64_t> tokens);  // the worker's per-step hook
  void finish(CaptionResult result);
  void fail(int status, std::string error);
  Clock::time_point queued_at() const { return queued_at_; }

 private:
  PreparedImage image_;
  CaptionRequest request_;
  std::string key_;
  Clock::time_point deadline_, queued_at_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::int64_t> fresh_;  // reported, not yet taken by wait_tokens
  bool finished_ = false;
  std::optional<CaptionResult> result_;
  std::string error_;
  int error_status_ = 0;
};

/// Counters the engine keeps for /metrics.
struct EngineStats {
  std::int64_t batches = 0, images = 0, tokens = 0, cancelled = 0;
  std::int64_t queue_depth = 0, running = 0;
};

class Engine {
 public:
  /// max_queue: jobs that may wait (not counting the batch being captioned); max_batch: most
  /// images per caption_prepared() call.
  Engine(Captioner& captioner, std::size_t max_queue, std::size_t max_batch);
  /// Finishes the jobs already queued, then stops the worker.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues a job; false when the queue is full (the caller answers 429).
  bool submit(std::shared_ptr<Job> job);
  EngineStats stats() const;
  /// Jobs queued or being captioned.
  std::int64_t pending() const;

 private:
  void run();
  void run_batch(std::vector<std::shared_ptr<Job>>& batch);

  Captioner& captioner_;
  std::size_t max_queue_, max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool quit_ = false;
  EngineStats stats_;
  std::thread worker_;  // last: starts once the members above exist
};

/// The generation settings of a request as a string: requests with equal keys can share a batch.
std::string settings_key(const CaptionRequest& request);

}  // namespace xcaption::server
