// Measurements for benchmarks (`xcaption bench`): what this machine's compute and memory allow,
// and how much memory the process used. Not needed to caption images.
#pragma once

#include <cstdint>

#include <xcaption/captioner.hpp>

namespace xcaption::perf {

/// GFLOP/s of a large matrix product (2048 x 2048 x 2048, weights prepacked) run by the same
/// backend and kernels the captioner uses, in `dtype`, on `threads` threads (0 = all cores):
/// the practical compute peak that encoder throughput is compared with. Best of several runs;
/// takes about a second. Throws BackendError if the backend cannot run the product.
double matmul_gflops(ComputeType dtype, int threads);

/// GB/s of reading a 512 MiB buffer (far larger than the caches) on `threads` threads: the
/// bandwidth that bounds a decoder step, which streams every weight once. Best of several passes.
double read_bandwidth_gbps(int threads);

/// Peak resident set size of this process so far (VmHWM of /proc/self/status), in bytes; 0 when
/// the platform does not report it.
std::int64_t peak_rss_bytes();
/// Current resident set size (VmRSS), in bytes; 0 when unknown.
std::int64_t current_rss_bytes();

}  // namespace xcaption::perf
