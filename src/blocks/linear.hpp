// Shared building blocks, layer 1: linear layers and layer norms described once by their
// checkpoint names, so that one description feeds both validation (the family's tensor table)
// and loading (ref: whisper.cpp whisper-arch.h, one name table per model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/backend/backend.hpp"
#include "src/io/weights.hpp"
#include "src/ops/ops.hpp"

namespace xcaption::blocks {

enum class Bias { Required, Optional, None };

/// One checkpoint matrix of a linear layer: `<name>.weight` and `<name>.bias`.
struct LinearPart {
  std::string name;
  std::int64_t out = 0;  // output features of this part
  /// The stored weight's shape when it is not the plain matrix (a Conv2d kernel
  /// (out, C, k, k) flattens row-major to (out, C*k*k)); empty for a matrix.
  std::vector<std::int64_t> weight_shape;
};

/// y = x·W + b, where W stacks one or more checkpoint matrices along the output features (q|k|v
/// fused from three nn.Linear, or one GPT-2 Conv1D that already holds all three). Every part is
/// stored the same way (`layout`).
struct LinearSpec {
  std::vector<LinearPart> parts;
  std::int64_t in = 0;
  WeightLayout layout = WeightLayout::OutIn;
  Bias bias = Bias::Required;
  /// The first `scaled_out` output features (a query projection) are multiplied by `scale` in the
  /// weights and the bias: an attention scale folded into the projection.
  std::int64_t scaled_out = 0;
  float scale = 1.0f;

  std::int64_t out() const;
  std::int64_t weights() const { return in * out(); }
};

/// A single-matrix layer: torch nn.Linear (OutIn) or GPT-2 Conv1D (InOut).
LinearSpec linear(std::string name, std::int64_t in, std::int64_t out,
                  WeightLayout layout = WeightLayout::OutIn, Bias bias = Bias::Required);

/// Appends the tensors of `spec` to a family's table.
void describe(const LinearSpec& spec, std::vector<ExpectedTensor>& table);

/// Prepares `spec` on `backend` (the weights validated against describe()). An absent optional
/// bias is zero.
std::unique_ptr<PreparedLinear> load(const LinearSpec& spec, const WeightStore& weights,
                                     Backend& backend, std::int64_t m_hint);

/// A torch LayerNorm: `<name>.weight`, `<name>.bias`, both (size).
struct NormSpec {
  std::string name;
  std::int64_t size = 0;
  float eps = 1e-5f;
};
void describe(const NormSpec& spec, std::vector<ExpectedTensor>& table);
ops::LayerNorm load(const NormSpec& spec, const WeightStore& weights);

/// The part of an attention scale that can be folded into the query weights without changing a
/// bit of the scores: the scale itself when it is a power of two ((q·s)·k == (q·k)·s exactly),
/// else 1. What is not folded stays a multiplication of the scores.
float exact_fold(float scale);

}  // namespace xcaption::blocks
