// The shared blocks every family is built from, against plain double-precision loops written
// from the layer definitions: encoder and decoder layers in both norm placements, a decoder step
// over several sequence groups (each with its own cache position and image), beam reordering of
// the cache, and the data-movement ops.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "decoder/text_encoder.hpp"
#include "src/blocks/kv_cache.hpp"
#include "src/blocks/transformer.hpp"
#include "src/io/weights.hpp"
#include "src/ops/ops.hpp"
#include "tests/e2e/cli_runner.hpp"

namespace xcaption {
namespace {

using Vec = std::vector<double>;
namespace fs = std::filesystem;

// Random named tensors written as one F32 model.safetensors, then opened as a WeightStore.
struct Weights {
  std::mt19937 rng{1234};
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  std::vector<std::vector<std::int64_t>> shapes;
  fs::path dir = test::make_temp_dir("blocks");
  ~Weights() { fs::remove_all(dir); }

  const std::vector<float>& add(const std::string& name, std::vector<std::int64_t> shape, float scale, float centre = 0) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = centre + scale * d(rng);
    tensors.emplace_back(name, std::move(v));
    shapes.push_back(std::move(shape));
    return tensors.back().second;
  }
  void linear(const std::string& name, std::int64_t in, std::int64_t out) {
    add(name + ".weight", {out, in}, 0.3f);
    add(name + ".bias", {out}, 0.1f);
  }
  void norm(const std::string& name, std::int64_t n) {
    add(name + ".weight", {n}, 0.1f, 1.0f);
    add(name + ".bias", {n}, 0.1f);
  }
  const std::vector<float>& get(const std::string& name) const {
    for (const auto& [n, v] : tensors)
      if (n == name) return v;
    throw std::runtime_error("no tensor " + name);
  }
  WeightStore open() const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::string data;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& [name, v] = tensors[i];
      const std::size_t begin = data.size();
      data.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
      header[name] = {{"dtype", "F32"}, {"shape", shapes[i]}, {"data_offsets", {begin, data.size()}}};
    }
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';
    std::string file(8, '\0');
    const std::uint64_t len = text.size();
    std::memcpy(file.data(), &len, 8);
    std::ofstream(dir / "model.safetensors", std::ios::binary) << file << text << data;
    return WeightStore::open(dir);
  }
};

Vec naive_linear(const Weights& w, const std::string& name, const Vec& x, std::int64_t in) {
  const auto& W = w.get(name + ".weight");
  const auto& b = w.get(name + ".bias");
  const std::size_t out = b.size(), rows = x.size() / static_cast<std::size_t>(in);
  Vec y(rows * out);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t o = 0; o < out; ++o) {
      double s = b[o];
      for (std::int64_t i = 0; i < in; ++i) s += static_cast<double>(W[o * in + i]) * x[r * in + i];
      y[r * out + o] = s;
    }
  return y;
}

Vec naive_norm(const Weights& w, const std::string& name, const Vec& x, std::int64_t n, double eps) {
  const auto& g = w.get(name + ".weight");
  const auto& b = w.get(name + ".bias");
  Vec y(x.size());
  for (std::size_t r = 0; r < x.size() / n; ++r) {
    double mean = 0, var = 0;
    for (std::int64_t i = 0; i < n; ++i) mean += x[r * n + i];
    mean /= n;
    for (std::int64_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
    var /= n;
    for (std::int64_t i = 0; i < n; ++i) y[r * n + i] = (x[r * n + i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
  }
  return y;
}

double gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

// softmax(scale q·kᵀ)·v per head for one query row q (width d) over keys/values rows (n, d).
Vec naive_attend(const Vec& q, const Vec& k, const Vec& v, std::int64_t d, std::int64_t heads, double scale) {
  const std::int64_t hd = d / heads, n = static_cast<std::int64_t>(k.size()) / d;
  Vec out(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t h = 0; h < heads; ++h) {
    Vec s(static_cast<std::size_t>(n));
    double mx = -1e300;
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t c = 0; c < hd; ++c) dot += q[h * hd + c] * k[j * d + h * hd + c];
      s[j] = dot * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t c = 0; c < hd; ++c) out[h * hd + c] += s[j] / sum * v[j * d + h * hd + c];
  }
  return out;
}

Vec add(Vec a, const Vec& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

Vec slice(const Vec& x, std::int64_t row, std::int64_t n) {
  return Vec(x.begin() + row * n, x.begin() + (row + 1) * n);
}

void check_close(const char* what, const float* got, const Vec& want, double tol) {
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i])));
  INFO(what << ": max scaled difference " << worst);
  CHECK(worst <= tol);
}

constexpr std::int64_t D = 16, HEADS = 4, FFN = 24, ENC = 12, TOKENS = 5;

blocks::DecoderLayerSpec decoder_spec(bool norm_first, float scale) {
  blocks::DecoderLayerSpec s;
  s.norm_first = norm_first;
  s.self_norm = {"sn", D, 1e-5f};
  s.cross_norm = {"cn", D, 1e-5f};
  s.mlp_norm = {"mn", D, 1e-5f};
  s.self_qkv.parts = {{"q", D, {}}, {"k", D, {}}, {"v", D, {}}};  // three nn.Linear, fused
  s.self_qkv.in = D;
  s.self_out = blocks::linear("o", D, D);
  s.cross_q = blocks::linear("cq", D, D);
  s.cross_kv.parts = {{"ck", D, {}}, {"cv", D, {}}};
  s.cross_kv.in = ENC;
  s.cross_out = blocks::linear("co", D, D);
  s.fc1 = blocks::linear("f1", D, FFN);
  s.fc2 = blocks::linear("f2", FFN, D);
  s.activation = Activation::GeluErf;
  s.width = D;
  s.heads = HEADS;
  s.self_scale = s.cross_scale = scale;
  return s;
}

void add_decoder_weights(Weights& w) {
  for (const char* n : {"sn", "cn", "mn"}) w.norm(n, D);
  for (const char* n : {"q", "k", "v", "o", "cq", "co"}) w.linear(n, D, D);
  w.linear("ck", ENC, D);
  w.linear("cv", ENC, D);
  w.linear("f1", D, FFN);
  w.linear("f2", FFN, D);
}

// One naive sequence of the decoder layer: its keys/values so far and its image's cross K/V.
struct NaiveRow {
  Vec keys, values;  // (positions, D)
};

Vec naive_decoder_step(const Weights& w, bool norm_first, double scale, const Vec& x, NaiveRow& row,
                       const Vec& cross_k, const Vec& cross_v) {
  auto sub = [&](const Vec& h, const std::string& norm, auto&& f) {
    if (norm_first) return add(h, f(naive_norm(w, norm, h, D, 1e-5)));
    return naive_norm(w, norm, add(h, f(h)), D, 1e-5);
  };
  Vec h = sub(x, "sn", [&](const Vec& in) {
    const Vec q = naive_linear(w, "q", in, D), k = naive_linear(w, "k", in, D), v = naive_linear(w, "v", in, D);
    row.keys.insert(row.keys.end(), k.begin(), k.end());
    row.values.insert(row.values.end(), v.begin(), v.end());
    return naive_linear(w, "o", naive_attend(q, row.keys, row.values, D, HEADS, scale), D);
  });
  h = sub(h, "cn", [&](const Vec& in) {
    const Vec q = naive_linear(w, "cq", in, D);
    return naive_linear(w, "co", naive_attend(q, cross_k, cross_v, D, HEADS, scale), D);
  });
  return sub(h, "mn", [&](const Vec& in) {
    Vec m = naive_linear(w, "f1", in, D);
    for (auto& x : m) x = gelu(x);
    return naive_linear(w, "f2", m, FFN);
  });
}

}  // namespace

TEST_CASE("decoder layer: pre- and post-norm steps of two groups match the definition", "[blocks]") {
  for (const bool norm_first : {true, false}) {
    // 0.5 is folded into the query weights exactly; 0.3 stays a multiplication of the scores.
    for (const float scale : {0.5f, 0.3f}) {
      Weights w;
      add_decoder_weights(w);
      const WeightStore store = w.open();
      auto backend = make_onednn_backend();
      const blocks::DecoderLayer layer(decoder_spec(norm_first, scale), store, *backend, 3, TOKENS);
      // Two images: group A with 2 rows (beams), group B with 1 row, different encoder states.
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<float> states_a(TOKENS * ENC), states_b(TOKENS * ENC);
      for (auto& x : states_a) x = d(w.rng);
      for (auto& x : states_b) x = d(w.rng);
      blocks::KvCache a(*backend, 1, D, HEADS, false), b(*backend, 1, D, HEADS, false);
      a.reserve(2, 4, TOKENS);
      b.reserve(1, 4, TOKENS);
      blocks::DecoderWorkspace ws;
      ws.reserve(3, 4, TOKENS, D, HEADS, FFN);
      layer.prepare_cross(*backend, 0, states_a.data(), TOKENS, a, ws);
      layer.prepare_cross(*backend, 0, states_b.data(), TOKENS, b, ws);
      auto cross = [&](const std::vector<float>& s, const char* n) {
        return naive_linear(w, n, Vec(s.begin(), s.end()), ENC);
      };
      const Vec ka = cross(states_a, "ck"), va = cross(states_a, "cv"), kb = cross(states_b, "ck"), vb = cross(states_b, "cv");
      std::vector<NaiveRow> rows(3);

      // Group B starts one step later: positions differ between the groups in step 2.
      std::vector<float> x(3 * D), attention(3 * HEADS * TOKENS);
      for (int step = 0; step < 3; ++step) {
        std::vector<blocks::KvCache*> groups{&a};
        if (step > 0) groups.push_back(&b);
        const std::int64_t n_rows = step > 0 ? 3 : 2;
        for (std::int64_t i = 0; i < n_rows * D; ++i) x[i] = d(w.rng);
        Vec want;
        for (std::int64_t r = 0; r < n_rows; ++r) {
          const bool in_a = r < 2;
          const Vec out = naive_decoder_step(w, norm_first, scale, slice(Vec(x.begin(), x.end()), r, D),
                                             rows[static_cast<std::size_t>(r)], in_a ? ka : kb, in_a ? va : vb);
          want.insert(want.end(), out.begin(), out.end());
        }
        layer.step(*backend, 0, x.data(), n_rows, groups, ws, attention.data(), HEADS * TOKENS);
        for (auto* g : groups) g->advance();
        INFO(fmt::format("norm_first {}, scale {}, step {}", norm_first, scale, step));
        check_close("layer output", x.data(), want, 2e-5);
        // Cross-attention probabilities of every row sum to 1 per head.
        for (std::int64_t r = 0; r < n_rows; ++r)
          for (std::int64_t h = 0; h < HEADS; ++h) {
            double sum = 0;
            for (std::int64_t t = 0; t < TOKENS; ++t) sum += attention[(r * HEADS + h) * TOKENS + t];
            CHECK(sum == Approx(1.0).epsilon(1e-5));
          }
      }
      CHECK(a.position() == 3);
      CHECK(b.position() == 2);
    }
  }
}

TEST_CASE("kv cache: beam reordering moves every row's keys and values", "[blocks]") {
  auto backend = make_reference_backend();
  blocks::KvCache c(*backend, 2, 4, 2, false);
  c.reserve(3, 5, 1);
  for (std::int64_t l = 0; l < 2; ++l)
    for (std::int64_t r = 0; r < 3; ++r)
      for (std::int64_t p = 0; p < 2; ++p)
        for (std::int64_t i = 0; i < 4; ++i) {
          c.self_k(l)[r * c.row_stride() + p * 4 + i] = static_cast<float>(100 * l + 10 * r + p);
          c.self_v(l)[r * c.row_stride() + p * 4 + i] = -static_cast<float>(100 * l + 10 * r + p);
        }
  c.advance();
  c.advance();
  const std::int64_t src[] = {2, 2, 0};
  c.reorder(src);
  for (std::int64_t l = 0; l < 2; ++l)
    for (std::int64_t r = 0; r < 3; ++r)
      for (std::int64_t p = 0; p < 2; ++p) {
        CHECK(c.self_k(l)[r * c.row_stride() + p * 4] == static_cast<float>(100 * l + 10 * src[r] + p));
        CHECK(c.self_v(l)[r * c.row_stride() + p * 4 + 3] == -static_cast<float>(100 * l + 10 * src[r] + p));
      }
  CHECK_THROWS_AS(c.reserve(0, 5, 1), InputError);
}

TEST_CASE("encoder layer: pre- and post-norm forward of a batch match the definition", "[blocks]") {
  for (const bool norm_first : {true, false}) {
    Weights w;
    for (const char* n : {"n1", "n2"}) w.norm(n, D);
    w.linear("qkv", D, 3 * D);  // one fused matrix, rows q | k | v
    w.linear("o", D, D);
    w.linear("f1", D, FFN);
    w.linear("f2", FFN, D);
    const WeightStore store = w.open();
    blocks::EncoderLayerSpec s;
    s.norm_first = norm_first;
    s.attention_norm = {"n1", D, 1e-6f};
    s.mlp_norm = {"n2", D, 1e-6f};
    s.qkv = blocks::linear("qkv", D, 3 * D);
    s.attention_out = blocks::linear("o", D, D);
    s.fc1 = blocks::linear("f1", D, FFN);
    s.fc2 = blocks::linear("f2", FFN, D);
    s.width = D;
    s.heads = HEADS;
    s.attention_scale = 0.5f;
    auto backend = make_onednn_backend();
    const blocks::EncoderLayer layer(s, store, *backend, TOKENS);
    blocks::EncoderWorkspace ws;
    ws.reserve(2 * TOKENS, TOKENS, D, HEADS, FFN);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> x(2 * TOKENS * D);
    for (auto& v : x) v = d(w.rng);
    Vec want;
    for (int image = 0; image < 2; ++image) {
      Vec h(x.begin() + image * TOKENS * D, x.begin() + (image + 1) * TOKENS * D);
      auto attention = [&](const Vec& in) {
        const Vec qkv = naive_linear(w, "qkv", in, D);
        Vec k, v, ctx;
        for (std::int64_t t = 0; t < TOKENS; ++t) {
          k.insert(k.end(), qkv.begin() + t * 3 * D + D, qkv.begin() + t * 3 * D + 2 * D);
          v.insert(v.end(), qkv.begin() + t * 3 * D + 2 * D, qkv.begin() + (t + 1) * 3 * D);
        }
        for (std::int64_t t = 0; t < TOKENS; ++t) {
          const Vec o = naive_attend(Vec(qkv.begin() + t * 3 * D, qkv.begin() + t * 3 * D + D), k, v, D, HEADS, 0.5);
          ctx.insert(ctx.end(), o.begin(), o.end());
        }
        return naive_linear(w, "o", ctx, D);
      };
      auto mlp = [&](const Vec& in) {
        Vec m = naive_linear(w, "f1", in, D);
        for (auto& e : m) e = gelu(e);
        return naive_linear(w, "f2", m, FFN);
      };
      if (norm_first) {
        h = add(h, attention(naive_norm(w, "n1", h, D, 1e-6)));
        h = add(h, mlp(naive_norm(w, "n2", h, D, 1e-6)));
      } else {
        h = naive_norm(w, "n1", add(h, attention(h)), D, 1e-6);
        h = naive_norm(w, "n2", add(h, mlp(h)), D, 1e-6);
      }
      want.insert(want.end(), h.begin(), h.end());
    }
    layer.forward(*backend, x.data(), 2, TOKENS, ws);
    INFO("norm_first " << norm_first);
    check_close("encoder layer output", x.data(), want, 2e-5);
  }
}

TEST_CASE("text encoder: prefix states, scaled tokens, offset positions and post-norm layers match BART", "[blocks]") {
  // ref: BartEncoder over inputs_embeds = [image features; embed_tokens(ids) * embed_scale]:
  // + embed_positions(positions 0..T-1 read at + 2), layernorm_embedding, post-norm layers.
  constexpr std::int64_t VOCAB = 11, POSITIONS = 12, PREFIX = 3;
  Weights w;
  w.add("shared.weight", {VOCAB, D}, 0.5f);
  w.add("pos.weight", {POSITIONS + 2, D}, 0.5f);
  w.norm("ln_emb", D);
  for (const char* n : {"n1", "n2"}) w.norm(n, D);
  for (const char* n : {"q", "k", "v", "o"}) w.linear(n, D, D);
  w.linear("f1", D, FFN);
  w.linear("f2", FFN, D);
  const WeightStore store = w.open();
  TextEncoderSpec s;
  s.vocab_size = VOCAB;
  s.width = D;
  s.heads = HEADS;
  s.positions = POSITIONS;
  s.position_offset = 2;
  s.token_embedding = "shared.weight";
  s.embedding_scale = 2.0f;
  s.position_embedding = "pos.weight";
  s.embedding_norm = blocks::NormSpec{"ln_emb", D, 1e-5f};
  blocks::EncoderLayerSpec l;
  l.norm_first = false;
  l.attention_norm = {"n1", D, 1e-5f};
  l.mlp_norm = {"n2", D, 1e-5f};
  l.qkv.parts = {{"q", D, {}}, {"k", D, {}}, {"v", D, {}}};
  l.qkv.in = D;
  l.attention_out = blocks::linear("o", D, D);
  l.fc1 = blocks::linear("f1", D, FFN);
  l.fc2 = blocks::linear("f2", FFN, D);
  l.width = D;
  l.heads = HEADS;
  l.attention_scale = 0.5f;
  s.layers = {l};
  std::vector<ExpectedTensor> table;
  TextEncoder::describe(s, false, table);
  store.validate(table);
  auto backend = make_onednn_backend();
  TextEncoder encoder(s, store, *backend, nullptr, 8);

  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> prefix(PREFIX * D);
  for (auto& v : prefix) v = d(w.rng);
  const std::vector<std::int64_t> ids{0, 7, 2, 10};
  const std::int64_t t = PREFIX + static_cast<std::int64_t>(ids.size());
  Vec x(prefix.begin(), prefix.end());
  const auto& E = w.get("shared.weight");
  for (auto id : ids)
    for (std::int64_t c = 0; c < D; ++c) x.push_back(2.0 * E[id * D + c]);
  const auto& P = w.get("pos.weight");
  for (std::int64_t p = 0; p < t; ++p)
    for (std::int64_t c = 0; c < D; ++c) x[p * D + c] += P[(p + 2) * D + c];
  x = naive_norm(w, "ln_emb", x, D, 1e-5);
  const Vec q = naive_linear(w, "q", x, D), k = naive_linear(w, "k", x, D), v = naive_linear(w, "v", x, D);
  Vec ctx;
  for (std::int64_t p = 0; p < t; ++p) {
    const Vec o = naive_attend(slice(q, p, D), k, v, D, HEADS, 0.5);
    ctx.insert(ctx.end(), o.begin(), o.end());
  }
  Vec h = naive_norm(w, "n1", add(x, naive_linear(w, "o", ctx, D)), D, 1e-5);
  Vec m = naive_linear(w, "f1", h, D);
  for (auto& e : m) e = gelu(e);
  const Vec want = naive_norm(w, "n2", add(h, naive_linear(w, "f2", m, FFN)), D, 1e-5);

  std::vector<float> got(static_cast<std::size_t>(t * D));
  encoder.forward(prefix.data(), PREFIX, ids, got.data());
  check_close("text encoder output", got.data(), want, 2e-5);
  CHECK(encoder.flops(t) > 0);
  // Longer than the position table: refused with the counts.
  const std::vector<std::int64_t> many(POSITIONS, 1);
  std::vector<float> big(static_cast<std::size_t>((PREFIX + POSITIONS) * D));
  CHECK_THROWS_WITH(encoder.forward(prefix.data(), PREFIX, many, big.data()),
                    Catch::Contains("max_position_embeddings 12"));
  const std::vector<std::int64_t> bad{VOCAB};
  CHECK_THROWS_AS(encoder.forward(prefix.data(), PREFIX, bad, got.data()), InputError);
}

TEST_CASE("data ops: patchify feeds a strided convolution, row copies, adds and head splits", "[blocks]") {
  auto backend = make_onednn_backend();
  // 2 images of 2 channels, 4x6 pixels, 2x2 patches: 2 x 3 tiles each.
  const std::int64_t B = 2, C = 2, H = 4, W = 6, P = 2;
  std::vector<float> px(B * C * H * W);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(i);
  std::vector<float> tiles(B * (H / P) * (W / P) * C * P * P);
  ops::patchify(*backend, px.data(), B, C, H, W, P, tiles.data());
  // Tile (b, gy, gx), value (c, ky, kx) is pixel (b, c, gy*P+ky, gx*P+kx).
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t gy = 0; gy < H / P; ++gy)
      for (std::int64_t gx = 0; gx < W / P; ++gx)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t ky = 0; ky < P; ++ky)
            for (std::int64_t kx = 0; kx < P; ++kx) {
              const std::int64_t tile = (b * (H / P) + gy) * (W / P) + gx;
              CHECK(tiles[tile * C * P * P + (c * P + ky) * P + kx] == px[((b * C + c) * H + gy * P + ky) * W + gx * P + kx]);
            }
  CHECK_THROWS_AS(ops::patchify(*backend, px.data(), B, C, 5, W, P, tiles.data()), InputError);

  std::vector<float> table{0, 1, 2, 10, 11, 12, 20, 21, 22}, out(6, -1);
  const std::int64_t ids[] = {2, 0};
  ops::copy_rows(*backend, table.data(), 3, 3, ids, 2, 3, out.data(), 3);
  CHECK(out == std::vector<float>{20, 21, 22, 0, 1, 2});
  const std::int64_t bad[] = {3};
  CHECK_THROWS_AS(ops::copy_rows(*backend, table.data(), 3, 3, bad, 1, 3, out.data(), 3), InputError);
  ops::add_rows(*backend, table.data() + 3, 0, 2, 3, out.data(), 3);  // one row broadcast
  CHECK(out == std::vector<float>{30, 32, 34, 10, 12, 14});

  // (tokens 2, heads 2 x head_dim 2) -> (heads, tokens, head_dim)
  const std::vector<float> rows{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> heads(8);
  ops::split_heads(*backend, rows.data(), 4, 2, 2, 2, heads.data());
  CHECK(heads == std::vector<float>{1, 2, 5, 6, 3, 4, 7, 8});
  std::vector<std::uint16_t> heads16(8);
  ops::split_heads(*backend, rows.data(), 4, 2, 2, 2, heads16.data());
  for (std::size_t i = 0; i < 8; ++i) CHECK(bf16_to_f32(heads16[i]) == heads[i]);
}

}  // namespace xcaption
