#include "src/blocks/kv_cache.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/ops/ops.hpp"

namespace xcaption::blocks {

KvCache::KvCache(Backend& backend, std::int64_t layers, std::int64_t width, std::int64_t heads,
                 bool cross_bf16)
    : backend_(backend), width_(width), heads_(heads), cross_bf16_(cross_bf16), layers_(static_cast<std::size_t>(layers)) {}

void KvCache::reserve(std::int64_t rows, std::int64_t positions, std::int64_t cross_tokens) {
  if (rows < 1 || positions < 1 || cross_tokens < 0)
    throw InputError(fmt::format("KvCache: cannot reserve {} rows x {} positions", rows, positions));
  if (rows > max_rows_ || positions > positions_ || cross_tokens > max_cross_) {
    max_rows_ = std::max(rows, max_rows_);
    positions_ = std::max(positions, positions_);
    max_cross_ = std::max(cross_tokens, max_cross_);
    const auto self = static_cast<std::size_t>(max_rows_ * positions_ * width_);
    const auto cross = static_cast<std::size_t>(max_cross_ * width_);
    for (auto& l : layers_) {
      for (FloatBuffer* b : {&l.k, &l.v, &l.k_spare, &l.v_spare}) b->resize(self);
      if (cross_bf16_) {
        l.cross_k16.assign(cross, 0);
        l.cross_v16.assign(cross, 0);
      } else {
        l.cross_k.resize(cross);
        l.cross_v.resize(cross);
      }
    }
  }
  rows_ = rows;
  position_ = 0;
}

void KvCache::check_room() const {
  if (position_ >= positions_)
    throw InputError(fmt::format("decoder position {} exceeds the {} reserved", position_, positions_));
}

void KvCache::reorder(const std::int64_t* src) {
  for (auto& l : layers_) {
    ops::copy_rows(backend_, l.k.data(), row_stride(), rows_, src, rows_, position_ * width_, l.k_spare.data(), row_stride());
    ops::copy_rows(backend_, l.v.data(), row_stride(), rows_, src, rows_, position_ * width_, l.v_spare.data(), row_stride());
    std::swap(l.k, l.k_spare);
    std::swap(l.v, l.v_spare);
  }
}

void KvCache::set_cross(std::int64_t layer, const float* kv, std::int64_t tokens) {
  if (tokens > max_cross_) throw InputError("KvCache: cross-attention tokens exceed reserve()");
  Layer& l = layers_.at(static_cast<std::size_t>(layer));
  const std::int64_t hd = width_ / heads_;
  if (cross_bf16_) {
    ops::split_heads(backend_, kv, 2 * width_, tokens, heads_, hd, l.cross_k16.data());
    ops::split_heads(backend_, kv + width_, 2 * width_, tokens, heads_, hd, l.cross_v16.data());
  } else {
    ops::split_heads(backend_, kv, 2 * width_, tokens, heads_, hd, l.cross_k.data());
    ops::split_heads(backend_, kv + width_, 2 * width_, tokens, heads_, hd, l.cross_v.data());
  }
  cross_tokens_ = tokens;
}

const float* KvCache::cross_k(std::int64_t layer) const {
  return cross_bf16_ ? nullptr : layers_.at(static_cast<std::size_t>(layer)).cross_k.data();
}
const float* KvCache::cross_v(std::int64_t layer) const {
  return cross_bf16_ ? nullptr : layers_.at(static_cast<std::size_t>(layer)).cross_v.data();
}
const std::uint16_t* KvCache::cross_k16(std::int64_t layer) const {
  return cross_bf16_ ? layers_.at(static_cast<std::size_t>(layer)).cross_k16.data() : nullptr;
}
const std::uint16_t* KvCache::cross_v16(std::int64_t layer) const {
  return cross_bf16_ ? layers_.at(static_cast<std::size_t>(layer)).cross_v16.data() : nullptr;
}

}  // namespace xcaption::blocks
