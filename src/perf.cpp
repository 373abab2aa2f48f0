// Machine measurements for `xcaption bench` (include/xcaption/perf.hpp).
#include <xcaption/perf.hpp>

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <xcaption/errors.hpp>

#include "src/backend/backend.hpp"
#include "src/backend/target_clones.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption::perf {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::int64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return std::strtoll(line.c_str() + n + 1, nullptr, 10);
  return 0;
}
// XOR is associative, so the compiler vectorises the reduction without changing its value; the
// clones give it the widest vectors the CPU has.
XCAPTION_TARGET_CLONES("avx512f", "avx2", "default")
std::uint64_t xor_all(const std::uint64_t* data, std::size_t words, int threads) {
  std::uint64_t acc = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(^ : acc)
  for (std::size_t i = 0; i < words; ++i) acc ^= data[i];
  return acc;
}

struct FreeHuge {
  void operator()(void* p) const { std::free(p); }
};
}  // namespace

double matmul_gflops(ComputeType dtype, int threads) {
  constexpr std::int64_t kM = 2048, kK = 2048, kN = 2048;
  auto backend = make_onednn_backend();
  backend->set_threads(threads);
  backend->set_precision(dtype == ComputeType::BF16 ? Precision::BF16 : Precision::F32);
  FloatBuffer weight(static_cast<std::size_t>(kK * kN)), src(static_cast<std::size_t>(kM * kK));
  FloatBuffer dst(static_cast<std::size_t>(kM * kN));
  // Small deterministic values: the speed does not depend on them, only denormals would matter.
  for (std::size_t i = 0; i < weight.size(); ++i) weight.data()[i] = static_cast<float>(i % 17) * 0.01f - 0.08f;
  for (std::size_t i = 0; i < src.size(); ++i) src.data()[i] = static_cast<float>(i % 13) * 0.02f - 0.12f;
  auto layer = backend->prepare_linear(weight.data(), WeightLayout::InOut, kK, kN, nullptr, kM);
  backend->linear(*layer, src.data(), kM, dst.data(), Activation::None, false);  // warm-up
  double best = 1e30;
  for (int run = 0; run < 5; ++run) {
    const auto t0 = Clock::now();
    backend->linear(*layer, src.data(), kM, dst.data(), Activation::None, false);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * kM * kK * kN / best * 1e-9;
}

double read_bandwidth_gbps(int threads) {
  constexpr std::size_t kBytes = std::size_t{512} << 20;
  constexpr std::size_t kWords = kBytes / sizeof(std::uint64_t);
  const int n_threads = threads > 0 ? threads : omp_get_max_threads();
  // Huge pages where the kernel offers them, as the backend uses for weights: the streaming rate
  // with 4 KiB pages is lower, and the floor should be what the machine can do.
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  std::unique_ptr<void, FreeHuge> buffer(std::aligned_alloc(kHugePage, kBytes));
  if (!buffer) throw BackendError("read_bandwidth_gbps: could not allocate the 512 MiB buffer");
  ::madvise(buffer.get(), kBytes, MADV_HUGEPAGE);
  // Fault the pages in with the same threads that read them later.
  auto* data = static_cast<std::uint64_t*>(buffer.get());
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::size_t i = 0; i < kWords; ++i) data[i] = i * 0x9e3779b97f4a7c15ull;
  double best = 1e30;
  volatile std::uint64_t sink = 0;
  for (int pass = 0; pass < 6; ++pass) {
    const auto t0 = Clock::now();
    const std::uint64_t acc = xor_all(data, kWords, n_threads);
    const double s = seconds_since(t0);
    sink = sink ^ acc;
    if (pass > 0) best = std::min(best, s);  // the first pass warms the TLB
  }
  return static_cast<double>(kBytes) / best * 1e-9;
}

std::int64_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }
std::int64_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

}  // namespace xcaption::perf
