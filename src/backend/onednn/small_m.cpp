// Small-M linear kernels on oneDNN's packed weights (see small_m.hpp).
//
// Column block b of W holds columns [64b, 64b + 64) for every row: f32 row i at i*64 (BA16a64b),
// bf16 rows 2p and 2p+1 interleaved per column at p*128 (BA16a64b2a, the pair layout of
// vdpbf16ps). Each thread takes whole column blocks and walks them top to bottom, so the weights
// are read once, sequentially, while every row's 64 accumulators stay in registers. bf16 weights
// are widened to float32 in registers and multiply the float32 inputs unrounded: the kernel is
// bound by memory, not arithmetic, and rounding the decoder's inputs to bf16 changed captions.
#include "src/backend/onednn/small_m.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace xcaption::onednn {

namespace {

constexpr std::int64_t kBlock = 64;

// Adds the bias, the previous output when accumulating, and stores the valid columns of one block.
__attribute__((target("avx512f")))
inline void store_block(__m512 acc, std::int64_t col, std::int64_t out, const float* bias, float* y,
                        bool accumulate) {
  if (col >= out) return;
  const std::int64_t lanes = std::min<std::int64_t>(16, out - col);
  const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
  if (bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, bias + col));
  if (accumulate) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, y + col));
  _mm512_mask_storeu_ps(y + col, mask, acc);
}

// One 64-column block of outputs. The OpenMP loop over blocks lives in a function without a target
// attribute (f32_blocks): clang outlines a `#pragma omp parallel` body into a new function that
// does not inherit target("avx512f"), so the intrinsics must sit in a function of their own.
template <int M>
__attribute__((target("avx512f")))
void f32_block(const SmallMWeights& w, const float* x, std::int64_t x_ld, const float* bias, float* y,
               bool accumulate, std::int64_t b) {
  const auto* base = static_cast<const float*>(w.data);
  const float* wb = base + b * w.padded_in * kBlock;
  __m512 acc[M][4];
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < w.in; ++i) {
    const float* wi = wb + i * kBlock;
    const __m512 w0 = _mm512_loadu_ps(wi), w1 = _mm512_loadu_ps(wi + 16);
    const __m512 w2 = _mm512_loadu_ps(wi + 32), w3 = _mm512_loadu_ps(wi + 48);
    for (int r = 0; r < M; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * x_ld + i]);
      acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(xv, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(xv, w3, acc[r][3]);
    }
  }
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < 4; ++c)
      store_block(acc[r][c], b * kBlock + c * 16, w.out, bias, y + r * w.out, accumulate);
}

template <int M>
void f32_blocks(const SmallMWeights& w, const float* x, std::int64_t x_ld, const float* bias, float* y,
                bool accumulate) {
  const std::int64_t blocks = (w.out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) f32_block<M>(w, x, x_ld, bias, y, accumulate, b);
}

// bf16 weights times float32 inputs: each pair of weight rows is widened to two float32 vectors
// (a bf16 value is the top half of a float32), so the inputs keep their full precision.
template <int M>
__attribute__((target("avx512f,avx512bw")))
void bf16_weights_f32_block(const SmallMWeights& w, const float* x, std::int64_t x_ld, const float* bias,
                            float* y, bool accumulate, std::int64_t b) {
  const auto* base = static_cast<const std::uint16_t*>(w.data);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const std::uint16_t* wb = base + b * w.padded_in * kBlock;
  __m512 acc[M][4];
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  const std::int64_t pairs = (w.in + 1) / 2;
  for (std::int64_t p = 0; p < pairs; ++p) {
    const bool odd_row_present = 2 * p + 1 < w.in;
    const std::uint16_t* wp = wb + p * 2 * kBlock;
    __m512 even[4], odd[4];
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_loadu_si512(wp + 32 * c);
      even[c] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      odd[c] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
    }
    for (int r = 0; r < M; ++r) {
      const __m512 x0 = _mm512_set1_ps(x[r * x_ld + 2 * p]);
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_fmadd_ps(x0, even[c], acc[r][c]);
      if (odd_row_present) {
        const __m512 x1 = _mm512_set1_ps(x[r * x_ld + 2 * p + 1]);
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_fmadd_ps(x1, odd[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < 4; ++c)
      store_block(acc[r][c], b * kBlock + c * 16, w.out, bias, y + r * w.out, accumulate);
}

template <int M>
void bf16_weights_f32_blocks(const SmallMWeights& w, const float* x, std::int64_t x_ld, const float* bias,
                             float* y, bool accumulate) {
  const std::int64_t blocks = (w.out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) bf16_weights_f32_block<M>(w, x, x_ld, bias, y, accumulate, b);
}

template <int M>
void run(const SmallMWeights& w, const float* x, std::int64_t x_ld, const float* bias, float* y,
         bool accumulate) {
  if (w.bf16)
    bf16_weights_f32_blocks<M>(w, x, x_ld, bias, y, accumulate);
  else
    f32_blocks<M>(w, x, x_ld, bias, y, accumulate);
}

}  // namespace

bool small_m_supported(bool bf16) {
  static const bool f32_ok = __builtin_cpu_supports("avx512f");
  static const bool bf16_ok = f32_ok && __builtin_cpu_supports("avx512bw");
  return bf16 ? bf16_ok : f32_ok;
}

void small_m_linear(const SmallMWeights& w, const float* x, std::int64_t x_ld, std::int64_t m,
                    const float* bias, float* y, bool accumulate) {
  switch (m) {
    case 1: return run<1>(w, x, x_ld, bias, y, accumulate);
    case 2: return run<2>(w, x, x_ld, bias, y, accumulate);
    case 3: return run<3>(w, x, x_ld, bias, y, accumulate);
    case 4: return run<4>(w, x, x_ld, bias, y, accumulate);
  }
}

}  // namespace xcaption::onednn
