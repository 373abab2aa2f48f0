// Storage dtypes and small owned float buffers used by the runtime core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xcaption {

enum class DType { F32, F16, BF16 };

const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

/// Converts `count` values stored as `dtype` at `src` to float32 in `dst`.
void convert_to_f32(DType dtype, const void* src, float* dst, std::size_t count);

float bf16_to_f32(std::uint16_t bits);
float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_bf16(float value);  // round to nearest even
/// The same for n values, on the calling thread; 32 values per instruction pair where the CPU
/// has AVX512-BF16 (vcvtne2ps2bf16, which rounds the same way).
void f32_to_bf16(const float* src, std::uint16_t* dst, std::int64_t n);
std::uint16_t f32_to_f16(float value);   // round to nearest even

std::string shape_string(const std::vector<std::int64_t>& shape);  // "[2, 3]"

/// A 64-byte aligned float buffer. Allocated once (at load or workspace setup), never in the
/// per-token loop.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(std::size_t count);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  void resize(std::size_t count);  // discards contents
  void zero();

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace xcaption
