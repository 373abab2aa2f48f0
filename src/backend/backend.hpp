// The compute seam. Encoder, decoder and generation code talk to a Backend through src/ops; only
// src/backend/<name>/ knows how the math runs. A GPU backend is one more implementation of this
// interface (plus device buffers behind PreparedLinear), with no change above it.
//
// Contract for every kernel: inputs were validated by src/ops (sizes, null pointers); buffers are
// float32, host memory, row-major unless strides say otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace xcaption {

enum class Activation { None, GeluErf, GeluTanh };

/// How a linear layer's weight is stored in the checkpoint.
/// InOut: (in, out), GPT-2 Conv1D, y = x·W. OutIn: (out, in), torch nn.Linear, y = x·Wᵀ.
enum class WeightLayout { InOut, OutIn };

/// Element (b, i, j) of a strided 3-D operand lives at data[b*batch + i*row + j*col].
struct Strided3 {
  std::int64_t batch, row, col;
};

/// A linear layer's weights and bias in the backend's preferred form, prepared once at load.
class PreparedLinear {
 public:
  PreparedLinear(std::int64_t in, std::int64_t out) : in_(in), out_(out) {}
  virtual ~PreparedLinear() = default;
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

 private:
  std::int64_t in_, out_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  /// Number of threads kernels may use (0 = the runtime's default).
  virtual void set_threads(int threads) = 0;

  /// Prepares y = x·W + b. `weight` holds in*out floats stored as `layout`; `bias` (out floats)
  /// may be null. The backend copies what it keeps; the caller may free both afterwards.
  /// `m_hint` is the row count the layer will mostly see (it may pick the packed layout).
  virtual std::unique_ptr<PreparedLinear> prepare_linear(const float* weight, WeightLayout layout,
                                                         std::int64_t in, std::int64_t out,
                                                         const float* bias,
                                                         std::int64_t m_hint) = 0;

  /// dst (m, out) = act(src (m, in) · W + b), plus the previous dst when `accumulate` (a residual
  /// add). Rows are contiguous: src stride in, dst stride out. src and dst do not alias.
  virtual void linear(const PreparedLinear& layer, const float* src, std::int64_t m, float* dst,
                      Activation act, bool accumulate) = 0;

  /// C(b) = alpha · A(b) · B(b) for b < batch. A (batch, m, k), B (batch, k, n), C (batch, m, n),
  /// each with its own strides (so Kᵀ and per-head views of (T, H·d) rows need no copy).
  virtual void batched_matmul(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                              const float* a, Strided3 a_strides, const float* b, Strided3 b_strides,
                              float* c, Strided3 c_strides, float alpha) = 0;

  /// In-place softmax over each of `rows` rows of `n` contiguous values; row r starts at
  /// data + r*ld.
  virtual void softmax(float* data, std::int64_t rows, std::int64_t n, std::int64_t ld) = 0;

  /// dst = (src - mean) / sqrt(var + eps) * gamma + beta for each row of n contiguous values
  /// (biased variance, as torch.nn.LayerNorm). src and dst may be the same buffer.
  virtual void layer_norm(const float* src, float* dst, std::int64_t rows, std::int64_t n,
                          const float* gamma, const float* beta, float eps) = 0;
};

/// oneDNN on the CPU engine: the production backend.
std::unique_ptr<Backend> make_onednn_backend();

/// Naive loops in double precision accumulation: the reference the op-parity tests compare to.
std::unique_ptr<Backend> make_reference_backend();

}  // namespace xcaption
