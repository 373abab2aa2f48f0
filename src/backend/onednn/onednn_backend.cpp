// The production backend: every kernel is a oneDNN 2.6 primitive on the CPU engine.
//
// Primitives are created on first use for a given shape and configuration and kept in a hash map
// together with the dnnl::memory objects they run on and a ready-made argument array. A call after
// the first only swaps data pointers into those memory objects and executes through the C API,
// which takes the argument array as is (the C++ execute() would build a std::vector and an
// unordered_map per call). All primitives share one user-managed scratchpad.
//
// Not thread-safe: one backend instance serves one thread at a time.
#include "src/backend/onednn/onednn_backend.hpp"

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <xcaption/errors.hpp>

#include "src/backend/backend.hpp"
#include "src/backend/onednn/small_m.hpp"
#include "src/backend/target_clones.hpp"
#include "src/tensor/tensor.hpp"

namespace xcaption {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;
constexpr auto kBF16 = memory::data_type::bf16;

const char* activation_name(Activation act) {
  switch (act) {
    case Activation::None: return "none";
    case Activation::GeluErf: return "gelu_erf";
    case Activation::GeluTanh: return "gelu_tanh";
  }
  return "?";
}

std::string describe_md(const memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  std::string s = "dims";
  for (int i = 0; i < d.ndims; ++i) {
    s += i ? 'x' : ' ';
    s += std::to_string(d.dims[i]);
  }
  if (d.format_kind != dnnl_blocked) return s + " (non-blocked format)";
  const auto& b = d.format_desc.blocking;
  s += " strides";
  for (int i = 0; i < d.ndims; ++i) {
    s += i ? ',' : ' ';
    s += std::to_string(b.strides[i]);
  }
  if (b.inner_nblks > 0) {
    s += " blocks";
    for (int i = 0; i < b.inner_nblks; ++i) {
      s += i ? ',' : ' ';
      s += static_cast<char>('a' + b.inner_idxs[i]);
      s += std::to_string(b.inner_blks[i]);
    }
  }
  s += " (";
  s += std::to_string(md.get_size());
  s += " bytes)";
  return s;
}

// A linear layer whose weights live in the layout oneDNN chose for (m_hint, in) x (in, out).
class OnednnLinear : public PreparedLinear {
 public:
  OnednnLinear(std::int64_t in, std::int64_t out) : PreparedLinear(in, out) {}
  memory weights;            // (in, out) in the prepared layout
  memory bias;               // (1, out), empty when the layer has none
  int format_id = -1;        // index of the prepared layout in the backend's layout table
  bool bf16 = false;         // weights are bf16; inputs are converted to bf16 per call
  bool small_m = false;      // the packed layout is one the small-M kernels read
  std::int64_t padded_in = 0;
  mutable memory plain_weights;  // (in, out) row-major, made on first need by a fallback primitive
};

// A convolution whose weights live in the layout oneDNN chose for the hinted input size.
class OnednnConv : public PreparedConv {
 public:
  OnednnConv(const Conv2dShape& shape, ImageLayout src_layout) : PreparedConv(shape, src_layout) {}
  memory weights;                // (out, in / groups, k, k) or (groups, out / g, in / g, k, k), prepared layout
  memory bias;                   // (out), empty when the layer has none
  int format_id = -1;            // index of the prepared layout in the backend's layout table
  mutable memory other_weights;  // the weights in a layout some other primitive wants, made on first need
};

enum class Op : std::int64_t {
  Linear = 1, BatchedMatmul, Softmax, LayerNorm, LogSoftmax, Eltwise, AttnMatmul, AttnSoftmaxBf16, Conv
};

// Every parameter that changes the primitive, padded with zeros. The thread count is part of it:
// oneDNN fixes the number of threads (and the scratchpad size) when the primitive is created.
struct Key {
  std::array<std::int64_t, 18> v{};
  bool operator==(const Key&) const = default;
};

struct KeyHash {
  std::size_t operator()(const Key& k) const noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ull;
    for (std::int64_t x : k.v) {
      h ^= static_cast<std::uint64_t>(x) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    }
    return static_cast<std::size_t>(h);
  }
};

std::int64_t float_bits(float f) { return std::bit_cast<std::uint32_t>(f); }
float bf16_bits(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

// A cached primitive with the memory objects it executes on. args[] points at those objects (or, for
// linear weights and bias, at the layer's own ones, patched per call).
struct Entry {
  dnnl::primitive primitive;
  std::array<dnnl_exec_arg_t, 8> args{};
  int nargs = 0;
  memory src, weights, dst, scale, shift, scratchpad, residual;
  int weights_slot = -1, bias_slot = -1;
  memory::desc weights_md;  // convolutions: the weights layout the primitive was created for
  // Convolutions whose kernel wants another source layout: the caller's source and its reorder.
  memory user_src;
  dnnl::primitive src_reorder;
  std::array<dnnl_exec_arg_t, 2> reorder_args{};
  bool uses_plain_weights = false;
  bool bf16_input = false;  // the float32 input is rounded into the bf16 workspace first

  int bind(int arg, dnnl_memory_t mem) {
    args[static_cast<std::size_t>(nargs)] = {arg, mem};
    return nargs++;
  }
};

// float32 -> bfloat16 (f32_to_bf16 of src/tensor, AVX512-BF16 where the CPU has it) over
// threads for long arrays. Replaces a reorder primitive per linear call, whose fixed cost
// dominated at M = 1.
void to_bf16(const float* src, std::uint16_t* dst, std::int64_t n) {
  constexpr std::int64_t kChunk = 1 << 16;  // below this, threads cost more than they save
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t begin = c * kChunk;
    f32_to_bf16(src + begin, dst + begin, std::min(kChunk, n - begin));
  }
}

float widen(float x) { return x; }
float widen(std::uint16_t x) { return std::bit_cast<float>(static_cast<std::uint32_t>(x) << 16); }

// The decoder's attention for one query row per sequence (Backend::one_query_attention), on keys
// and values of type T (float, or bf16 bits). Inlined into the clones below, which give the dot
// products and the weighted sums full-width vectors; the library itself is built for baseline
// x86-64.
template <class T>
[[gnu::always_inline]] inline void one_query_attention_body(const OneQueryAttention& a, const T* keys, const T* values) {
  const std::int64_t tasks = a.rows * a.heads, hd = a.head_dim, n = a.n;
  // Each (row, head) is a few thousand FLOPs: threads pay off only for long sequences.
  const bool parallel = tasks > 1 && tasks * n * hd >= (1 << 16);
#pragma omp parallel for schedule(static) if (parallel)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t r = t / a.heads, h = t % a.heads;
    const float* q = a.q + r * a.q_ld + h * hd;
    const T* k = keys + r * a.kv_row_stride + h * a.kv_head_stride;
    const T* v = values + r * a.kv_row_stride + h * a.kv_head_stride;
    float* s = a.scores + t * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t j = 0; j < n; ++j) {
      const T* kj = k + j * a.kv_ld;
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (std::int64_t c = 0; c < hd; ++c) dot += q[c] * widen(kj[c]);
      s[j] = dot * a.scale;
      mx = std::max(mx, s[j]);
    }
    float sum = 0;
    for (std::int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
    const float inv = 1.0f / sum;
    float* out = a.out + r * a.out_ld + h * hd;
    for (std::int64_t c = 0; c < hd; ++c) out[c] = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const float p = s[j] *= inv;
      const T* vj = v + j * a.kv_ld;
#pragma omp simd
      for (std::int64_t c = 0; c < hd; ++c) out[c] += p * widen(vj[c]);
    }
  }
}

XCAPTION_TARGET_CLONES("avx512f", "avx2", "fma", "default")
void one_query_attention_kernel(const OneQueryAttention& a) {
  one_query_attention_body(a, a.k, a.v);
}

XCAPTION_TARGET_CLONES("avx512f", "avx2", "fma", "default")
void one_query_attention_kernel_bf16(const OneQueryAttention& a) {
  one_query_attention_body(a, a.k16, a.v16);
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// Storage of prepared weights: 64-byte aligned slices of large 2 MiB-aligned chunks that ask the
// kernel for transparent huge pages. A decoding step streams every weight once; with 4 KiB pages
// the TLB misses of that stream cost about 15% of the achievable bandwidth on this class of machine.
// Slices are never freed one by one: the chunks go with the backend. Pages of a chunk that no slice
// reached are never touched, so they cost address space, not memory.
class WeightArena {
 public:
  WeightArena() = default;
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;
  ~WeightArena() {
    for (void* p : chunks_) std::free(p);
  }

  void* allocate(std::size_t bytes) {
    bytes = round_up(std::max<std::size_t>(bytes, 1), 64);
    if (bytes > kChunk / 4) return new_chunk(round_up(bytes, kHugePage));  // its own chunk
    if (bytes > remaining_) {
      cursor_ = static_cast<char*>(new_chunk(kChunk));
      remaining_ = kChunk;
    }
    void* p = cursor_;
    cursor_ += bytes;
    remaining_ -= bytes;
    return p;
  }

 private:
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  static constexpr std::size_t kChunk = std::size_t{64} << 20;
  static std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

  void* new_chunk(std::size_t bytes) {
    void* p = std::aligned_alloc(kHugePage, bytes);
    if (!p) throw BackendError("oneDNN backend: could not allocate " + std::to_string(bytes) + " bytes for weights");
    ::madvise(p, bytes, MADV_HUGEPAGE);  // advisory: without THP the pages are simply 4 KiB ones
    chunks_.push_back(p);
    return p;
  }

  std::vector<void*> chunks_;
  char* cursor_ = nullptr;
  std::size_t remaining_ = 0;
};

class OnednnBackend : public Backend {
 public:
  explicit OnednnBackend(onednn::BackendOptions options)
      : options_(std::move(options)),
        engine_(dnnl::engine::kind::cpu, 0),
        stream_(engine_),
        default_threads_(omp_get_max_threads()),
        threads_(default_threads_) {}

  std::string name() const override { return "onednn"; }

  void set_threads(int threads) override {
    threads_ = threads > 0 ? threads : default_threads_;
    omp_set_num_threads(threads_);
  }

  void set_precision(Precision precision) override { precision_ = precision; }
  Precision precision() const override { return precision_; }

  std::unique_ptr<PreparedLinear> prepare_linear(const float* weight, WeightLayout layout,
                                                 std::int64_t in, std::int64_t out,
                                                 const float* bias, std::int64_t m_hint) override {
    sync_threads();
    const std::int64_t m = std::max<std::int64_t>(m_hint, 1);
    auto layer = std::make_unique<OnednnLinear>(in, out);
    layer->bf16 = precision_ == Precision::BF16;
    const auto wdt = layer->bf16 ? kBF16 : kF32;
    try {
      // Ask oneDNN which weight layout it wants for the usual row count, then pack once (a
      // reorder to bf16 rounds to nearest even).
      const memory::desc src_md({m, in}, wdt, Tag::ab);
      const memory::desc dst_md({m, out}, kF32, Tag::ab);
      const memory::desc any_md({in, out}, wdt, Tag::any);
      const memory::desc bias_md({1, out}, kF32, Tag::ab);
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const auto desc = bias ? dnnl::matmul::desc(src_md, any_md, bias_md, dst_md)
                             : dnnl::matmul::desc(src_md, any_md, dst_md);
      const dnnl::matmul::primitive_desc pd(desc, attr, engine_);
      const memory::desc packed_md = pd.weights_desc();

      // The checkpoint's (out, in) storage is the (in, out) matrix with swapped strides.
      const memory::desc user_md({in, out}, kF32,
                                 layout == WeightLayout::InOut ? Tag::ab : Tag::ba);
      memory user(user_md, engine_, const_cast<float*>(weight));
      layer->weights = memory(packed_md, engine_, weight_arena_.allocate(packed_md.get_size()));
      dnnl::reorder(user, layer->weights).execute(stream_, user, layer->weights);
      stream_.wait();

      if (bias) {
        layer->bias = memory(bias_md, engine_);
        std::memcpy(layer->bias.get_data_handle(), bias, static_cast<std::size_t>(out) * sizeof(float));
      }
      layer->format_id = layout_id(packed_md);
      // BA16a64b (f32) or BA16a64b2a (bf16) with 64-column blocks of padded_in rows each: what
      // the small-M kernels read.
      const dnnl_memory_desc_t& d = packed_md.data;
      const auto& blk = d.format_desc.blocking;
      const std::int64_t row_block = layer->bf16 ? 32 : 16;
      layer->padded_in = d.padded_dims[0];
      layer->small_m =
          options_.small_m_kernels && onednn::small_m_supported(layer->bf16) &&
          d.format_kind == dnnl_blocked && d.offset0 == 0 && blk.inner_nblks == (layer->bf16 ? 3 : 2) &&
          blk.inner_blks[0] == 16 && blk.inner_idxs[0] == 0 && blk.inner_blks[1] == 64 &&
          blk.inner_idxs[1] == 1 && (!layer->bf16 || (blk.inner_blks[2] == 2 && blk.inner_idxs[2] == 0)) &&
          blk.strides[0] == row_block * 64 && blk.strides[1] == d.padded_dims[0] * 64 &&
          d.padded_dims[0] % row_block == 0;

    } catch (const dnnl::error& e) {
      throw BackendError("oneDNN could not prepare linear weights (in " + std::to_string(in) +
                         ", out " + std::to_string(out) + ", m_hint " + std::to_string(m_hint) +
                         "): " + e.what());
    }
    return layer;
  }

  void linear(const PreparedLinear& prepared, const float* src, std::int64_t m, float* dst,
              Activation act, bool accumulate) override {
    const auto* layer = dynamic_cast<const OnednnLinear*>(&prepared);
    if (!layer) throw BackendError("oneDNN linear: the layer was prepared by another backend");
    if (m == 0) return;
    sync_threads();
    if (layer->small_m && m <= onednn::kSmallMMaxRows && (act == Activation::None || !accumulate)) {
      small_m_linear(*layer, src, m, dst, act, accumulate);
      return;
    }
    Entry& e = linear_entry(*layer, m, act, accumulate);
    if (e.bf16_input) {
      to_bf16(src, static_cast<std::uint16_t*>(bf16_workspace_.get()), m * layer->in_features());
      e.src.set_data_handle(bf16_workspace_.get());
    } else {
      e.src.set_data_handle(const_cast<float*>(src));
    }
    e.dst.set_data_handle(dst);
    e.args[static_cast<std::size_t>(e.weights_slot)].memory =
        e.uses_plain_weights ? plain_weights(*layer).get() : layer->weights.get();
    if (e.bias_slot >= 0) e.args[static_cast<std::size_t>(e.bias_slot)].memory = layer->bias.get();
    execute(e, "linear");
  }

  void small_m_linear(const OnednnLinear& layer, const float* src, std::int64_t m, float* dst,
                      Activation act, bool accumulate) {
    const std::int64_t in = layer.in_features(), out = layer.out_features();
    onednn::SmallMWeights w{layer.weights.get_data_handle(), in, out, layer.padded_in, layer.bf16};
    const float* bias = layer.bias ? static_cast<const float*>(layer.bias.get_data_handle()) : nullptr;
    onednn::small_m_linear(w, src, in, m, bias, dst, accumulate);
    if (act != Activation::None) eltwise(dst, m, out, act);
    ++stats_.small_m_calls;
  }

  // In-place GELU of rows x n values (the activation the small-M kernels leave to oneDNN).
  void eltwise(float* data, std::int64_t rows, std::int64_t n, Activation act) {
    const Key key{{static_cast<std::int64_t>(Op::Eltwise), rows, n, static_cast<std::int64_t>(act), threads_}};
    Entry* e = find(key);
    if (!e) {
      const std::string what = std::string("eltwise ") + activation_name(act) + " (rows " + std::to_string(rows) +
                               ", n " + std::to_string(n) + ")";
      e = &create(key, what, [&](Entry& entry) {
        const memory::desc md({rows, n}, kF32, Tag::ab);
        const auto alg = act == Activation::GeluErf ? dnnl::algorithm::eltwise_gelu_erf
                                                    : dnnl::algorithm::eltwise_gelu_tanh;
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        const dnnl::eltwise_forward::primitive_desc pd(
            dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, alg, md, 0.0f, 0.0f), attr, engine_);
        entry.primitive = dnnl::eltwise_forward(pd);
        entry.src = memory(md, engine_, nullptr);
        entry.bind(DNNL_ARG_SRC, entry.src.get());
        entry.bind(DNNL_ARG_DST, entry.src.get());
        return dnnl::primitive_desc(pd);
      });
    }
    e->src.set_data_handle(data);
    execute(*e, "eltwise");
  }

  void weight_column(const PreparedLinear& prepared, std::int64_t o, float* dst) override {
    const auto* layer = dynamic_cast<const OnednnLinear*>(&prepared);
    if (!layer) throw BackendError("oneDNN weight_column: the layer was prepared by another backend");
    const dnnl_memory_desc_t& d = layer->weights.get_desc().data;
    if (d.format_kind != dnnl_blocked)
      throw BackendError("oneDNN weight_column: the prepared weights are not in a blocked layout");
    const auto& b = d.format_desc.blocking;
    // Offset of index `idx` along dimension `dim` in a blocked layout: the digits of idx in the
    // inner blocks of that dimension (innermost last) plus the outer index times its stride, as
    // oneDNN's memory_desc_wrapper::off_v computes it. Dimensions contribute independently.
    auto offset = [&b](int dim, std::int64_t idx) {
      std::int64_t off = 0, block_stride = 1;
      for (int k = b.inner_nblks - 1; k >= 0; --k) {
        if (b.inner_idxs[k] == dim) {
          off += (idx % b.inner_blks[k]) * block_stride;
          idx /= b.inner_blks[k];
        }
        block_stride *= b.inner_blks[k];
      }
      return off + idx * b.strides[dim];
    };
    const std::int64_t base = d.offset0 + offset(1, o);
    const void* data = layer->weights.get_data_handle();
    const std::int64_t in = layer->in_features();
    if (layer->bf16) {
      const auto* w = static_cast<const std::uint16_t*>(data);
      for (std::int64_t i = 0; i < in; ++i) dst[i] = bf16_bits(w[base + offset(0, i)]);
    } else {
      const auto* w = static_cast<const float*>(data);
      for (std::int64_t i = 0; i < in; ++i) dst[i] = w[base + offset(0, i)];
    }
  }

  void one_query_attention(const OneQueryAttention& a) override {
    sync_threads();
    if (a.k16)
      one_query_attention_kernel_bf16(a);
    else
      one_query_attention_kernel(a);
  }

  // The encoder's attention in bf16: Q, K and V are rounded while being copied out of their
  // interleaved rows (heads side by side, 3·D apart in the fused QKV buffer) into head-major bf16
  // blocks (H, T, d), which oneDNN's bf16 brgemm kernels take as dense batches; the softmax reads
  // float32 scores and writes bf16 probabilities. Float32 runs the default (strided views, no
  // copies): head-major copies measured no faster there.
  void block_attention(const BlockAttention& a) override {
    if (a.precision != Precision::BF16 || a.tq <= kBf16ExactInputRows) {
      Backend::block_attention(a);
      return;
    }
    sync_threads();
    const std::int64_t heads = a.heads, tq = a.tq, tk = a.tk, hd = a.head_dim;
    auto align = [](std::int64_t elements, std::size_t size) {
      return (static_cast<std::size_t>(elements) * size + 63) / 64 * 64;
    };
    const std::size_t q_bytes = align(heads * tq * hd, 2), kv_bytes = align(heads * tk * hd, 2);
    const std::size_t p_bytes = align(heads * tq * tk, 2), ctx_bytes = align(heads * tq * hd, 4);
    const std::size_t need = q_bytes + 2 * kv_bytes + p_bytes + ctx_bytes;
    if (need > attention_workspace_bytes_)
      grow(attention_workspace_, attention_workspace_bytes_, need, "attention workspace");
    char* base = static_cast<char*>(attention_workspace_.get());
    auto* qh = reinterpret_cast<std::uint16_t*>(base);
    auto* kh = reinterpret_cast<std::uint16_t*>(base + q_bytes);
    auto* vh = reinterpret_cast<std::uint16_t*>(base + q_bytes + kv_bytes);
    auto* ph = reinterpret_cast<std::uint16_t*>(base + q_bytes + 2 * kv_bytes);
    auto* ctx = reinterpret_cast<float*>(base + q_bytes + 2 * kv_bytes + p_bytes);

    // One task per tensor and head: rows of d floats -> (H, rows, d) bf16.
#pragma omp parallel for schedule(static)
    for (std::int64_t t = 0; t < 3 * heads; ++t) {
      const std::int64_t which = t / heads, h = t % heads, rows = which == 0 ? tq : tk;
      const float* src = which == 0 ? a.q : which == 1 ? a.k : a.v;
      const std::int64_t ld = which == 0 ? a.q_ld : which == 1 ? a.k_ld : a.v_ld;
      std::uint16_t* dst = (which == 0 ? qh : which == 1 ? kh : vh) + h * rows * hd;
      for (std::int64_t r = 0; r < rows; ++r) f32_to_bf16(src + r * ld + h * hd, dst + r * hd, hd);
    }

    // scores (H, tq, tk) = scale · Q · Kᵀ, Kᵀ read as a transposed view of the (H, tk, d) block.
    Entry& scores = attention_matmul_entry(heads, tq, tk, hd, Strided3{tk * hd, 1, hd}, a.scale);
    scores.src.set_data_handle(qh);
    scores.weights.set_data_handle(kh);
    scores.dst.set_data_handle(a.scores);
    execute(scores, "attention scores");
    Entry& softmax = softmax_v2_entry(Op::AttnSoftmaxBf16, heads * tq, tk);
    softmax.src.set_data_handle(a.scores);
    softmax.dst.set_data_handle(ph);
    execute(softmax, "attention softmax");
    // context (H, tq, d) = P · V, then back to heads side by side.
    Entry& context = attention_matmul_entry(heads, tq, hd, tk, Strided3{tk * hd, hd, 1}, 1.0f);
    context.src.set_data_handle(ph);
    context.weights.set_data_handle(vh);
    context.dst.set_data_handle(ctx);
    execute(context, "attention context");
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < tq; ++r)
      for (std::int64_t h = 0; h < heads; ++h)
        std::memcpy(a.out + r * a.out_ld + h * hd, ctx + (h * tq + r) * hd, static_cast<std::size_t>(hd) * sizeof(float));
  }

  std::unique_ptr<PreparedConv> prepare_conv2d(const Conv2dShape& shape, ImageLayout src_layout,
                                               const float* weight, const float* bias,
                                               std::int64_t height_hint, std::int64_t width_hint) override {
    sync_threads();
    auto conv = std::make_unique<OnednnConv>(shape, src_layout);
    try {
      // Ask oneDNN which weight layout it wants for one image of the hinted size, then reorder
      // the checkpoint's weights into it once.
      const std::int64_t h = std::max<std::int64_t>(height_hint, shape.kernel);
      const std::int64_t w = std::max<std::int64_t>(width_hint, shape.kernel);
      const memory::desc plain_md = plain_conv_weights_md(shape);
      const auto pd = conv_pd(shape, conv_src_md(shape, src_layout, 1, h, w), 1, h, w, conv_weights_any_md(shape),
                              bias != nullptr, false);
      if (!pd) throw dnnl::error(dnnl_unimplemented, "no convolution implementation");
      const memory::desc packed_md = pd.weights_desc();
      memory user(plain_md, engine_, const_cast<float*>(weight));
      conv->weights = memory(packed_md, engine_, weight_arena_.allocate(packed_md.get_size()));
      dnnl::reorder(user, conv->weights).execute(stream_, user, conv->weights);
      stream_.wait();
      if (bias) {
        conv->bias = memory(memory::desc({shape.out}, kF32, Tag::a), engine_);
        std::memcpy(conv->bias.get_data_handle(), bias, static_cast<std::size_t>(shape.out) * sizeof(float));
      }
      conv->format_id = layout_id(packed_md);
    } catch (const dnnl::error& e) {
      throw BackendError("oneDNN could not prepare convolution weights (" + describe_conv(shape, src_layout, 1, height_hint, width_hint) + "): " + e.what());
    }
    return conv;
  }

  void conv2d(const PreparedConv& prepared, const float* src, std::int64_t batch, std::int64_t height,
              std::int64_t width, const float* residual, float* dst) override {
    const auto* conv = dynamic_cast<const OnednnConv*>(&prepared);
    if (!conv) throw BackendError("oneDNN conv2d: the convolution was prepared by another backend");
    sync_threads();
    const Conv2dShape& s = conv->shape();
    const bool has_bias = static_cast<bool>(conv->bias), add = residual != nullptr;
    const Key key{{static_cast<std::int64_t>(Op::Conv), s.in, s.out, s.kernel, s.stride, s.padding, s.groups,
                   static_cast<std::int64_t>(conv->src_layout()), batch, height, width, has_bias, add,
                   conv->format_id, threads_}};
    Entry* e = find(key);
    if (!e) {
      const std::string what = "conv2d (" + describe_conv(s, conv->src_layout(), batch, height, width) +
                               (add ? ", + residual)" : ")");
      e = &create(key, what, [&](Entry& entry) {
        // Weights in whatever layout the kernel wants (the prepared one, or a reorder of it made
        // once per layer). Where only the reference kernel takes the caller's source layout (a
        // 3-channel NCHW image into NHWC), let oneDNN pick the source layout and reorder into it.
        const memory::desc user_src = conv_src_md(s, conv->src_layout(), batch, height, width);
        auto pd = conv_pd(s, user_src, batch, height, width, conv_weights_any_md(s), has_bias, add);
        if (!pd || is_reference(pd)) {
          const memory::desc any_src({batch, s.in, height, width}, kF32, Tag::any);
          auto alt = conv_pd(s, any_src, batch, height, width, conv_weights_any_md(s), has_bias, add);
          if (alt && !is_reference(alt)) pd = alt;
        }
        if (!pd) throw dnnl::error(dnnl_unimplemented, "no convolution implementation");
        if (pd.src_desc() != user_src) {
          entry.user_src = memory(user_src, engine_, nullptr);
          entry.src = memory(pd.src_desc(), engine_, nullptr);
          entry.src_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, user_src, engine_, pd.src_desc()));
          entry.reorder_args = {{{DNNL_ARG_SRC, entry.user_src.get()}, {DNNL_ARG_DST, entry.src.get()}}};
          const std::size_t need = pd.src_desc().get_size();
          if (need > conv_workspace_bytes_) grow(conv_workspace_, conv_workspace_bytes_, need, "convolution source workspace");
        }
        entry.primitive = dnnl::convolution_forward(pd);
        entry.weights_md = pd.weights_desc();
        if (!entry.src) entry.src = memory(pd.src_desc(), engine_, nullptr);
        entry.dst = memory(pd.dst_desc(), engine_, nullptr);
        entry.bind(DNNL_ARG_SRC, entry.src.get());
        entry.weights_slot = entry.bind(DNNL_ARG_WEIGHTS, nullptr);
        if (has_bias) entry.bias_slot = entry.bind(DNNL_ARG_BIAS, nullptr);
        entry.bind(DNNL_ARG_DST, entry.dst.get());
        if (add) {
          entry.residual = memory(pd.dst_desc(), engine_, nullptr);
          entry.bind(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, entry.residual.get());
        }
        return dnnl::primitive_desc(pd);
      });
    }
    if (e->user_src) {
      e->user_src.set_data_handle(const_cast<float*>(src));
      e->src.set_data_handle(conv_workspace_.get());
      run(e->src_reorder, e->reorder_args.data(), 2, "conv2d source reorder");
    } else {
      e->src.set_data_handle(const_cast<float*>(src));
    }
    e->dst.set_data_handle(dst);
    if (add) e->residual.set_data_handle(const_cast<float*>(residual));
    e->args[static_cast<std::size_t>(e->weights_slot)].memory = conv_weights(*conv, e->weights_md).get();
    if (e->bias_slot >= 0) e->args[static_cast<std::size_t>(e->bias_slot)].memory = conv->bias.get();
    execute(*e, "conv2d");
  }

  void batched_matmul(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                      const float* a, Strided3 a_strides, const float* b, Strided3 b_strides,
                      float* c, Strided3 c_strides, float alpha) override {
    if (batch == 0 || m == 0 || n == 0) return;
    sync_threads();
    const Strided3 as = normalize(batch, m, k, a_strides);
    const Strided3 bs = normalize(batch, k, n, b_strides);
    const Strided3 cs = normalize(batch, m, n, c_strides);
    const Key key{{static_cast<std::int64_t>(Op::BatchedMatmul), batch, m, n, k, as.batch, as.row,
                   as.col, bs.batch, bs.row, bs.col, cs.batch, cs.row, cs.col, float_bits(alpha),
                   threads_}};
    Entry* e = find(key);
    if (!e) {
      const std::string what = "batched_matmul (batch " + std::to_string(batch) + ", m " +
                               std::to_string(m) + ", n " + std::to_string(n) + ", k " +
                               std::to_string(k) + ")";
      // A batch stride of 0 broadcasts that operand: oneDNN expresses it as a batch dim of 1.
      e = &create_matmul(key, what, strided_md(batch, m, k, as), strided_md(batch, k, n, bs),
                         strided_md(batch, m, n, cs), alpha);
    }
    e->src.set_data_handle(const_cast<float*>(a));
    e->weights.set_data_handle(const_cast<float*>(b));
    e->dst.set_data_handle(c);
    execute(*e, "batched_matmul");
  }

  void softmax(float* data, std::int64_t rows, std::int64_t n, std::int64_t ld) override {
    if (rows == 0 || n == 0) return;
    sync_threads();
    if (rows == 1) ld = n;
    // oneDNN 2.6 runs softmax on rows with ld > n only in its reference kernel (about 50x slower
    // than the jit one at 12x197x197), so such rows are packed into a dense workspace, normalised
    // there and copied back; the padding between rows is never touched.
    const bool pack = ld > n && !options_.softmax_on_strided_rows;
    Entry& e = softmax_entry(rows, n, pack ? n : ld);
    if (!pack) {
      e.src.set_data_handle(data);
      execute(e, "softmax");
      return;
    }
    const std::size_t need = static_cast<std::size_t>(rows * n) * sizeof(float);
    if (need > workspace_bytes_) grow(workspace_, workspace_bytes_, need, "softmax workspace");
    auto* packed = static_cast<float*>(workspace_.get());
    const std::size_t row_bytes = static_cast<std::size_t>(n) * sizeof(float);
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(packed + r * n, data + r * ld, row_bytes);
    e.src.set_data_handle(packed);
    execute(e, "softmax");
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(data + r * ld, packed + r * n, row_bytes);
  }

  void log_softmax(const float* src, float* dst, std::int64_t rows, std::int64_t n) override {
    if (rows == 0 || n == 0) return;
    sync_threads();
    Entry& e = softmax_v2_entry(Op::LogSoftmax, rows, n);
    e.src.set_data_handle(const_cast<float*>(src));
    e.dst.set_data_handle(dst);
    execute(e, "log_softmax");
  }

  void layer_norm(const float* src, float* dst, std::int64_t rows, std::int64_t n,
                  const float* gamma, const float* beta, float eps) override {
    if (rows == 0 || n == 0) return;
    sync_threads();
    const Key key{{static_cast<std::int64_t>(Op::LayerNorm), rows, n, float_bits(eps), threads_}};
    Entry* e = find(key);
    if (!e) {
      const std::string what = "layer_norm (rows " + std::to_string(rows) + ", n " +
                               std::to_string(n) + ", eps " + std::to_string(eps) + ")";
      e = &create(key, what, [&](Entry& entry) {
        const memory::desc md({rows, n}, kF32, Tag::ab);
        const memory::desc vec_md({n}, kF32, Tag::a);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        const dnnl::layer_normalization_forward::primitive_desc pd(
            dnnl::layer_normalization_forward::desc(
                dnnl::prop_kind::forward_inference, md, eps,
                dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift),
            attr, engine_);
        entry.primitive = dnnl::layer_normalization_forward(pd);
        entry.src = memory(md, engine_, nullptr);
        entry.dst = memory(md, engine_, nullptr);
        entry.scale = memory(vec_md, engine_, nullptr);
        entry.shift = memory(vec_md, engine_, nullptr);
        entry.bind(DNNL_ARG_SRC, entry.src.get());
        entry.bind(DNNL_ARG_DST, entry.dst.get());
        entry.bind(DNNL_ARG_SCALE, entry.scale.get());
        entry.bind(DNNL_ARG_SHIFT, entry.shift.get());
        return dnnl::primitive_desc(pd);
      });
    }
    e->src.set_data_handle(const_cast<float*>(src));
    e->dst.set_data_handle(dst);
    e->scale.set_data_handle(const_cast<float*>(gamma));
    e->shift.set_data_handle(const_cast<float*>(beta));
    execute(*e, "layer_norm");
  }

  onednn::BackendStats stats() const {
    onednn::BackendStats s = stats_;
    s.scratchpad_bytes = static_cast<std::int64_t>(scratchpad_bytes_);
    return s;
  }

 private:
  // omp_set_num_threads only sets the calling thread's value; re-apply it if the backend is used
  // from another thread or someone else changed it.
  void sync_threads() {
    if (omp_get_max_threads() != threads_) omp_set_num_threads(threads_);
  }

  static std::string describe_conv(const Conv2dShape& s, ImageLayout layout, std::int64_t batch, std::int64_t height,
                                   std::int64_t width) {
    return std::to_string(batch) + "x" + std::to_string(s.in) + "x" + std::to_string(height) + "x" +
           std::to_string(width) + (layout == ImageLayout::NCHW ? " nchw" : " nhwc") + " -> " + std::to_string(s.out) +
           ", kernel " + std::to_string(s.kernel) + ", stride " + std::to_string(s.stride) + ", padding " +
           std::to_string(s.padding) + ", groups " + std::to_string(s.groups);
  }

  // torch's Conv2d weight as oneDNN sees it: (out, in, k, k), or grouped (g, out/g, in/g, k, k).
  static Dims conv_weight_dims(const Conv2dShape& s) {
    if (s.groups == 1) return {s.out, s.in, s.kernel, s.kernel};
    return {s.groups, s.out / s.groups, s.in / s.groups, s.kernel, s.kernel};
  }
  static memory::desc plain_conv_weights_md(const Conv2dShape& s) {
    return memory::desc(conv_weight_dims(s), kF32, s.groups == 1 ? Tag::oihw : Tag::goihw);
  }
  static memory::desc conv_weights_any_md(const Conv2dShape& s) {
    return memory::desc(conv_weight_dims(s), kF32, Tag::any);
  }

  // The primitive descriptor of one convolution (empty when oneDNN has no implementation for
  // these descriptors). dst is NHWC; `add` appends a binary add of a second NHWC tensor.
  static memory::desc conv_src_md(const Conv2dShape& s, ImageLayout layout, std::int64_t batch, std::int64_t height,
                                  std::int64_t width) {
    return memory::desc({batch, s.in, height, width}, kF32, layout == ImageLayout::NCHW ? Tag::nchw : Tag::nhwc);
  }
  static bool is_reference(const dnnl::primitive_desc& pd) {
    return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
  }

  dnnl::convolution_forward::primitive_desc conv_pd(const Conv2dShape& s, const memory::desc& src_md, std::int64_t batch,
                                                    std::int64_t height, std::int64_t width,
                                                    const memory::desc& weights_md, bool bias, bool add) {
    const memory::desc dst_md({batch, s.out, s.out_size(height), s.out_size(width)}, kF32, Tag::nhwc);
    const memory::desc bias_md({s.out}, kF32, Tag::a);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (add) {
      dnnl::post_ops ops;
      ops.append_binary(dnnl::algorithm::binary_add, dst_md);
      attr.set_post_ops(ops);
    }
    const Dims strides{s.stride, s.stride}, padding{s.padding, s.padding};
    const auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                             dnnl::algorithm::convolution_direct, src_md, weights_md,
                                                             bias_md, dst_md, strides, padding, padding)
                           : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                             dnnl::algorithm::convolution_direct, src_md, weights_md,
                                                             dst_md, strides, padding, padding);
    return dnnl::convolution_forward::primitive_desc(desc, attr, engine_, /*allow_empty=*/true);
  }

  // The layer's weights in layout `md`: the prepared ones, or a reorder of them.
  const memory& conv_weights(const OnednnConv& conv, const memory::desc& md) {
    if (conv.weights.get_desc() == md) return conv.weights;
    if (!conv.other_weights || conv.other_weights.get_desc() != md) {
      try {
        memory packed = conv.weights;
        memory other(md, engine_);
        dnnl::reorder(packed, other).execute(stream_, packed, other);
        stream_.wait();
        conv.other_weights = other;
      } catch (const dnnl::error& e) {
        throw BackendError(std::string("oneDNN could not reorder convolution weights: ") + e.what());
      }
    }
    return conv.other_weights;
  }

  int layout_id(const memory::desc& md) {
    for (std::size_t i = 0; i < layouts_.size(); ++i)
      if (layouts_[i] == md) return static_cast<int>(i);
    layouts_.push_back(md);
    return static_cast<int>(layouts_.size() - 1);
  }

  Entry* find(const Key& key) {
    auto it = cache_.find(key);
    if (it == cache_.end()) return nullptr;
    ++stats_.cache_hits;
    return &it->second;
  }

  // Builds an entry with `build` (which returns the primitive descriptor it used), attaches the
  // shared scratchpad and stores the entry under `key`. oneDNN errors become BackendError.
  template <class Build>
  Entry& create(const Key& key, const std::string& what, Build&& build) {
    Entry entry;
    try {
      const dnnl::primitive_desc pd = build(entry);
      const memory::desc scratch_md = pd.scratchpad_desc();
      const std::size_t bytes = scratch_md.get_size();
      if (bytes > 0) {
        reserve_scratchpad(bytes);
        entry.scratchpad = memory(scratch_md, engine_, nullptr);
        entry.bind(DNNL_ARG_SCRATCHPAD, entry.scratchpad.get());
      }
      stats_.created.push_back(what + " -> " + pd.impl_info_str());
    } catch (const dnnl::error& e) {
      throw BackendError("oneDNN could not create the primitive for " + what + ": " + e.what());
    }
    ++stats_.primitives_created;
    return cache_.emplace(key, std::move(entry)).first->second;
  }

  Entry& softmax_entry(std::int64_t rows, std::int64_t n, std::int64_t ld) {
    const Key key{{static_cast<std::int64_t>(Op::Softmax), rows, n, ld, threads_}};
    if (Entry* e = find(key)) return *e;
    const std::string what = "softmax (rows " + std::to_string(rows) + ", n " + std::to_string(n) +
                             ", ld " + std::to_string(ld) + ")";
    return create(key, what, [&](Entry& entry) {
      const memory::desc md({rows, n}, kF32, Dims{ld, 1});
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const dnnl::softmax_forward::primitive_desc pd(
          dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md, 1), attr, engine_);
      entry.primitive = dnnl::softmax_forward(pd);
      // In place: the same memory object is both source and destination.
      entry.src = memory(md, engine_, nullptr);
      entry.bind(DNNL_ARG_SRC, entry.src.get());
      entry.bind(DNNL_ARG_DST, entry.src.get());
      return dnnl::primitive_desc(pd);
    });
  }

  // C (batch, m, n) float32, dense = alpha · A (batch, m, k) bf16, dense · B (batch, k, n) bf16 with
  // strides b_strides. Data pointers are set per call.
  Entry& attention_matmul_entry(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                                Strided3 b_strides, float alpha) {
    const Key key{{static_cast<std::int64_t>(Op::AttnMatmul), batch, m, n, k, b_strides.batch,
                   b_strides.row, b_strides.col, float_bits(alpha), threads_}};
    if (Entry* e = find(key)) return *e;
    const std::string what = "bf16 attention matmul (batch " +
                             std::to_string(batch) + ", m " + std::to_string(m) + ", n " +
                             std::to_string(n) + ", k " + std::to_string(k) + ")";
    return create_matmul(key, what, memory::desc({batch, m, k}, kBF16, Dims{m * k, k, 1}),
                         memory::desc({batch, k, n}, kBF16, Dims{b_strides.batch, b_strides.row, b_strides.col}),
                         memory::desc({batch, m, n}, kF32, Dims{m * n, n, 1}), alpha);
  }

  // Creates and caches C = alpha · A · B on the given descriptors; data pointers are set per call.
  Entry& create_matmul(const Key& key, const std::string& what, const memory::desc& a_md,
                       const memory::desc& b_md, const memory::desc& c_md, float alpha) {
    return create(key, what, [&](Entry& entry) {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine_);
      entry.primitive = dnnl::matmul(pd);
      entry.src = memory(a_md, engine_, nullptr);
      entry.weights = memory(b_md, engine_, nullptr);
      entry.dst = memory(c_md, engine_, nullptr);
      entry.bind(DNNL_ARG_SRC, entry.src.get());
      entry.bind(DNNL_ARG_WEIGHTS, entry.weights.get());
      entry.bind(DNNL_ARG_DST, entry.dst.get());
      return dnnl::primitive_desc(pd);
    });
  }

  // Row-wise softmax_v2 from dense float32 rows to dense rows of another buffer: Op::LogSoftmax,
  // log-softmax to float32; Op::AttnSoftmaxBf16, softmax written as bfloat16 (the probabilities
  // of a bf16 attention).
  Entry& softmax_v2_entry(Op op, std::int64_t rows, std::int64_t n) {
    const Key key{{static_cast<std::int64_t>(op), rows, n, threads_}};
    if (Entry* e = find(key)) return *e;
    const bool log = op == Op::LogSoftmax;
    const std::string what = std::string(log ? "log_softmax" : "softmax to bf16") + " (rows " +
                             std::to_string(rows) + ", n " + std::to_string(n) + ")";
    return create(key, what, [&](Entry& entry) {
      const memory::desc src_md({rows, n}, kF32, Tag::ab);
      const memory::desc dst_md({rows, n}, log ? kF32 : kBF16, Tag::ab);
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const dnnl::softmax_v2_forward::primitive_desc pd(
          dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference,
                                         log ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate,
                                         src_md, dst_md, 1),
          attr, engine_);
      entry.primitive = dnnl::softmax_v2_forward(pd);
      entry.src = memory(src_md, engine_, nullptr);
      entry.dst = memory(dst_md, engine_, nullptr);
      entry.bind(DNNL_ARG_SRC, entry.src.get());
      entry.bind(DNNL_ARG_DST, entry.dst.get());
      return dnnl::primitive_desc(pd);
    });
  }

  Entry& linear_entry(const OnednnLinear& layer, std::int64_t m, Activation act, bool accumulate) {
    const std::int64_t in = layer.in_features(), out = layer.out_features();
    const bool has_bias = static_cast<bool>(layer.bias);
    const Key key{{static_cast<std::int64_t>(Op::Linear), m, in, out, layer.format_id, has_bias,
                   static_cast<std::int64_t>(act), accumulate, threads_, layer.bf16}};
    if (Entry* e = find(key)) return *e;
    const std::string what = std::string(layer.bf16 ? "bf16 " : "") + "linear (m " + std::to_string(m) + ", in " + std::to_string(in) +
                             ", out " + std::to_string(out) + ", bias " + (has_bias ? "yes" : "no") +
                             ", " + activation_name(act) + (accumulate ? ", accumulate)" : ")");
    return create(key, what, [&](Entry& entry) {
      const auto wdt = layer.bf16 ? kBF16 : kF32;
      const memory::desc src_md({m, in}, wdt, Tag::ab);
      const memory::desc dst_md({m, out}, kF32, Tag::ab);
      const memory::desc bias_md({1, out}, kF32, Tag::ab);
      if (layer.bf16) {
        entry.bf16_input = true;
        const std::size_t need = src_md.get_size();
        if (need > bf16_workspace_bytes_) grow(bf16_workspace_, bf16_workspace_bytes_, need, "bf16 input workspace");
      }
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::post_ops ops;
      if (act == Activation::GeluErf) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0, 0);
      if (act == Activation::GeluTanh) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0, 0);
      // sum after the activation: dst = act(x·W + b) + dst.
      if (accumulate) ops.append_sum(1.0f);
      attr.set_post_ops(ops);
      auto make_pd = [&](const memory::desc& w_md) {
        const auto desc = has_bias ? dnnl::matmul::desc(src_md, w_md, bias_md, dst_md)
                                   : dnnl::matmul::desc(src_md, w_md, dst_md);
        return dnnl::matmul::primitive_desc(desc, attr, engine_, /*allow_empty=*/true);
      };
      const auto& refuse = options_.refuse_prepared_weights_at_m;
      dnnl::matmul::primitive_desc pd;
      if (std::find(refuse.begin(), refuse.end(), m) == refuse.end())
        pd = make_pd(layer.weights.get_desc());
      if (!pd) {
        // oneDNN does not take the packed layout for this row count: run on plain weights, which
        // each layer materialises once (see plain_weights()).
        pd = make_pd(memory::desc({in, out}, wdt, Tag::ab));
        if (!pd) throw dnnl::error(dnnl_unimplemented, "no matmul implementation for plain weights");
        entry.uses_plain_weights = true;
        ++stats_.plain_weight_primitives;
      }
      entry.primitive = dnnl::matmul(pd);
      entry.src = memory(src_md, engine_, nullptr);
      entry.dst = memory(dst_md, engine_, nullptr);
      entry.bind(DNNL_ARG_SRC, entry.src.get());
      entry.weights_slot = entry.bind(DNNL_ARG_WEIGHTS, nullptr);
      if (has_bias) entry.bias_slot = entry.bind(DNNL_ARG_BIAS, nullptr);
      entry.bind(DNNL_ARG_DST, entry.dst.get());
      return dnnl::primitive_desc(pd);
    });
  }

  const memory& plain_weights(const OnednnLinear& layer) {
    if (!layer.plain_weights) {
      try {
        const memory::desc plain_md({layer.in_features(), layer.out_features()},
                                    layer.bf16 ? kBF16 : kF32, Tag::ab);
        memory packed = layer.weights, plain(plain_md, engine_);
        dnnl::reorder(packed, plain).execute(stream_, packed, plain);
        layer.plain_weights = plain;
        stream_.wait();
      } catch (const dnnl::error& e) {
        throw BackendError(std::string("oneDNN could not unpack linear weights: ") + e.what());
      }
      ++stats_.plain_weight_copies;
    }
    return layer.plain_weights;
  }

  // Replaces `buffer` by a 64-byte aligned one of at least `bytes` (contents are not kept).
  static void grow(std::unique_ptr<void, AlignedFree>& buffer, std::size_t& capacity,
                   std::size_t bytes, const char* what) {
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw BackendError(std::string("oneDNN backend: could not allocate ") +
                               std::to_string(rounded) + " bytes for the " + what);
    buffer.reset(p);
    capacity = rounded;
  }

  void reserve_scratchpad(std::size_t bytes) {
    if (bytes > scratchpad_bytes_) grow(scratchpad_, scratchpad_bytes_, bytes, "scratchpad");
  }

  void execute(Entry& e, const char* op) {
    if (e.scratchpad) e.scratchpad.set_data_handle(scratchpad_.get());
    run(e.primitive, e.args.data(), e.nargs, op);
  }

  void run(const dnnl::primitive& p, const dnnl_exec_arg_t* args, int nargs, const char* op) {
    dnnl_status_t status = dnnl_primitive_execute(p.get(), stream_.get(), nargs, args);
    if (status == dnnl_success) status = dnnl_stream_wait(stream_.get());
    if (status != dnnl_success)
      throw BackendError(std::string("oneDNN ") + op + ": execution failed with status " +
                         std::to_string(static_cast<int>(status)));
  }

  // Rewrites the strides of size-1 dims so that oneDNN's gemm-based matmul, which wants one of the
  // two inner strides to be 1 and no zero strides, accepts every view the caller may pass.
  static Strided3 normalize(std::int64_t batch, std::int64_t rows, std::int64_t cols, Strided3 s) {
    if (rows == 1) s.row = s.col == 1 ? cols : 1;
    if (cols == 1) s.col = s.row == 1 ? rows : 1;
    if (batch == 1) s.batch = std::max<std::int64_t>({s.row * rows, s.col * cols, 1});
    return s;
  }

  static memory::desc strided_md(std::int64_t batch, std::int64_t rows, std::int64_t cols, Strided3 s) {
    const std::int64_t dim0 = (batch > 1 && s.batch == 0) ? 1 : batch;
    const std::int64_t stride0 = dim0 == 1 ? std::max<std::int64_t>({s.row * rows, s.col * cols, 1}) : s.batch;
    return memory::desc({dim0, rows, cols}, kF32, Dims{stride0, s.row, s.col});
  }

  onednn::BackendOptions options_;
  WeightArena weight_arena_;  // declared first, destroyed last: cached memory objects point into it
  dnnl::engine engine_;
  dnnl::stream stream_;
  int default_threads_;
  int threads_;
  std::unordered_map<Key, Entry, KeyHash> cache_;
  std::vector<memory::desc> layouts_;  // distinct prepared weight layouts; index = format_id
  std::unique_ptr<void, AlignedFree> scratchpad_;
  std::size_t scratchpad_bytes_ = 0;
  std::unique_ptr<void, AlignedFree> workspace_;  // packed softmax rows
  std::size_t workspace_bytes_ = 0;
  std::unique_ptr<void, AlignedFree> attention_workspace_;  // head-major Q, K, V, P and context
  std::size_t attention_workspace_bytes_ = 0;
  std::unique_ptr<void, AlignedFree> conv_workspace_;  // a convolution's reordered source
  std::size_t conv_workspace_bytes_ = 0;
  std::unique_ptr<void, AlignedFree> bf16_workspace_;  // a bf16 linear's rounded input
  std::size_t bf16_workspace_bytes_ = 0;
  Precision precision_ = Precision::F32;
  onednn::BackendStats stats_;
};

}  // namespace

std::unique_ptr<Backend> make_onednn_backend() {
  return std::make_unique<OnednnBackend>(onednn::BackendOptions{});
}

namespace onednn {

std::unique_ptr<Backend> make_backend(const BackendOptions& options) {
  return std::make_unique<OnednnBackend>(options);
}

BackendStats stats(const Backend& backend) {
  const auto* b = dynamic_cast<const OnednnBackend*>(&backend);
  if (!b) {
    std::string msg = "onednn::stats: backend '";
    msg += backend.name();
    msg += "' is not the oneDNN backend";
    throw BackendError(msg);
  }
  return b->stats();
}

std::string weight_layout(const PreparedLinear& layer) {
  const auto* l = dynamic_cast<const OnednnLinear*>(&layer);
  if (!l) throw BackendError("onednn::weight_layout: the layer was not prepared by the oneDNN backend");
  return describe_md(l->weights.get_desc());
}

}  // namespace onednn
}  // namespace xcaption
