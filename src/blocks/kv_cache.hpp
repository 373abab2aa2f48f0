// The per-sequence-group decoding state every text decoder uses: self-attention keys/values of
// each row (beam) and the cross-attention keys/values of the group's image, computed once per
// image and read at every step (ref: whisper.cpp whisper_build_graph_cross, "pre-compute
// cross-attention memory"). One cache per image being decoded; the weights stay in the model.
#pragma once

#include <cstdint>
#include <vector>

#include "src/backend/backend.hpp"
#include "src/generate/generate.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption::blocks {

class KvCache : public DecoderState {
 public:
  /// `width` = heads * head_dim of the decoder. Cross keys/values are stored as bfloat16 when
  /// `cross_bf16` (half the bytes each step reads; the arithmetic over them stays float32).
  KvCache(Backend& backend, std::int64_t layers, std::int64_t width, std::int64_t heads, bool cross_bf16);

  /// Sizes the buffers for `rows` rows of up to `positions` tokens and `cross_tokens` encoder
  /// tokens, then empties the cache. Grows only; the step loop then allocates nothing.
  void reserve(std::int64_t rows, std::int64_t positions, std::int64_t cross_tokens);

  // DecoderState
  std::int64_t rows() const override { return rows_; }
  /// Row i takes over the self-attention cache of row src[i] (beam reordering).
  void reorder(const std::int64_t* src) override;

  std::int64_t position() const { return position_; }
  std::int64_t positions() const { return positions_; }  // reserved
  /// The next step writes position() (throws InputError once the reserve is used up).
  void check_room() const;
  void advance() { ++position_; }

  /// Self-attention keys/values of `layer`: (rows, positions, width); row r starts at
  /// r * row_stride().
  float* self_k(std::int64_t layer) { return layers_[static_cast<std::size_t>(layer)].k.data(); }
  float* self_v(std::int64_t layer) { return layers_[static_cast<std::size_t>(layer)].v.data(); }
  std::int64_t row_stride() const { return positions_ * width_; }

  /// Stores the cross-attention keys/values of `layer` from (tokens, 2*width) rows K | V,
  /// head-major, in float32 or bf16.
  void set_cross(std::int64_t layer, const float* kv, std::int64_t tokens);
  std::int64_t cross_tokens() const { return cross_tokens_; }
  bool cross_bf16() const { return cross_bf16_; }
  /// Head-major (heads, cross_tokens, head_dim) keys and values of `layer`: the float32 arrays
  /// (null under bf16) or the bf16 ones (null under float32).
  const float* cross_k(std::int64_t layer) const;
  const float* cross_v(std::int64_t layer) const;
  const std::uint16_t* cross_k16(std::int64_t layer) const;
  const std::uint16_t* cross_v16(std::int64_t layer) const;

 private:
  struct Layer {
    FloatBuffer k, v;              // (rows, positions, width)
    FloatBuffer k_spare, v_spare;  // reorder targets, swapped in
    FloatBuffer cross_k, cross_v;  // (heads, tokens, head_dim)
    std::vector<std::uint16_t> cross_k16, cross_v16;
  };
  Backend& backend_;
  std::int64_t width_, heads_;
  bool cross_bf16_;
  std::vector<Layer> layers_;
  std::int64_t max_rows_ = 0, positions_ = 0, max_cross_ = 0;
  std::int64_t rows_ = 0, position_ = 0, cross_tokens_ = 0;
};

}  // namespace xcaption::blocks
