#include "decoder/gpt2.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "encoders/vit.hpp"  // load_layer_norm / append_layer_norm

namespace xcaption {

void Gpt2Decoder::append_expected(const Gpt2Config& c, const std::string& prefix,
                                  std::vector<ExpectedTensor>& table) {
  const std::int64_t d = c.n_embd, inner = c.n_inner;
  const std::string t = prefix + "transformer.";
  table.push_back({t + "wte.weight", {c.vocab_size, d}});
  table.push_back({t + "wpe.weight", {c.n_positions, d}});
  for (std::int64_t l = 0; l < c.n_layer; ++l) {
    const std::string n = fmt::format("{}h.{}.", t, l);
    append_layer_norm(n + "ln_1", d, table);
    table.push_back({n + "attn.c_attn.weight", {d, 3 * d}});
    table.push_back({n + "attn.c_attn.bias", {3 * d}});
    table.push_back({n + "attn.c_proj.weight", {d, d}});
    table.push_back({n + "attn.c_proj.bias", {d}});
    append_layer_norm(n + "ln_cross_attn", d, table);
    table.push_back({n + "crossattention.q_attn.weight", {d, d}});
    table.push_back({n + "crossattention.q_attn.bias", {d}});
    table.push_back({n + "crossattention.c_attn.weight", {d, 2 * d}});
    table.push_back({n + "crossattention.c_attn.bias", {2 * d}});
    table.push_back({n + "crossattention.c_proj.weight", {d, d}});
    table.push_back({n + "crossattention.c_proj.bias", {d}});
    append_layer_norm(n + "ln_2", d, table);
    table.push_back({n + "mlp.c_fc.weight", {d, inner}});
    table.push_back({n + "mlp.c_fc.bias", {inner}});
    table.push_back({n + "mlp.c_proj.weight", {inner, d}});
    table.push_back({n + "mlp.c_proj.bias", {d}});
  }
  append_layer_norm(t + "ln_f", d, table);
  // ref: GPT2LMHeadModel ties lm_head to wte when tie_word_embeddings (the default); only an
  // untied decoder reads (and then needs) its own lm_head.weight.
  if (!c.tie_word_embeddings) table.push_back({prefix + "lm_head.weight", {c.vocab_size, d}});
}

namespace {
// GPT-2 Conv1D: weight (in, out), y = x·W + b. The first `scaled_out` output features (a query
// projection) are multiplied by `scale` in the weights and bias.
std::unique_ptr<PreparedLinear> load_conv1d(Backend& backend, const WeightStore& w,
                                            const std::string& name, std::int64_t in,
                                            std::int64_t out, std::int64_t m_hint,
                                            std::int64_t scaled_out = 0, float scale = 1.0f) {
  FloatBuffer weight = w.load(name + ".weight");
  FloatBuffer bias = w.load(name + ".bias");
  if (scaled_out > 0 && scale != 1.0f) {
    for (std::int64_t i = 0; i < in; ++i)
      for (std::int64_t o = 0; o < scaled_out; ++o) weight.data()[i * out + o] *= scale;
    for (std::int64_t o = 0; o < scaled_out; ++o) bias.data()[o] *= scale;
  }
  return backend.prepare_linear(weight.data(), WeightLayout::InOut, in, out, bias.data(), m_hint);
}

// True when multiplying by `scale` is exact in binary floating point (a power of two), so that
// folding it into the query weights gives bit-identical scores: (q·s)·k == (q·k)·s.
bool exact_scale(float scale) {
  int exponent = 0;
  return scale > 0 && std::frexp(scale, &exponent) == 0.5f;
}
}  // namespace

Gpt2Decoder::Gpt2Decoder(const Gpt2Config& config, Backend& backend, const WeightStore& w,
                         const std::string& prefix, std::int64_t rows_hint,
                         std::int64_t encoder_tokens_hint)
    : config_(config), backend_(backend) {
  const std::int64_t d = config.n_embd, inner = config.n_inner, heads = config.n_head;
  const float eps = static_cast<float>(config.layer_norm_epsilon);
  const std::string t = prefix + "transformer.";
  wpe_ = w.load(t + "wpe.weight");
  ln_f_ = load_layer_norm(w, t + "ln_f", eps);
  {
    // A tied decoder ignores any lm_head.weight in the file, as transformers does. Its token
    // embeddings are then read back from the prepared head (Backend::weight_column), so the
    // (V, D) matrix is held once.
    FloatBuffer wte = w.load(t + "wte.weight");
    // The head decides every token. With bf16 layers it stays float32 when it is a small part of
    // the weights a step reads (small vocabularies), where rounding it changed captions for no
    // measurable speed; GPT-2's 50257-token head is over a quarter of them and goes bf16.
    const Precision precision = backend.precision();
    cross_kv_bf16_ = precision == Precision::BF16;
    const double head = static_cast<double>(config.vocab_size) * d;
    const double blocks = static_cast<double>(config.n_layer) * (6.0 * d * d + 2.0 * d * inner);
    head_f32_ = precision == Precision::F32 || head <= kSmallHeadShare * (head + blocks);
    backend.set_precision(head_f32_ ? Precision::F32 : precision);
    if (config.tie_word_embeddings) {
      lm_head_ = backend.prepare_linear(wte.data(), WeightLayout::OutIn, d, config.vocab_size, nullptr, rows_hint);
    } else {
      FloatBuffer head = w.load(prefix + "lm_head.weight");
      lm_head_ = backend.prepare_linear(head.data(), WeightLayout::OutIn, d, config.vocab_size, nullptr, rows_hint);
      wte_ = std::move(wte);
    }
    backend.set_precision(precision);
  }

  const float head_scale = config.scale_attn_weights
                               ? 1.0f / std::sqrt(static_cast<float>(d / heads))
                               : 1.0f;
  for (std::int64_t l = 0; l < config.n_layer; ++l) {
    const std::string n = fmt::format("{}h.{}.", t, l);
    Layer layer;
    layer.ln_1 = load_layer_norm(w, n + "ln_1", eps);
    layer.ln_cross_attn = load_layer_norm(w, n + "ln_cross_attn", eps);
    layer.ln_2 = load_layer_norm(w, n + "ln_2", eps);
    // ref: GPT2Attention._attn: scores / sqrt(head_dim), then / (layer_idx + 1) when
    // scale_attn_by_inverse_layer_idx (self- and cross-attention alike). A power-of-two scale is
    // folded into the query weights (exact); any other stays a multiplication of the scores.
    float scale = head_scale;
    if (config.scale_attn_by_inverse_layer_idx) scale /= static_cast<float>(l + 1);
    const float fold = exact_scale(scale) ? scale : 1.0f;
    layer.self_scale = layer.cross_scale = scale / fold;
    layer.c_attn = load_conv1d(backend, w, n + "attn.c_attn", d, 3 * d, rows_hint, d, fold);
    layer.c_proj = load_conv1d(backend, w, n + "attn.c_proj", d, d, rows_hint);
    layer.q_attn = load_conv1d(backend, w, n + "crossattention.q_attn", d, d, rows_hint, d, fold);
    layer.cross_c_attn = load_conv1d(backend, w, n + "crossattention.c_attn", d, 2 * d,
                                      encoder_tokens_hint);
    layer.cross_c_proj = load_conv1d(backend, w, n + "crossattention.c_proj", d, d, rows_hint);
    layer.c_fc = load_conv1d(backend, w, n + "mlp.c_fc", d, inner, rows_hint);
    layer.mlp_c_proj = load_conv1d(backend, w, n + "mlp.c_proj", inner, d, rows_hint);
    layers_.push_back(std::move(layer));
  }
}

void Gpt2Decoder::reserve(std::int64_t max_rows, std::int64_t max_positions,
                          std::int64_t encoder_tokens) {
  if (max_positions > config_.n_positions)
    throw InputError(fmt::format("generation needs {} positions, but the decoder has n_positions = {}",
                                 max_positions, config_.n_positions));
  if (max_rows <= max_rows_ && max_positions <= max_positions_ && encoder_tokens <= max_encoder_tokens_)
    return;
  max_rows_ = std::max(max_rows, max_rows_);
  max_positions_ = std::max(max_positions, max_positions_);
  max_encoder_tokens_ = std::max(encoder_tokens, max_encoder_tokens_);
  const auto d = static_cast<std::size_t>(config_.n_embd);
  const auto rows = static_cast<std::size_t>(max_rows_), pos = static_cast<std::size_t>(max_positions_);
  const auto enc = static_cast<std::size_t>(max_encoder_tokens_);
  const auto heads = static_cast<std::size_t>(config_.n_head);
  for (auto& layer : layers_) {
    layer.cross_kv.resize(enc * 2 * d);
    if (cross_kv_bf16_) {
      layer.cross_k16.assign(enc * d, 0);
      layer.cross_v16.assign(enc * d, 0);
    } else {
      layer.cross_k.resize(enc * d);
      layer.cross_v.resize(enc * d);
    }
    for (FloatBuffer* b : {&layer.k_cache, &layer.v_cache, &layer.k_spare, &layer.v_spare})
      b->resize(rows * pos * d);
  }
  x_.resize(rows * d);
  normed_.resize(rows * d);
  qkv_.resize(rows * 3 * d);
  q_.resize(rows * d);
  context_.resize(rows * d);
  mlp_.resize(rows * static_cast<std::size_t>(config_.n_inner));
  scores_.resize(heads * rows * std::max(enc, pos));
  rows_ = position_ = encoder_tokens_ = 0;
}

void Gpt2Decoder::set_encoder_states(const float* states, std::int64_t tokens) {
  if (tokens > max_encoder_tokens_) throw InputError("Gpt2Decoder: encoder tokens exceed reserve()");
  const std::int64_t d = config_.n_embd, heads = config_.n_head, hd = d / heads;
  for (auto& layer : layers_) {
    ops::linear(backend_, *layer.cross_c_attn, states, tokens, layer.cross_kv.data());
    // Head-major copies: each head's keys (values) one contiguous block, read sequentially at
    // every step instead of 256-byte pieces 6 KB apart.
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t t = 0; t < tokens; ++t) {
        const float* row = layer.cross_kv.data() + t * 2 * d + h * hd;
        const std::int64_t at = (h * tokens + t) * hd;
        if (cross_kv_bf16_) {
          f32_to_bf16(row, layer.cross_k16.data() + at, hd);
          f32_to_bf16(row + d, layer.cross_v16.data() + at, hd);
        } else {
          std::memcpy(layer.cross_k.data() + at, row, sizeof(float) * hd);
          std::memcpy(layer.cross_v.data() + at, row + d, sizeof(float) * hd);
        }
      }
  }
  encoder_tokens_ = tokens;
}

void Gpt2Decoder::reset(std::int64_t rows) {
  if (rows > max_rows_) throw InputError("Gpt2Decoder: rows exceed reserve()");
  rows_ = rows;
  position_ = 0;
}

void Gpt2Decoder::step(const std::int64_t* tokens, float* logits, float* cross_attention) {
  if (position_ >= max_positions_)
    throw InputError(fmt::format("decoder position {} exceeds the reserved {}", position_, max_positions_));
  const std::int64_t d = config_.n_embd, heads = config_.n_head, hd = d / heads;
  const std::int64_t m = rows_, pos = position_, s = encoder_tokens_;
  const std::int64_t layers = config_.n_layer;

  float* x = x_.data();
  for (std::int64_t r = 0; r < m; ++r) {
    if (tokens[r] < 0 || tokens[r] >= config_.vocab_size)
      throw InputError(fmt::format("token id {} is outside the vocabulary (size {})", tokens[r], config_.vocab_size));
    float* xr = x + r * d;
    if (wte_.size() > 0)
      std::memcpy(xr, wte_.data() + tokens[r] * d, sizeof(float) * d);
    else
      backend_.weight_column(*lm_head_, tokens[r], xr);  // tied: the head's column is the embedding
    const float* pe = wpe_.data() + pos * d;
    for (std::int64_t i = 0; i < d; ++i) xr[i] += pe[i];
  }

  for (std::int64_t l = 0; l < layers; ++l) {
    Layer& layer = layers_[l];
    // Masked self-attention: the new token sees the cached positions and itself, so no mask is
    // needed in incremental decoding.
    ops::layer_norm(backend_, layer.ln_1, x, normed_.data(), m);
    ops::linear(backend_, *layer.c_attn, normed_.data(), m, qkv_.data());
    for (std::int64_t r = 0; r < m; ++r) {
      float* krow = layer.k_cache.data() + (r * max_positions_ + pos) * d;
      float* vrow = layer.v_cache.data() + (r * max_positions_ + pos) * d;
      std::memcpy(krow, qkv_.data() + r * 3 * d + d, sizeof(float) * d);
      std::memcpy(vrow, qkv_.data() + r * 3 * d + 2 * d, sizeof(float) * d);
    }
    ops::one_query_attention(backend_, {qkv_.data(), 3 * d, layer.k_cache.data(), layer.v_cache.data(),
                                        max_positions_ * d, hd, d, m, pos + 1, heads, hd, layer.self_scale,
                                        scores_.data(), context_.data(), d});
    ops::linear(backend_, *layer.c_proj, context_.data(), m, x, Activation::None, true);

    // Cross-attention: every row queries the same encoder keys/values.
    ops::layer_norm(backend_, layer.ln_cross_attn, x, normed_.data(), m);
    ops::linear(backend_, *layer.q_attn, normed_.data(), m, q_.data());
    OneQueryAttention cross{q_.data(), d, nullptr, nullptr, /*shared by all rows*/ 0, /*head-major*/ s * hd,
                            hd, m, s, heads, hd, layer.cross_scale, scores_.data(), context_.data(), d};
    if (cross_kv_bf16_) {
      cross.k16 = layer.cross_k16.data();
      cross.v16 = layer.cross_v16.data();
    } else {
      cross.k = layer.cross_k.data();
      cross.v = layer.cross_v.data();
    }
    ops::one_query_attention(backend_, cross);
    if (cross_attention) {
      // scores_ holds probabilities (rows, heads, s); output wants (rows, layers, heads, s).
      for (std::int64_t r = 0; r < m; ++r)
        std::memcpy(cross_attention + (r * layers + l) * heads * s, scores_.data() + r * heads * s,
                    sizeof(float) * heads * s);
    }
    ops::linear(backend_, *layer.cross_c_proj, context_.data(), m, x, Activation::None, true);

    ops::layer_norm(backend_, layer.ln_2, x, normed_.data(), m);
    ops::linear(backend_, *layer.c_fc, normed_.data(), m, mlp_.data(), config_.activation);
    ops::linear(backend_, *layer.mlp_c_proj, mlp_.data(), m, x, Activation::None, true);
  }
  ops::layer_norm(backend_, ln_f_, x, normed_.data(), m);
  ops::linear(backend_, *lm_head_, normed_.data(), m, logits);
  ++position_;
}

void Gpt2Decoder::reorder(const std::int64_t* src) {
  const std::int64_t d = config_.n_embd;
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(position_ * d);
  for (auto& layer : layers_) {
    for (std::int64_t r = 0; r < rows_; ++r) {
      std::memcpy(layer.k_spare.data() + r * max_positions_ * d,
                  layer.k_cache.data() + src[r] * max_positions_ * d, bytes);
      std::memcpy(layer.v_spare.data() + r * max_positions_ * d,
                  layer.v_cache.data() + src[r] * max_positions_ * d, bytes);
    }
    std::swap(layer.k_cache, layer.k_spare);
    std::swap(layer.v_cache, layer.v_spare);
  }
}

}  // namespace xcaption
