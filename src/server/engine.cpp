#include "src/server/engine.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::server {

std::string settings_key(const CaptionRequest& r) {
  const GenerationOptions& g = r.generation;
  auto i = [](const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string("-"); };
  auto d = [](const std::optional<double>& v) { return v ? fmt::format("{}", *v) : std::string("-"); };
  // Texts last, length-prefixed, so no text can imitate other fields. Requests of one task and
  // text share a batch (their encoder prompts, and so their cross-attention lengths, agree).
  auto text = [](const std::optional<std::string>& v) {
    return v ? fmt::format("{}:{}", v->size(), *v) : std::string("-");
  };
  return fmt::format("b{} n{} l{} m{} ml{} lp{} es{} ng{} rp{} a{} t{} x{} p{}", i(g.num_beams), i(g.max_new_tokens),
                     i(g.max_length), i(g.min_new_tokens), i(g.min_length), d(g.length_penalty),
                     g.early_stopping.value_or("-"), i(g.no_repeat_ngram_size), d(g.repetition_penalty),
                     r.capture_cross_attention ? 1 : 0, text(r.task), text(r.task_text), text(r.prompt));
}

Job::Job(PreparedImage image, CaptionRequest request, Clock::time_point deadline)
    : image_(std::move(image)), request_(std::move(request)), key_(server::settings_key(request_)), deadline_(deadline),
      queued_at_(Clock::now()) {
  request_.on_tokens = nullptr;  // the engine installs its own
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_;
}

bool Job::wait_until(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_until(lock, until, [&] { return finished_; });
}

bool Job::wait_tokens(Clock::time_point until, std::vector<std::int64_t>& tokens) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_until(lock, until, [&] { return finished_ || !fresh_.empty(); });
  tokens.insert(tokens.end(), fresh_.begin(), fresh_.end());
  fresh_.clear();
  return finished_;
}

bool Job::report(std::span<const std::int64_t> tokens) {
  if (!tokens.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    fresh_.insert(fresh_.end(), tokens.begin(), tokens.end());
    changed_.notify_all();
  }
  return !cancelled_ && Clock::now() < deadline_;
}

void Job::finish(CaptionResult result) {
  std::lock_guard<std::mutex> lock(mutex_);
  result_ = std::move(result);
  finished_ = true;
  changed_.notify_all();
}

void Job::fail(int status, std::string error) {
  std::lock_guard<std::mutex> lock(mutex_);
  error_status_ = status;
  error_ = std::move(error);
  finished_ = true;
  changed_.notify_all();
}

Engine::Engine(Captioner& captioner, std::size_t max_queue, std::size_t max_batch)
    : captioner_(captioner), max_queue_(max_queue), max_batch_(std::max<std::size_t>(1, max_batch)),
      worker_([this] { run(); }) {}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

bool Engine::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (quit_ || queue_.size() >= max_queue_) return false;
    queue_.push_back(std::move(job));
    stats_.queue_depth = static_cast<std::int64_t>(queue_.size());
  }
  changed_.notify_all();
  return true;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::int64_t Engine::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<std::int64_t>(queue_.size()) + stats_.running;
}

void Engine::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return quit_ || !queue_.empty(); });
      if (queue_.empty()) return;  // quit, and nothing left to finish
      // The oldest job picks the settings; every waiting job with the same settings joins it,
      // in arrival order, up to max_batch. The others wait for the next round.
      const std::string key = queue_.front()->settings_key();
      for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
        if ((*it)->settings_key() == key) {
          batch.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      stats_.queue_depth = static_cast<std::int64_t>(queue_.size());
      stats_.running = static_cast<std::int64_t>(batch.size());
    }
    try {
      run_batch(batch);
    } catch (const std::exception& e) {  // out of memory copying images, say: the jobs fail, the worker goes on
      for (auto& j : batch)
        if (!j->finished()) j->fail(500, e.what());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.running = 0;
  }
}

void Engine::run_batch(std::vector<std::shared_ptr<Job>>& jobs) {
  // Jobs given up while they waited are answered without running them.
  std::int64_t dropped = 0;
  std::erase_if(jobs, [&](const std::shared_ptr<Job>& j) {
    if (!j->cancelled() && Clock::now() < j->deadline()) return false;
    CaptionResult r;
    r.cancelled = true;
    j->finish(std::move(r));
    ++dropped;
    return true;
  });
  if (jobs.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.cancelled += dropped;
    return;
  }
  std::vector<PreparedImage> images;
  images.reserve(jobs.size());
  for (const auto& j : jobs) images.push_back(j->image());
  CaptionRequest request = jobs.front()->request();
  std::int64_t tokens = 0;
  request.on_tokens = [&](std::size_t i, std::span<const std::int64_t> fresh) {
    tokens += static_cast<std::int64_t>(fresh.size());
    return jobs[i]->report(fresh);
  };
  std::vector<CaptionResult> results;
  int status = 0;
  std::string error;
  try {
    results = captioner_.caption_prepared(images, request);
  } catch (const InputError& e) {
    status = 400;
    error = e.what();
  } catch (const std::exception& e) {
    status = 500;
    error = e.what();
  }
  for (const auto& r : results) dropped += r.cancelled ? 1 : 0;
  {
    // Counted before anyone is told, so that a client that asks /metrics next sees its request.
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.batches += 1;
    stats_.images += static_cast<std::int64_t>(jobs.size());
    stats_.tokens += tokens;
    stats_.cancelled += dropped;
  }
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (status != 0) jobs[i]->fail(status, error);
    else jobs[i]->finish(std::move(results[i]));
  }
}

}  // namespace xcaption::server
