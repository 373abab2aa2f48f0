// The fast paths of issue 5 against what they replace: bf16 linear layers against the reference
// backend's bf16 emulation and against float32 (relative L2), the one-query attention kernel and
// weight_column against the reference, the batch API against single images, and a counter of heap
// allocations in the decoding loop.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>

#include "encoders/image_processor.hpp"
#include "models/family.hpp"
#include "src/tokenizer/tokenizer.hpp"
#include "src/backend/backend.hpp"
#include "src/backend/onednn/onednn_backend.hpp"
#include "src/backend/onednn/small_m.hpp"
#include "src/backend/tsan.hpp"
#include "src/generate/generate.hpp"
#include "models/vit_gpt2/config.hpp"
#include "src/io/weights.hpp"
#include "src/ops/ops.hpp"
#include "src/tensor/tensor.hpp"

// Every C++ heap allocation of the test program is counted (libdnnl's own C++ allocations
// included). Counting is all it does: the allocation itself is malloc as usual. ThreadSanitizer's
// runtime defines the global operator new itself (a second definition does not link), so a TSan
// build (XCAPTION_TSAN, src/backend/tsan.hpp) counts nothing and the counting test says it is skipped.
namespace {
std::atomic<long> g_heap_allocations{0};
}
#ifndef XCAPTION_TSAN
void* operator new(std::size_t n) {
  g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace xcaption {
namespace {

const std::filesystem::path kData = XCAPTION_TEST_DATA;

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// ||a - b|| / ||b||
double rel_l2(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  return rel_l2(a.data(), b.data(), a.size());
}

double max_rel(const std::vector<float>& got, const std::vector<float>& ref) {
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[i]) - ref[i]));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return worst / std::max(scale, 1e-30);
}

}  // namespace

TEST_CASE("bf16 linear equals the reference's bf16 emulation and stays near float32", "[perf][ops]") {
  // Rows up to kBf16ExactInputRows multiply unrounded inputs (small-M kernels), more rows round
  // them to bf16 (oneDNN's bf16 matmul); the reference backend mirrors both.
  auto dnn = make_onednn_backend();
  auto ref = make_reference_backend();
  auto ref32 = make_reference_backend();
  dnn->set_precision(Precision::BF16);
  ref->set_precision(Precision::BF16);
  struct Case {
    std::int64_t m, in, out;
    WeightLayout layout;
    Activation act;
    bool accumulate;
  };
  const Case cases[] = {{1, 768, 2304, WeightLayout::InOut, Activation::None, false},
                        {4, 768, 3072, WeightLayout::InOut, Activation::GeluTanh, false},
                        {197, 64, 96, WeightLayout::OutIn, Activation::GeluErf, true},
                        {3, 37, 50, WeightLayout::OutIn, Activation::None, true}};
  std::uint32_t seed = 7;
  for (const auto& c : cases) {
    const auto w = randn(static_cast<std::size_t>(c.in * c.out), seed++, 0.05f);
    const auto b = randn(static_cast<std::size_t>(c.out), seed++, 0.1f);
    const auto src = randn(static_cast<std::size_t>(c.m * c.in), seed++);
    auto l_dnn = dnn->prepare_linear(w.data(), c.layout, c.in, c.out, b.data(), c.m);
    auto l_ref = ref->prepare_linear(w.data(), c.layout, c.in, c.out, b.data(), c.m);
    auto l_32 = ref32->prepare_linear(w.data(), c.layout, c.in, c.out, b.data(), c.m);
    const auto init = randn(static_cast<std::size_t>(c.m * c.out), seed++);
    auto y_dnn = init, y_ref = init, y_32 = init;
    dnn->linear(*l_dnn, src.data(), c.m, y_dnn.data(), c.act, c.accumulate);
    ref->linear(*l_ref, src.data(), c.m, y_ref.data(), c.act, c.accumulate);
    ref32->linear(*l_32, src.data(), c.m, y_32.data(), c.act, c.accumulate);
    INFO(fmt::format("m {} in {} out {}", c.m, c.in, c.out));
    // Same products; only the float32 vs double accumulation order differs.
    CHECK(max_rel(y_dnn, y_ref) <= 1e-5);
    // bf16 rounding of inputs and weights: about 2^-9 relative per factor.
    const double l2 = rel_l2(y_dnn, y_32);
    CHECK(l2 <= 1e-2);
    CHECK(l2 > 0);  // really bf16: float32 would match exactly-ish
  }
}

TEST_CASE("small-M kernels equal oneDNN matmul and the reference, f32 and bf16", "[perf][ops]") {
  onednn::BackendOptions no_small;
  no_small.small_m_kernels = false;
  for (const Precision p : {Precision::F32, Precision::BF16}) {
    auto fast = make_onednn_backend();
    auto matmul = onednn::make_backend(no_small);
    auto ref = make_reference_backend();
    for (Backend* b : {fast.get(), matmul.get(), ref.get()}) b->set_precision(p);
    struct Case {
      std::int64_t in, out;
      WeightLayout layout;
      bool bias;
    };
    for (const Case& c : {Case{768, 3072, WeightLayout::InOut, true}, Case{37, 50, WeightLayout::OutIn, true},
                          Case{63, 1000, WeightLayout::OutIn, false}, Case{96, 130, WeightLayout::InOut, true}}) {
      const auto w = randn(static_cast<std::size_t>(c.in * c.out), 31, 0.05f);
      const auto bias = randn(static_cast<std::size_t>(c.out), 32, 0.1f);
      auto lf = fast->prepare_linear(w.data(), c.layout, c.in, c.out, c.bias ? bias.data() : nullptr, 1);
      auto lm = matmul->prepare_linear(w.data(), c.layout, c.in, c.out, c.bias ? bias.data() : nullptr, 1);
      auto lr = ref->prepare_linear(w.data(), c.layout, c.in, c.out, c.bias ? bias.data() : nullptr, 1);
      for (std::int64_t m = 1; m <= 5; ++m)
        for (const auto& [act, acc] : {std::pair{Activation::None, false}, std::pair{Activation::None, true},
                                       std::pair{Activation::GeluTanh, false}, std::pair{Activation::GeluErf, false}}) {
          const auto src = randn(static_cast<std::size_t>(m * c.in), 33 + static_cast<std::uint32_t>(m));
          const auto init = randn(static_cast<std::size_t>(m * c.out), 40);
          auto yf = init, ym = init, yr = init;
          const auto calls = onednn::stats(*fast).small_m_calls;
          fast->linear(*lf, src.data(), m, yf.data(), act, acc);
          matmul->linear(*lm, src.data(), m, ym.data(), act, acc);
          ref->linear(*lr, src.data(), m, yr.data(), act, acc);
          INFO(fmt::format("{} in {} out {} m {} act {} accumulate {}", p == Precision::BF16 ? "bf16" : "f32",
                           c.in, c.out, m, static_cast<int>(act), acc));
          CHECK(max_rel(yf, yr) <= 2e-5);
          if (p == Precision::F32 || m > kBf16ExactInputRows)
            CHECK(max_rel(yf, ym) <= 2e-5);
          else  // oneDNN's bf16 matmul rounds the inputs, the small-M kernel does not
            CHECK(rel_l2(yf, ym) <= 1e-2);
          // The small-M path really ran for m <= 4 (on CPUs that have it).
          if (onednn::small_m_supported(p == Precision::BF16))
            CHECK(onednn::stats(*fast).small_m_calls - calls == (m <= onednn::kSmallMMaxRows ? 1 : 0));
        }
    }
  }
}

TEST_CASE("weight_column returns the prepared weights' columns, in f32 and bf16", "[perf][ops]") {
  for (const Precision p : {Precision::F32, Precision::BF16}) {
    auto dnn = make_onednn_backend();
    dnn->set_precision(p);
    for (const auto& [in, out, layout] : {std::tuple{768L, 1000L, WeightLayout::OutIn},
                                          std::tuple{40L, 77L, WeightLayout::InOut},
                                          std::tuple{64L, 3L, WeightLayout::OutIn}}) {
      const auto w = randn(static_cast<std::size_t>(in * out), 3);
      auto layer = dnn->prepare_linear(w.data(), layout, in, out, nullptr, 1);
      std::vector<float> col(static_cast<std::size_t>(in));
      for (std::int64_t o : {std::int64_t{0}, out / 2, out - 1}) {
        dnn->weight_column(*layer, o, col.data());
        std::int64_t bad = 0;
        for (std::int64_t i = 0; i < in; ++i) {
          float want = layout == WeightLayout::OutIn ? w[o * in + i] : w[i * out + o];
          if (p == Precision::BF16) want = bf16_to_f32(f32_to_bf16(want));
          bad += col[i] != want;
        }
        INFO(fmt::format("in {} out {} column {} bf16 {}", in, out, o, p == Precision::BF16));
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("one_query_attention matches the reference and per-row attention", "[perf][ops]") {
  auto dnn = make_onednn_backend();
  auto ref = make_reference_backend();
  for (const auto& [rows, n, heads, hd] : {std::tuple{1L, 1L, 2L, 8L}, std::tuple{4L, 17L, 12L, 64L},
                                           std::tuple{3L, 200L, 4L, 16L}}) {
    const std::int64_t width = heads * hd, max_pos = n + 5, q_ld = 3 * width;
    const auto q = randn(static_cast<std::size_t>(rows * q_ld), 11);
    const auto k = randn(static_cast<std::size_t>(rows * max_pos * width), 12);
    const auto v = randn(static_cast<std::size_t>(rows * max_pos * width), 13);
    std::vector<float> scores(static_cast<std::size_t>(rows * heads * n));
    std::vector<float> out_dnn(static_cast<std::size_t>(rows * width)), out_ref = out_dnn, out_loop = out_dnn;
    const OneQueryAttention args{q.data(), q_ld, k.data(), v.data(), max_pos * width, hd, width, rows, n,
                                 heads, hd, 0.3f, scores.data(), out_dnn.data(), width};
    ops::one_query_attention(*dnn, args);
    OneQueryAttention a_ref = args;
    a_ref.out = out_ref.data();
    ops::one_query_attention(*ref, a_ref);
    // The general attention op, one row at a time, is what the decoder used before.
    std::vector<float> big_scores(static_cast<std::size_t>(heads * n));
    for (std::int64_t r = 0; r < rows; ++r)
      ops::attention(*dnn, {q.data() + r * q_ld, q_ld, k.data() + r * max_pos * width, width,
                            v.data() + r * max_pos * width, width, 1, n, heads, hd, 0.3f,
                            big_scores.data(), out_loop.data() + r * width, width});
    INFO(fmt::format("rows {} n {} heads {} head_dim {}", rows, n, heads, hd));
    CHECK(max_rel(out_dnn, out_ref) <= 1e-5);
    CHECK(max_rel(out_dnn, out_loop) <= 1e-5);
  }
  {  // Keys/values shared by every row (cross-attention) against the general op with tq = rows.
    const std::int64_t rows = 4, n = 197, heads = 12, hd = 64, width = heads * hd;
    const auto q = randn(static_cast<std::size_t>(rows * width), 21);
    const auto kv = randn(static_cast<std::size_t>(n * 2 * width), 22);
    std::vector<float> scores(static_cast<std::size_t>(rows * heads * n)), big(scores.size());
    std::vector<float> out(static_cast<std::size_t>(rows * width)), want(out.size());
    ops::one_query_attention(*dnn, {q.data(), width, kv.data(), kv.data() + width, 0, hd, 2 * width, rows, n,
                                    heads, hd, 0.125f, scores.data(), out.data(), width});
    ops::attention(*dnn, {q.data(), width, kv.data(), 2 * width, kv.data() + width, 2 * width, rows, n,
                          heads, hd, 0.125f, big.data(), want.data(), width});
    CHECK(max_rel(out, want) <= 1e-5);
    // scores: (rows, heads, n) probabilities; the general op leaves (heads, rows, n).
    double worst = 0;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t j = 0; j < n; ++j)
          worst = std::max(worst, std::abs(double(scores[(r * heads + h) * n + j]) - big[(h * rows + r) * n + j]));
    CHECK(worst <= 1e-6);
    // The same keys/values head-major: (heads, n, hd) blocks.
    std::vector<float> kh(static_cast<std::size_t>(n * width)), vh(kh.size()), out_hm(out.size());
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t c = 0; c < hd; ++c) {
          kh[(h * n + j) * hd + c] = kv[j * 2 * width + h * hd + c];
          vh[(h * n + j) * hd + c] = kv[j * 2 * width + width + h * hd + c];
        }
    ops::one_query_attention(*dnn, {q.data(), width, kh.data(), vh.data(), 0, n * hd, hd, rows, n, heads, hd,
                                    0.125f, scores.data(), out_hm.data(), width});
    CHECK(max_rel(out_hm, want) <= 1e-5);
    // The same keys/values held as bf16 (cross-attention under --dtype bf16): both backends read
    // the same rounded values, so they agree to float32 precision, and the result moves from the
    // float32 one by about the rounding (8 significant bits), not more.
    std::vector<std::uint16_t> kh16(kh.size()), vh16(vh.size());
    for (std::size_t i = 0; i < kh.size(); ++i) {
      kh16[i] = f32_to_bf16(kh[i]);
      vh16[i] = f32_to_bf16(vh[i]);
    }
    std::vector<float> out16(out.size()), out16_ref(out.size()), scores_ref(scores.size());
    OneQueryAttention a16{q.data(), width, nullptr, nullptr, 0, n * hd, hd, rows, n, heads, hd,
                          0.125f, scores.data(), out16.data(), width};
    a16.k16 = kh16.data();
    a16.v16 = vh16.data();
    ops::one_query_attention(*dnn, a16);
    OneQueryAttention a16_ref = a16;
    a16_ref.out = out16_ref.data();
    a16_ref.scores = scores_ref.data();
    ops::one_query_attention(*ref, a16_ref);
    CHECK(max_rel(out16, out16_ref) <= 1e-5);
    CHECK(max_rel(scores, scores_ref) <= 1e-5);
    CHECK(max_rel(out16, want) > 1e-4);
    CHECK(max_rel(out16, want) < 2e-2);
    // Keys/values must come as one pair: both float32 or both bf16.
    a16.k = kh.data();
    CHECK_THROWS_AS(ops::one_query_attention(*dnn, a16), InputError);
    a16.k = nullptr;
    a16.v16 = nullptr;
    CHECK_THROWS_AS(ops::one_query_attention(*dnn, a16), InputError);
  }
  std::vector<float> buf(64);
  CHECK_THROWS_AS(ops::one_query_attention(*dnn, {buf.data(), 8, buf.data(), buf.data(), 8, 4, 8, 2, 2, 2, 4, 1.0f,
                                                  buf.data(), buf.data(), 8}),
                  InputError);  // rows' keys overlap
  CHECK_THROWS_AS(ops::one_query_attention(*dnn, {buf.data(), 4, buf.data(), buf.data(), 64, 4, 8, 1, 2, 2, 4, 1.0f,
                                                  buf.data(), buf.data(), 8}),
                  InputError);  // q_ld < heads * head_dim
  CHECK_THROWS_AS(ops::one_query_attention(*dnn, {buf.data(), 8, buf.data(), buf.data(), 0, 6, 4, 1, 2, 2, 4, 1.0f,
                                                  buf.data(), buf.data(), 8}),
                  InputError);  // head-major blocks overlap
}

TEST_CASE("bf16 model stays close to float32 on the tiny checkpoints", "[perf][golden]") {
  for (const char* name : {"tiny-vit-gpt2", "tiny-vit-gpt2-b"}) {
    const auto dir = kData / name;
    const VitGpt2Config config = load_vit_gpt2_config(dir);
    auto b32 = make_onednn_backend();
    auto b16 = make_onednn_backend();
    b16->set_precision(Precision::BF16);
    WeightStore weights = WeightStore::open(dir);
    const Tokenizer tokenizer = Tokenizer::load(dir);
    auto m32 = load_caption_model(dir, *b32, weights, tokenizer, 4);
    auto m16 = load_caption_model(dir, *b16, weights, tokenizer, 4);
    // A head this small (under a tenth of a step's weights) stays float32 in bf16 mode.
    CHECK(m32->decoder().head_f32());
    CHECK(m16->decoder().head_f32());
    CHECK(b16->precision() == Precision::BF16);  // restored after the head
    const std::int64_t size = config.encoder.image_size;
    std::vector<float> pixels(static_cast<std::size_t>(3 * size * size));
    preprocess_image(load_image(kData / "golden_images" / "img_64x64.png"), config.preprocessor, pixels.data());
    m32->encode(pixels.data(), 1);
    m16->encode(pixels.data(), 1);
    const auto states = static_cast<std::size_t>(m32->encoder().num_tokens() * config.encoder.hidden_size);
    const double enc_l2 = rel_l2(m16->encoder_states(0), m32->encoder_states(0), states);
    auto s32 = m32->start(0, 1, 8);
    auto s16 = m16->start(0, 1, 8);
    DecoderState* g32 = s32.get();
    DecoderState* g16 = s16.get();
    const auto vocab = static_cast<std::size_t>(config.decoder.vocab_size);
    std::vector<float> l32(vocab), l16(vocab);
    std::int64_t token = 0;
    double worst = 0;
    for (int step = 0; step < 4; ++step) {
      m32->step({&g32, 1}, &token, l32.data(), nullptr);
      m16->step({&g16, 1}, &token, l16.data(), nullptr);
      worst = std::max(worst, rel_l2(l16, l32));
      token = (token * 7 + 3) % config.decoder.vocab_size;
    }
    INFO(fmt::format("{}: encoder states rel L2 {:.3g}, logits rel L2 {:.3g}", name, enc_l2, worst));
    CHECK(enc_l2 <= 3e-2);
    CHECK(worst <= 3e-2);
    CHECK(worst > 0);
  }
}

TEST_CASE("caption_batch gives each image's caption() result", "[perf][golden]") {
  for (const char* name : {"tiny-vit-gpt2", "tiny-vit-gpt2-b"}) {
    Captioner captioner = Captioner::load(kData / name);
    std::vector<RgbImage> images;
    for (const char* file : {"img_64x64.png", "img_45x30.png", "img_23x37_rgba.png"})
      images.push_back(load_image(kData / "golden_images" / file));
    for (const std::int64_t beams : {1, 3}) {
      CaptionRequest request;
      request.generation.num_beams = beams;
      request.generation.max_new_tokens = 6;
      const auto batch = captioner.caption_batch(images, request);
      REQUIRE(batch.size() == images.size());
      for (std::size_t i = 0; i < images.size(); ++i) {
        const CaptionResult single = captioner.caption(images[i], request);
        INFO(fmt::format("{} image {} beams {}", name, i, beams));
        CHECK(batch[i].token_ids == single.token_ids);
        CHECK(batch[i].caption == single.caption);
        REQUIRE(batch[i].logprobs.size() == single.logprobs.size());
        for (std::size_t t = 0; t < single.logprobs.size(); ++t)
          CHECK(batch[i].logprobs[t] == Approx(single.logprobs[t]).margin(1e-4));
      }
    }
    CHECK(captioner.caption_batch({}).empty());
    RgbImage broken = images[0];
    broken.data.pop_back();
    images.push_back(broken);
    CHECK_THROWS_AS(captioner.caption_batch(images), InputError);
  }
}

TEST_CASE("the decoding loop does not allocate once warmed up", "[perf]") {
#ifdef XCAPTION_TSAN
  std::puts("XCAPTION-SKIPPED: ThreadSanitizer owns operator new; allocations are counted in the other builds");
  return;
#endif
  // The model and generation code on the reference backend, whose kernels allocate nothing: any
  // allocation counted is the decoder's or the generation loop's own. On oneDNN, each primitive
  // execution allocates inside libdnnl (its execution context); that count must stay constant
  // per step, whatever the position.
  const auto dir = kData / "tiny-vit-gpt2";
  const VitGpt2Config config = load_vit_gpt2_config(dir);
  for (const bool onednn : {false, true}) {
    auto backend = onednn ? make_onednn_backend() : make_reference_backend();
    WeightStore weights = WeightStore::open(dir);
    const Tokenizer tokenizer = Tokenizer::load(dir);
    auto model = load_caption_model(dir, *backend, weights, tokenizer, 4);
    const std::int64_t size = config.encoder.image_size;
    std::vector<float> pixels(static_cast<std::size_t>(3 * size * size), 0.25f);
    model->encode(pixels.data(), 1);
    const std::int64_t rows = 3, steps = 8;
    auto state = model->start(0, rows, steps + 1);
    DecoderState* group = state.get();
    const std::int64_t tokens_in = state->cross_tokens();
    std::vector<float> logits(static_cast<std::size_t>(rows * config.decoder.vocab_size));
    std::vector<std::int64_t> tokens{1, 2, 3}, order{2, 0, 0};
    std::vector<long> per_step(static_cast<std::size_t>(steps));
    auto run = [&] {
      state->reserve(rows, steps + 1, tokens_in);  // empties the cache, allocates nothing
      for (std::int64_t s = 0; s < steps; ++s) {
        const long b = g_heap_allocations.load();
        model->step({&group, 1}, tokens.data(), logits.data(), nullptr);
        state->reorder(order.data());
        per_step[static_cast<std::size_t>(s)] = g_heap_allocations.load() - b;
      }
    };
    run();  // creates the primitives of every shape
    run();
    INFO((onednn ? "onednn" : "reference") << ": allocations in step 0: " << per_step[0] << ", step "
                                           << steps - 1 << ": " << per_step.back());
    for (const long n : per_step) CHECK(n == (onednn ? per_step[0] : 0));

    // Greedy decoding: a fixed number of allocations (its outputs), whatever the token count.
    DecodeSettings s;
    s.prompt = {0};
    auto greedy_state = model->start(0, 1, 16);
    auto count = [&](std::int64_t max_length) {
      s.max_length = max_length;
      greedy_state->reserve(1, 16, tokens_in);
      decode(*model, *greedy_state, s, false);  // warm-up at this length
      greedy_state->reserve(1, 16, tokens_in);
      const long b = g_heap_allocations.load();
      const DecodeResult r = decode(*model, *greedy_state, s, false);
      CHECK(static_cast<std::int64_t>(r.tokens.size()) == max_length - 1);
      return g_heap_allocations.load() - b;
    };
    const long short_run = count(3), long_run = count(16);
    INFO("greedy allocations: " << short_run << " for 2 tokens, " << long_run << " for 15");
    if (!onednn) CHECK(long_run == short_run);
  }
}

}  // namespace xcaption
