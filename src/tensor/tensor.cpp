#include "src/tensor/tensor.hpp"

#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

namespace xcaption {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

float bf16_to_f32(std::uint16_t bits) {
  std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint16_t f32_to_bf16(float value) {
  std::uint32_t u;
  std::memcpy(&u, &value, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

namespace {
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
void f32_to_bf16_avx512(const float* src, std::uint16_t* dst, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh packed = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, reinterpret_cast<const __m512i&>(packed));
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}
}  // namespace

void f32_to_bf16(const float* src, std::uint16_t* dst, std::int64_t n) {
  static const bool avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  if (avx512_bf16) {
    f32_to_bf16_avx512(src, dst, n);
  } else {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
  }
}

std::uint16_t f32_to_f16(float value) {
  std::uint32_t u;
  std::memcpy(&u, &value, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // subnormal or zero in f16
    float f;
    std::memcpy(&f, &abs, 4);
    // 2^-24 is the f16 subnormal step; rint rounds half to even in the default mode.
    const float scaled = f * 16777216.0f;
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(__builtin_rintf(scaled)));
  }
  std::uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);
  r -= (127u - 15u) << 23;
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

void convert_to_f32(DType dtype, const void* src, float* dst, std::size_t count) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::F16: {
      const auto* s = static_cast<const std::uint16_t*>(src);
      for (std::size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto* s = static_cast<const std::uint16_t*>(src);
      for (std::size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
  }
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

void FloatBuffer::Free::operator()(float* p) const { std::free(p); }

FloatBuffer::FloatBuffer(std::size_t count) { resize(count); }

void FloatBuffer::resize(std::size_t count) {
  data_.reset();
  size_ = 0;
  if (count == 0) return;
  const std::size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  data_.reset(static_cast<float*>(p));
  size_ = count;
}

void FloatBuffer::zero() {
  if (size_) std::memset(data_.get(), 0, size_ * sizeof(float));
}

}  // namespace xcaption
