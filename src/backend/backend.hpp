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

/// How linear layers store their weights and multiply. F32: float32 throughout. BF16: weights
/// rounded to bfloat16 once when prepared, products accumulated in float32; inputs of more than
/// kBf16ExactInputRows rows (the encoder, cross K/V) are rounded to bfloat16 per call for the bf16
/// matrix units, while the few rows of a decoding step multiply unrounded (that path is bound by
/// memory, and rounding the decoder's inputs changed captions); bias, activation, residual add
/// and the output stay float32.
enum class Precision { F32, BF16 };
inline constexpr std::int64_t kBf16ExactInputRows = 4;

/// How a linear layer's weight is stored in the checkpoint.
/// InOut: (in, out), GPT-2 Conv1D, y = x·W. OutIn: (out, in), torch nn.Linear, y = x·Wᵀ.
enum class WeightLayout { InOut, OutIn };

/// Element (b, i, j) of a strided 3-D operand lives at data[b*batch + i*row + j*col].
struct Strided3 {
  std::int64_t batch, row, col;
};

/// Attention of one new query row per sequence (the decoder at each generated token). For row r
/// and head h, with d = head_dim:
///   p = softmax(scale · q[r, h·d .. h·d+d) · K_rᵀ) over the n keys, out[r, h·d ..) = p · V_r,
/// where head h of key j of row r starts at k + r·kv_row_stride + h·kv_head_stride + j·kv_ld, and
/// V likewise: heads side by side in a row (kv_head_stride = head_dim, kv_ld >= heads·head_dim),
/// or head-major blocks (kv_head_stride >= n·kv_ld, kv_ld = head_dim), which read sequentially.
/// kv_row_stride is each row's own cache for self-attention, 0 when all rows read the same
/// keys/values (cross-attention). `scores`: rows·heads·n floats; on return it holds the
/// probabilities p, (rows, heads, n). Keys and values are float32 at k and v, or, when k16 and v16
/// are set (k and v null), bfloat16 values at the same element offsets (cross-attention under
/// --dtype bf16: half the bytes per step); the arithmetic is float32 either way.
struct OneQueryAttention {
  const float* q;
  std::int64_t q_ld;
  const float* k;
  const float* v;
  std::int64_t kv_row_stride;
  std::int64_t kv_head_stride;
  std::int64_t kv_ld;
  std::int64_t rows;
  std::int64_t n;
  std::int64_t heads;
  std::int64_t head_dim;
  float scale;
  float* scores;
  float* out;
  std::int64_t out_ld;
  const std::uint16_t* k16 = nullptr;
  const std::uint16_t* v16 = nullptr;
};

/// Attention of a block of tq query rows against tk key/value rows, all heads, no mask (the
/// encoder). Row r of Q, K and V holds the heads side by side: head h occupies columns
/// [h·head_dim, (h+1)·head_dim) of q + r·q_ld (so q, k, v may point into one fused QKV buffer with
/// ld = 3·heads·head_dim). For each head, out = softmax(scale · Q·Kᵀ) · V, written to columns
/// [h·head_dim, ...) of out + r·out_ld. `scores`: a workspace of heads·tq·tk floats; with
/// F32 precision it holds the probabilities (heads, tq, tk) on return.
/// BF16 precision (a request, for blocks of more than kBf16ExactInputRows rows): Q, K, V and the
/// probabilities are rounded to bfloat16 for the two matrix products, which accumulate in float32;
/// the softmax runs in float32 and `scores` is then only a workspace. A backend may compute BF16
/// requests in float32.
struct BlockAttention {
  const float* q;
  std::int64_t q_ld;
  const float* k;
  std::int64_t k_ld;
  const float* v;
  std::int64_t v_ld;
  std::int64_t tq;
  std::int64_t tk;
  std::int64_t heads;
  std::int64_t head_dim;
  float scale;
  float* scores;
  float* out;
  std::int64_t out_ld;
  Precision precision = Precision::F32;
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

/// Memory order of a batch of images or feature maps. NHWC is the token layout of the
/// transformer parts: row (y * width + x) of an image holds its channels.
enum class ImageLayout { NCHW, NHWC };

/// A torch Conv2d with a square kernel, equal stride and zero padding on both axes, and `groups`
/// groups (groups == in == out: depthwise). Weights are (out, in / groups, kernel, kernel).
struct Conv2dShape {
  std::int64_t in = 0, out = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
  /// Output side for an input side (torch's floor rule).
  std::int64_t out_size(std::int64_t in_size) const { return (in_size + 2 * padding - kernel) / stride + 1; }
};

/// A convolution's weights and bias in the backend's preferred form, prepared once at load for
/// one source layout.
class PreparedConv {
 public:
  PreparedConv(const Conv2dShape& shape, ImageLayout src_layout) : shape_(shape), src_layout_(src_layout) {}
  virtual ~PreparedConv() = default;
  const Conv2dShape& shape() const { return shape_; }
  ImageLayout src_layout() const { return src_layout_; }

 private:
  Conv2dShape shape_;
  ImageLayout src_layout_;
};

/// Attention inside windows (DaViT's spatial attention, Swin without the shift): the rows of
/// qkv form `windows` consecutive blocks of `window_tokens` rows; row r holds q | k | v, each
/// heads * head_dim values with the heads side by side, at qkv + r * qkv_ld (q at column 0, k at
/// heads * head_dim, v at 2 * heads * head_dim). Each window's tokens attend to that window only,
/// every token (padding included: no mask): out = softmax(scale · Q·Kᵀ) · V per window and head,
/// written with the heads side by side at out + r * out_ld. `scores`: a workspace of
/// windows * window_tokens² floats.
struct WindowAttention {
  const float* qkv;
  std::int64_t qkv_ld;
  std::int64_t windows;
  std::int64_t window_tokens;
  std::int64_t heads;
  std::int64_t head_dim;
  float scale;
  float* scores;
  float* out;
  std::int64_t out_ld;
};

/// DaViT's channel-group attention over one image's `tokens` rows: row n of qkv holds q | k | v
/// (channels each, at qkv + n * qkv_ld); channels split into `groups` groups of d = channels /
/// groups. For group g with Q_g, K_g, V_g the (tokens, d) column blocks:
///   A_g = softmax over j of (scale · Q_gᵀ · K_g) (d, d),  out[:, g·d ..) = V_g · A_gᵀ,
/// i.e. out[n, g·d + i] = Σ_j A_g[i, j] · V_g[n, j]. `scores`: a workspace of groups * d² floats.
/// (ref: Florence-2's ChannelAttention, scale = tokens^-0.5)
struct ChannelAttention {
  const float* qkv;
  std::int64_t qkv_ld;
  std::int64_t tokens;
  std::int64_t channels;
  std::int64_t groups;
  float scale;
  float* scores;
  float* out;
  std::int64_t out_ld;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  /// Number of threads kernels may use (0 = the runtime's default).
  virtual void set_threads(int threads) = 0;

  /// Precision of the linear layers prepared from now on (layers keep the one they were made with).
  virtual void set_precision(Precision precision) = 0;
  virtual Precision precision() const = 0;

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

  /// Copies column `o` of a prepared layer's W (its `in` values: the weights that feed output
  /// feature o) to dst as float32. For a tied LM head, W is the token embedding matrix transposed,
  /// so this is the embedding of token o: the model needs no second copy of the matrix.
  virtual void weight_column(const PreparedLinear& layer, std::int64_t o, float* dst) = 0;

  /// See OneQueryAttention.
  virtual void one_query_attention(const OneQueryAttention& args) = 0;

  /// See BlockAttention. The default runs it as batched_matmul, softmax, batched_matmul in float32
  /// on the strided per-head views.
  virtual void block_attention(const BlockAttention& a) {
    batched_matmul(a.heads, a.tq, a.tk, a.head_dim, a.q, Strided3{a.head_dim, a.q_ld, 1}, a.k,
                   Strided3{a.head_dim, 1, a.k_ld}, a.scores, Strided3{a.tq * a.tk, a.tk, 1}, a.scale);
    softmax(a.scores, a.heads * a.tq, a.tk, a.tk);
    batched_matmul(a.heads, a.tq, a.head_dim, a.tk, a.scores, Strided3{a.tq * a.tk, a.tk, 1}, a.v,
                   Strided3{a.head_dim, a.v_ld, 1}, a.out, Strided3{a.head_dim, a.out_ld, 1}, 1.0f);
  }

  /// Prepares a convolution for sources in `src_layout`. `weight`: (out, in / groups, kernel,
  /// kernel) floats; `bias` (out floats) may be null. The backend copies what it keeps.
  /// `height_hint` x `width_hint`: the input size it will mostly see.
  virtual std::unique_ptr<PreparedConv> prepare_conv2d(const Conv2dShape& shape, ImageLayout src_layout,
                                                       const float* weight, const float* bias,
                                                       std::int64_t height_hint, std::int64_t width_hint) = 0;

  /// dst (batch, OH, OW, out), NHWC, = conv(src) + bias [+ residual]: src is (batch, in, height,
  /// width) or (batch, height, width, in) as prepared; `residual` (may be null) has dst's shape
  /// and layout. Float32 throughout. dst aliases neither src nor residual.
  virtual void conv2d(const PreparedConv& conv, const float* src, std::int64_t batch, std::int64_t height,
                      std::int64_t width, const float* residual, float* dst) = 0;

  /// See WindowAttention. The default runs, per head, batched_matmul over the windows, softmax,
  /// batched_matmul, in float32.
  virtual void window_attention(const WindowAttention& a);

  /// See ChannelAttention. The default is batched_matmul over the groups, softmax, batched_matmul.
  virtual void channel_attention(const ChannelAttention& a);

  /// C(b) = alpha · A(b) · B(b) for b < batch. A (batch, m, k), B (batch, k, n), C (batch, m, n),
  /// each with its own strides (so Kᵀ and per-head views of (T, H·d) rows need no copy).
  virtual void batched_matmul(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                              const float* a, Strided3 a_strides, const float* b, Strided3 b_strides,
                              float* c, Strided3 c_strides, float alpha) = 0;

  /// In-place softmax over each of `rows` rows of `n` contiguous values; row r starts at
  /// data + r*ld.
  virtual void softmax(float* data, std::int64_t rows, std::int64_t n, std::int64_t ld) = 0;

  /// dst = log_softmax(src) over each of `rows` dense rows of n values (x - max - log Σ exp(x - max),
  /// float32). src and dst do not alias.
  virtual void log_softmax(const float* src, float* dst, std::int64_t rows, std::int64_t n) = 0;

  /// dst = (src - mean) / sqrt(var + eps) * gamma + beta for each row of n contiguous values
  /// (biased variance, as torch.nn.LayerNorm). src and dst may be the same buffer.
  virtual void layer_norm(const float* src, float* dst, std::int64_t rows, std::int64_t n,
                          const float* gamma, const float* beta, float eps) = 0;

  // Data movement. Model code never loops over buffers or calls memcpy itself: it asks the
  // backend, so that a device backend implements these kernels and no model changes. The
  // defaults are plain host loops (src/backend/data_ops.cpp); regions do not overlap.

  /// dst (batch * (height/patch) * (width/patch), channels * patch * patch): the non-overlapping
  /// patch x patch tiles of each (channels, height, width) image of src, in row-major order over
  /// the tile grid; a tile's values are ordered (channel, ky, kx) like a Conv2d kernel, so
  /// dst · W_conv(out, C*p*p)ᵀ is the strided convolution.
  virtual void patchify(const float* src, std::int64_t batch, std::int64_t channels,
                        std::int64_t height, std::int64_t width, std::int64_t patch, float* dst);

  /// Row r of dst (cols values at dst + r*dst_ld) = row index[r] of src (at src + index[r]*src_ld),
  /// or row r when index is null. Gathers embeddings, appends cache rows, reorders beams.
  virtual void copy_rows(const float* src, std::int64_t src_ld, const std::int64_t* index,
                         std::int64_t rows, std::int64_t cols, float* dst, std::int64_t dst_ld);

  /// dst[r, c] += src[r, c] for rows x cols values with their own row strides (src_ld 0: the
  /// same src row added to every dst row).
  virtual void add_rows(const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols,
                        float* dst, std::int64_t dst_ld);

  /// dst[r, c] *= scale for rows x cols values with row stride dst_ld (BART's embed_scale).
  virtual void scale_rows(float* dst, std::int64_t rows, std::int64_t cols, std::int64_t dst_ld, float scale);

  /// Windows of a zero-padded feature map: src (batch, height, width, channels) rows to dst
  /// (batch, wy, wx, window, window, channels) with wy = ceil(height / window), wx likewise: the
  /// window x window tiles in row-major order, each tile's tokens row-major; positions beyond the
  /// map are zeros.
  virtual void window_partition(const float* src, std::int64_t batch, std::int64_t height, std::int64_t width,
                                std::int64_t channels, std::int64_t window, float* dst);
  /// The inverse of window_partition, dropping the padding: dst (batch, height, width, channels)
  /// = the windows' rows at their positions, or dst += them when `accumulate` (a residual add).
  virtual void window_merge(const float* src, std::int64_t batch, std::int64_t height, std::int64_t width,
                            std::int64_t channels, std::int64_t window, float* dst, bool accumulate);

  /// dst (cols) = the mean of `rows` rows of src (stride src_ld), accumulated in double (torch's
  /// float32 mean sums pairwise: both stay within a few ulp of the exact mean).
  virtual void mean_rows(const float* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols, float* dst);

  /// (tokens, heads * head_dim) rows at src (stride src_ld) to head-major blocks
  /// dst (heads, tokens, head_dim): each head's keys or values then read sequentially. The
  /// bf16 form rounds to nearest even (f32_to_bf16).
  virtual void split_heads(const float* src, std::int64_t src_ld, std::int64_t tokens,
                           std::int64_t heads, std::int64_t head_dim, float* dst);
  virtual void split_heads_bf16(const float* src, std::int64_t src_ld, std::int64_t tokens,
                                std::int64_t heads, std::int64_t head_dim, std::uint16_t* dst);
};

/// oneDNN on the CPU engine: the production backend.
std::unique_ptr<Backend> make_onednn_backend();

/// Naive loops in double precision accumulation: the reference the op-parity tests compare to.
std::unique_ptr<Backend> make_reference_backend();

}  // namespace xcaption
