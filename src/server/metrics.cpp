#include "src/server/metrics.hpp"

#include <fmt/format.h>

#include "src/server/engine.hpp"

namespace xcaption::server {

void Metrics::record(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
  Histogram& h = latency_[route];
  for (std::size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) {
      ++h.counts[i];
      break;
    }
  ++h.count;
  h.sum += seconds;
}

std::string Metrics::render(const EngineStats& e, bool loaded, std::int64_t in_flight) const {
  std::string out;
  auto add = [&](const std::string& name, const char* type, const char* help, const std::string& samples) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}", name, help, name, type, samples);
  };
  std::lock_guard<std::mutex> lock(mutex_);
  std::string samples;
  for (const auto& [key, n] : requests_)
    samples += fmt::format("xcaption_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  add("xcaption_requests_total", "counter", "HTTP requests answered, by route and status.", samples);
  samples.clear();
  for (const auto& [route, h] : latency_) {
    std::int64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += h.counts[i];
      samples += fmt::format("xcaption_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n", route,
                             kBuckets[i], cumulative);
    }
    samples += fmt::format("xcaption_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n", route, h.count);
    samples += fmt::format("xcaption_request_duration_seconds_sum{{route=\"{}\"}} {}\n", route, h.sum);
    samples += fmt::format("xcaption_request_duration_seconds_count{{route=\"{}\"}} {}\n", route, h.count);
  }
  add("xcaption_request_duration_seconds", "histogram",
      "Time from the request's headers to the end of its answer (streams included).", samples);
  add("xcaption_queue_depth", "gauge", "Requests waiting for the engine.", fmt::format("xcaption_queue_depth {}\n", e.queue_depth));
  add("xcaption_running_images", "gauge", "Images in the batch being captioned.",
      fmt::format("xcaption_running_images {}\n", e.running));
  add("xcaption_requests_in_flight", "gauge", "Requests being read, captioned or answered.",
      fmt::format("xcaption_requests_in_flight {}\n", in_flight));
  add("xcaption_batches_total", "counter", "Engine batches run.", fmt::format("xcaption_batches_total {}\n", e.batches));
  add("xcaption_images_total", "counter", "Images captioned (cancelled ones included).",
      fmt::format("xcaption_images_total {}\n", e.images));
  add("xcaption_tokens_generated_total", "counter", "Tokens generated, end tokens included.",
      fmt::format("xcaption_tokens_generated_total {}\n", e.tokens));
  add("xcaption_cancelled_total", "counter", "Requests stopped before their caption was complete (client gone, timeout).",
      fmt::format("xcaption_cancelled_total {}\n", e.cancelled));
  add("xcaption_model_loaded", "gauge", "1 once the model is loaded.", fmt::format("xcaption_model_loaded {}\n", loaded ? 1 : 0));
  return out;
}

}  // namespace xcaption::server
