// Linear layers for a handful of rows (the decoder's M = beams) straight on oneDNN's packed weight
// layouts. A decoding step is a stream over every weight matrix once; oneDNN 2.6's brgemm reads
// that stream at about 14 GB/s per core here, well below the machine's read bandwidth, while a
// loop that walks each 64-column block from top to bottom reaches it. Only the layouts oneDNN
// picks on AVX-512 machines are handled; callers check small_m_layout() and fall back otherwise.
#pragma once

#include <cstdint>

#include "src/backend/backend.hpp"

namespace xcaption::onednn {

inline constexpr std::int64_t kSmallMMaxRows = kBf16ExactInputRows;

/// A prepared weight matrix W (in, out) in oneDNN's BA16a64b (f32) or BA16a64b2a (bf16) layout:
/// 64-column blocks one after the other, each holding all `padded_in` rows (zero padded).
struct SmallMWeights {
  const void* data = nullptr;
  std::int64_t in = 0, out = 0;
  std::int64_t padded_in = 0;  // rows per column block, a multiple of 16 (f32) or 32 (bf16)
  bool bf16 = false;
};

/// Whether this CPU runs the kernels (AVX-512F; AVX-512BW too for bf16 weights).
bool small_m_supported(bool bf16);

/// y (m, out) = x (m, in) · W + bias [+ y], m <= kSmallMMaxRows, float32 inputs and accumulation
/// (bf16 weights are widened exactly; the inputs are not rounded). x: rows of x_ld floats. bias
/// (out) may be null. Threads: OpenMP over column blocks.
void small_m_linear(const SmallMWeights& w, const float* x, std::int64_t x_ld, std::int64_t m,
                    const float* bias, float* y, bool accumulate);

}  // namespace xcaption::onednn
