// Decoder-step linear layers at the row counts batch decoding produces (images x beams): the
// backend as it runs (streaming small-M kernels up to onednn::kSmallMMaxRows rows, oneDNN's matmul
// above) against oneDNN's matmul alone on the same packed weights, f32 and bf16 weights, in one
// process, alternating. Prints the median time per call, the weight stream it reaches (GB/s) and
// the ratio. Above kSmallMMaxRows both columns run oneDNN (the ratio shows the noise). Measured
// 2 Dec 2026, one thread: a small-M kernel extended to 8-32 rows (passes over L1-resident
// stretches) was 0.75-0.9x oneDNN in f32 and 0.5-0.6x in bf16 there, so the limit stayed at 4.
// Not built by default:
//   cmake --build build --target bench_small_m && OMP_NUM_THREADS=2 ./build/bench_small_m
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "bench/bench_util.hpp"
#include "src/backend/backend.hpp"
#include "src/backend/onednn/onednn_backend.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace xcaption;

using bench::random_vector;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main() {
  struct Shape {
    const char* name;
    std::int64_t in, out;
  };
  // GPT-2 base (768 wide) decoder matrices and its 50257-token head.
  const Shape shapes[] = {{"qkv 768x2304", 768, 2304}, {"fc1 768x3072", 768, 3072}, {"fc2 3072x768", 3072, 768},
                          {"head 768x50257", 768, 50257}};
  const std::int64_t rows[] = {1, 2, 4, 6, 8, 12, 16, 24, 32};
  onednn::BackendOptions plain;
  plain.small_m_kernels = false;
  std::printf("%-16s %-5s %4s %12s %12s %10s %10s %8s\n", "matrix", "dtype", "m", "small-M us", "oneDNN us",
              "small GB/s", "dnnl GB/s", "dnnl/sm");
  for (const Precision p : {Precision::F32, Precision::BF16}) {
    auto fast = make_onednn_backend();
    auto dnnl = onednn::make_backend(plain);
    fast->set_precision(p);
    dnnl->set_precision(p);
    for (const Shape& s : shapes) {
      const auto w = random_vector(static_cast<std::size_t>(s.in * s.out), 1);
      const auto bias = random_vector(static_cast<std::size_t>(s.out), 2);
      auto lf = fast->prepare_linear(w.data(), WeightLayout::InOut, s.in, s.out, bias.data(), 1);
      auto ld = dnnl->prepare_linear(w.data(), WeightLayout::InOut, s.in, s.out, bias.data(), 1);
      const double bytes = static_cast<double>(s.in) * s.out * (p == Precision::BF16 ? 2 : 4);
      for (const std::int64_t m : rows) {
        const auto x = random_vector(static_cast<std::size_t>(m * s.in), 3);
        std::vector<float> y(static_cast<std::size_t>(m * s.out));
        std::vector<double> tf, td;
        const int reps = s.out > 10000 ? 15 : 41;
        for (int r = 0; r < reps + 2; ++r) {
          auto t0 = Clock::now();
          fast->linear(*lf, x.data(), m, y.data(), Activation::None, false);
          auto t1 = Clock::now();
          dnnl->linear(*ld, x.data(), m, y.data(), Activation::None, false);
          auto t2 = Clock::now();
          if (r < 2) continue;  // warm-up: primitive creation, first touch
          tf.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
          td.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
        }
        const double mf = median(tf), md = median(td);
        std::printf("%-16s %-5s %4lld %12.1f %12.1f %10.1f %10.1f %8.2f\n", s.name, p == Precision::BF16 ? "bf16" : "f32",
                    static_cast<long long>(m), mf, md, bytes / mf / 1e3, bytes / md / 1e3, md / mf);
      }
    }
  }
}
