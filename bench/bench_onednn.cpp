// Throughput of the oneDNN backend's linear and the fixed cost of a cached primitive call.
// Not built by default (benchmarks are not tests). Build and run from the repo root:
//   cmake --build build --target bench_onednn && ./build/bench_onednn
// Heap allocations are counted by replacing the global operator new of this program, which also
// sees the ones libdnnl makes inside an execute call.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "bench/bench_util.hpp"
#include "src/backend/backend.hpp"
#include "src/backend/onednn/onednn_backend.hpp"

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;
using namespace xcaption;

using bench::random_vector;

// Seconds per call: best of 11 batches, each long enough (>= 0.1 s) to dwarf the timer.
template <class F>
double seconds_per_call(F&& f) {
  f();
  long reps = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (long i = 0; i < reps; ++i) f();
    if (std::chrono::duration<double>(Clock::now() - t0).count() > 0.1) break;
    reps *= 2;
  }
  double best = 1e30;
  for (int trial = 0; trial < 11; ++trial) {
    const auto t0 = Clock::now();
    for (long i = 0; i < reps; ++i) f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / double(reps));
  }
  return best;
}

}  // namespace

int main() {
  auto backend = make_onednn_backend();
  std::printf("linear, bias, no activation (GFLOP/s = 2*m*in*out / time)\n");
  for (int threads : {1, 2}) {
    backend->set_threads(threads);
    for (auto [in, out] : {std::pair<long, long>{768, 768}, {768, 3072}}) {
      const auto w = random_vector(std::size_t(in * out), 1);
      const auto b = random_vector(std::size_t(out), 2);
      for (long m : {1L, 197L}) {
        auto layer = backend->prepare_linear(w.data(), WeightLayout::OutIn, in, out, b.data(), m);
        const auto src = random_vector(std::size_t(m * in), 3);
        std::vector<float> dst(std::size_t(m * out));
        const double t = seconds_per_call(
            [&] { backend->linear(*layer, src.data(), m, dst.data(), Activation::None, false); });
        std::printf("  threads %d  m %3ld  %4ldx%-4ld  %8.1f us  %6.1f GFLOP/s\n", threads, m, in, out,
                    t * 1e6, 2.0 * double(m * in * out) / t * 1e-9);
      }
    }
  }

  std::printf("\nfixed cost of a cached call (1 thread)\n");
  backend->set_threads(1);
  const auto w = random_vector(8 * 8, 4);
  auto tiny = backend->prepare_linear(w.data(), WeightLayout::InOut, 8, 8, nullptr, 1);
  std::vector<float> x(8, 1.0f), y(8);
  const auto first0 = Clock::now();
  backend->linear(*tiny, x.data(), 1, y.data(), Activation::None, false);
  const double first = std::chrono::duration<double>(Clock::now() - first0).count();
  const double hit = seconds_per_call(
      [&] { backend->linear(*tiny, x.data(), 1, y.data(), Activation::None, false); });
  std::printf("  linear 1x8x8: first call (creates the primitive) %.1f us, cached call %.2f us\n",
              first * 1e6, hit * 1e6);
  std::vector<float> s(8 * 64, 0.5f);
  const double sm = seconds_per_call([&] { backend->softmax(s.data(), 8, 8, 8); });
  const double sm_ld = seconds_per_call([&] { backend->softmax(s.data(), 8, 8, 64); });
  std::printf("  softmax 8x8: dense %.2f us, ld 64 %.2f us\n", sm * 1e6, sm_ld * 1e6);

  const long before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) backend->linear(*tiny, x.data(), 1, y.data(), Activation::None, false);
  std::printf("  heap allocations per cached linear call (inside libdnnl): %.2f\n",
              double(g_allocations.load() - before) / 1000.0);

  std::printf("\nsoftmax 12x197 rows of 197 (1 thread)\n");
  onednn::BackendOptions strided_options;
  strided_options.softmax_on_strided_rows = true;
  auto strided = onednn::make_backend(strided_options);
  strided->set_threads(1);
  std::vector<float> att(12 * 197 * 200, 0.1f);
  const double dense = seconds_per_call([&] { backend->softmax(att.data(), 12 * 197, 197, 197); });
  const double packed = seconds_per_call([&] { backend->softmax(att.data(), 12 * 197, 197, 200); });
  const double ref = seconds_per_call([&] { strided->softmax(att.data(), 12 * 197, 197, 200); });
  std::printf("  ld = n: %.1f us; ld = 200 packed: %.1f us; ld = 200 oneDNN strided: %.1f us\n",
              dense * 1e6, packed * 1e6, ref * 1e6);
  std::printf("  %s\n", onednn::stats(*strided).created.back().c_str());

  std::printf("\nprimitives created:\n");
  for (const auto& line : onednn::stats(*backend).created) std::printf("  %s\n", line.c_str());
  std::printf("prepared layout of the last layer: %s\n", onednn::weight_layout(*tiny).c_str());
  return 0;
}
