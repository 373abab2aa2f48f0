// Request counters and latency histograms for GET /metrics, in Prometheus' text exposition format.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace xcaption::server {

struct EngineStats;

class Metrics {
 public:
  /// Upper bounds (seconds) of the latency histogram buckets; +Inf is implied.
  static constexpr std::array<double, 14> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1, 2.5, 5, 10, 30, 60, 120};

  /// One answered request. `route` should be one of the server's routes or "other", so that
  /// scanners probing random paths cannot grow the label set.
  void record(const std::string& route, int status, double seconds);

  /// The exposition text: xcaption_requests_total{route,status}, xcaption_request_duration_seconds
  /// {route} (histogram), and the engine's gauges and counters (queue depth, running images,
  /// batches, images, tokens generated, cancelled), plus `loaded` (1 once the model is ready)
  /// and the number of requests in flight.
  std::string render(const EngineStats& engine, bool loaded, std::int64_t in_flight) const;

 private:
  struct Histogram {
    std::array<std::int64_t, kBuckets.size()> counts{};  // not cumulative
    std::int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_;
  std::map<std::string, Histogram> latency_;
};

}  // namespace xcaption::server
