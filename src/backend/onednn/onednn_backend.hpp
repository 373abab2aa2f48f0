// Internal view of the oneDNN backend for tests and benchmarks: construction options and counters.
// Deliberately free of oneDNN types so that including it does not pull in dnnl.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/backend/backend.hpp"

namespace xcaption::onednn {

struct BackendOptions {
  /// Row counts m at which linear() behaves as if oneDNN had refused the prepared (packed) weight
  /// layout, so that the plain-weight fallback can be exercised on a machine where oneDNN accepts
  /// the packed layout for every m. Empty in production.
  std::vector<std::int64_t> refuse_prepared_weights_at_m;
  /// Run softmax on rows with ld > n directly (oneDNN's reference kernel) instead of packing them
  /// into a dense workspace for the jit kernel. For tests and benchmarks.
  bool softmax_on_strided_rows = false;
  /// Run linear layers with at most onednn::kSmallMMaxRows rows through the streaming small-M
  /// kernels (small_m.hpp) where the CPU and the packed layout allow; false: always oneDNN matmul.
  bool small_m_kernels = true;
};

struct BackendStats {
  std::int64_t primitives_created = 0;  // compute primitives in the cache (reorders not counted)
  std::int64_t cache_hits = 0;          // op calls served by an already cached primitive
  std::int64_t plain_weight_primitives = 0;  // linear primitives built on plain weights (fallback)
  std::int64_t plain_weight_copies = 0;      // layers that had to materialise plain weights
  std::int64_t scratchpad_bytes = 0;         // size of the shared user scratchpad
  std::int64_t small_m_calls = 0;            // linear calls served by the small-M kernels
  /// One line per created primitive: "<op> <shape> -> <oneDNN implementation>".
  std::vector<std::string> created;
};

/// A oneDNN backend with non-default options (tests only; production uses make_onednn_backend()).
std::unique_ptr<Backend> make_backend(const BackendOptions& options);

/// Counters of a backend made by make_onednn_backend() or make_backend().
/// Throws BackendError if `backend` is some other implementation.
BackendStats stats(const Backend& backend);

/// The oneDNN layout of a prepared linear layer's weights, e.g. "BA16a64b (in 768, out 2304)",
/// or "plain" descriptions. Throws BackendError if `layer` was not prepared by a oneDNN backend.
std::string weight_layout(const PreparedLinear& layer);

}  // namespace xcaption::onednn
