// Captioner: the public entry point. Loads a model folder, owns the backend, the model and the
// tokenizer, and runs preprocess -> encoder -> cross K/V -> generation for each image.
#include <xcaption/captioner.hpp>

#include <chrono>
#include <cstdlib>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "encoders/image_processor.hpp"
#include "models/vit_gpt2.hpp"
#include "src/io/model_config.hpp"
#include "src/generate/settings.hpp"
#include "src/io/weights.hpp"
#include "src/tokenizer/cleanup.hpp"
#include "src/tokenizer/tokenizer.hpp"

namespace xcaption {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const char* resample_name(int id) {
  switch (id) {
    case 0: return "nearest";
    case 1: return "lanczos";
    case 2: return "bilinear";
    case 3: return "bicubic";
    case 4: return "box";
    case 5: return "hamming";
  }
  return "unknown";
}

std::string early_stopping_name(GenerationConfig::EarlyStopping e) {
  switch (e) {
    case GenerationConfig::EarlyStopping::True: return "true";
    case GenerationConfig::EarlyStopping::False: return "false";
    case GenerationConfig::EarlyStopping::Never: return "never";
  }
  return "false";
}

// The most beams a model instance prepares buffers for up front; more grow the buffers once.
constexpr std::int64_t kRowsHint = 4;
}  // namespace

struct Captioner::Impl {
  ModelConfig config;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<VitGpt2Model> model;
  Tokenizer tokenizer;
  bool clean_up_spaces = false;  // tokenizer_config.json clean_up_tokenization_spaces
  ModelInfo info;

  std::string decode(std::span<const std::int64_t> ids, bool skip_special) const {
    std::string text = tokenizer.decode(ids, skip_special);
    return clean_up_spaces ? clean_up_tokenization(std::move(text)) : text;
  }
  FloatBuffer pixels;  // (batch, 3, H, W), grown to the largest batch

  std::vector<CaptionResult> run(std::span<const RgbImage> images, const CaptionRequest& request);

  Impl(ModelConfig c, Tokenizer t) : config(std::move(c)), tokenizer(std::move(t)) {}
};

Captioner::Captioner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Captioner::Captioner(Captioner&&) noexcept = default;
Captioner& Captioner::operator=(Captioner&&) noexcept = default;
Captioner::~Captioner() = default;

Captioner Captioner::load(const std::filesystem::path& dir, const LoadOptions& options) {
  const auto t0 = Clock::now();
  if (!std::filesystem::is_directory(dir))
    throw FormatError(fmt::format("{}: model folder not found", dir.string()));
  ModelConfig config = load_model_config(dir);
  const auto& pre = config.preprocessor;
  const auto& enc = config.encoder;
  if (pre.do_resize && (pre.height != enc.image_size || pre.width != enc.image_size))
    throw ShapeError(fmt::format(
        "{}: the processor resizes to {}x{}, but the ViT encoder expects {}x{} (config.json image_size)",
        (dir / "preprocessor_config.json").string(), pre.width, pre.height, enc.image_size, enc.image_size));
  if (enc.num_channels != 3)
    throw ShapeError(fmt::format("{}: encoder num_channels is {}, only RGB (3) is supported",
                                 (dir / "config.json").string(), enc.num_channels));
  auto impl = std::make_unique<Impl>(std::move(config), Tokenizer::load(dir));
  Impl& m = *impl;
  m.clean_up_spaces = clean_up_tokenization_spaces(dir);
  if (m.tokenizer.vocab_size() > m.config.decoder.vocab_size)
    throw ShapeError(fmt::format("{}: the tokenizer has {} tokens, more than the decoder's vocab_size {}",
                                 m.tokenizer.source(), m.tokenizer.vocab_size(), m.config.decoder.vocab_size));

  m.backend = make_onednn_backend();
  m.backend->set_threads(options.threads);
  m.backend->set_precision(options.dtype == ComputeType::BF16 ? Precision::BF16 : Precision::F32);
  WeightStore weights = WeightStore::open(dir);
  m.model = std::make_unique<VitGpt2Model>(m.config, *m.backend, weights, kRowsHint);

  ModelInfo& i = m.info;
  i.dir = dir;
  i.family = "vit-gpt2";
  i.weights_file = weights.description();
  i.weights_dtype = dtype_name(weights.main_dtype());
  i.parameters = weights.total_parameters(VitGpt2Model::expected_tensors(m.config));
  weights.release();
  i.image_height = i.image_width = enc.image_size;
  i.patch_size = enc.patch_size;
  i.grid_rows = m.model->encoder().grid_rows();
  i.grid_cols = m.model->encoder().grid_cols();
  i.encoder_hidden = enc.hidden_size;
  i.encoder_layers = enc.num_hidden_layers;
  i.encoder_heads = enc.num_attention_heads;
  const auto& dec = m.config.decoder;
  i.decoder_hidden = dec.n_embd;
  i.decoder_layers = dec.n_layer;
  i.decoder_heads = dec.n_head;
  i.vocab_size = dec.vocab_size;
  i.n_positions = dec.n_positions;
  i.enc_to_dec_proj = m.model->has_projection();
  i.tokenizer_kind = m.tokenizer.kind();
  i.tokenizer_file = m.tokenizer.source();
  i.resample = resample_name(pre.resample);
  const auto& g = m.config.generation;
  const DecodeSettings s = resolve_settings(g, {});
  i.num_beams = s.num_beams;
  i.max_length = s.max_length;
  i.max_new_tokens = s.max_length - 1;
  i.min_length = s.min_length;
  i.no_repeat_ngram_size = s.no_repeat_ngram_size;
  i.length_penalty = s.length_penalty;
  i.repetition_penalty = s.repetition_penalty;
  i.early_stopping = early_stopping_name(g.early_stopping);
  i.decoder_start_token_id = s.decoder_start_token_id;
  i.eos_token_ids = s.eos_token_ids;
  i.backend = m.backend->name();
  i.compute_dtype = options.dtype == ComputeType::BF16 ? "bf16" : "f32";
  {
    // Work per image (multiply-add = 2 FLOPs), from the shapes alone.
    const double t = static_cast<double>(m.model->encoder_tokens()), p = t - 1;
    const double de = static_cast<double>(enc.hidden_size), ie = static_cast<double>(enc.intermediate_size);
    const double patch_in = static_cast<double>(enc.num_channels * enc.patch_size * enc.patch_size);
    const double layer = 2 * t * de * 3 * de + 2 * 2 * t * t * de + 2 * t * de * de + 2 * 2 * t * de * ie;
    const double d = static_cast<double>(dec.n_embd), inner = static_cast<double>(dec.n_inner);
    const double v = static_cast<double>(dec.vocab_size), nl = static_cast<double>(dec.n_layer);
    i.encoder_flops = 2 * p * patch_in * de + static_cast<double>(enc.num_hidden_layers) * layer;
    if (i.enc_to_dec_proj) i.encoder_flops += 2 * t * de * d;
    i.cross_kv_flops = nl * 2 * t * d * 2 * d;
    // Per step and layer: c_attn (D, 3D), c_proj, q_attn, cross c_proj (D, D) each, c_fc and
    // mlp c_proj (D, inner) each; then the LM head (D, V).
    const double weights_per_layer = 3 * d * d + 3 * d * d + 2 * d * inner;
    const double wbytes = options.dtype == ComputeType::BF16 ? 2 : 4;
    i.decoder_step_flops = 2 * (nl * weights_per_layer + d * v);
    const double head_bytes = m.model->decoder().head_f32() ? 4 : wbytes;
    i.decoder_step_bytes = wbytes * nl * weights_per_layer + head_bytes * d * v +
                           4 * nl * (7 * d + inner + 6 * d) +  // biases and layer norms
                           wbytes * nl * t * 2 * d;            // cached cross K/V (bf16 under bf16)
  }
  for (const auto& u : g.unsupported) i.warnings.push_back("not implemented, ignored: " + u);
  i.load_ms = ms_since(t0);
  return Captioner(std::move(impl));
}

CaptionResult Captioner::caption_file(const std::filesystem::path& image, const CaptionRequest& request) {
  return caption(load_image(image), request);
}

CaptionResult Captioner::caption(const RgbImage& image, const CaptionRequest& request) {
  return std::move(impl_->run({&image, 1}, request).front());
}

std::vector<CaptionResult> Captioner::caption_batch(std::span<const RgbImage> images,
                                                    const CaptionRequest& request) {
  if (images.empty()) return {};
  return impl_->run(images, request);
}

std::vector<CaptionResult> Captioner::Impl::run(std::span<const RgbImage> images,
                                                const CaptionRequest& request) {
  const DecodeSettings settings = resolve_settings(config.generation, request.generation);
  for (std::size_t i = 0; i < images.size(); ++i) {
    const RgbImage& image = images[i];
    if (image.width <= 0 || image.height <= 0 ||
        image.data.size() != static_cast<std::size_t>(image.width) * image.height * 3)
      throw InputError(fmt::format("{} of {}x{} pixels carries {} bytes, expected width*height*3",
                                   images.size() > 1 ? fmt::format("image #{}", i) : std::string("image"),
                                   image.width, image.height, image.data.size()));
  }
  const auto n = static_cast<std::int64_t>(images.size());
  const auto per_image = static_cast<std::size_t>(3 * config.encoder.image_size * config.encoder.image_size);
  if (pixels.size() < per_image * images.size()) pixels.resize(per_image * images.size());

  std::vector<CaptionResult> results(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    const auto t0 = Clock::now();
    preprocess_image(images[i], config.preprocessor, pixels.data() + i * per_image);
    results[i].timings.preprocess_ms = ms_since(t0);
  }

  auto t0 = Clock::now();
  model->encode(pixels.data(), n);
  const double encoder_ms = ms_since(t0) / static_cast<double>(n);

  for (std::int64_t i = 0; i < n; ++i) {
    CaptionResult& r = results[static_cast<std::size_t>(i)];
    r.timings.encoder_ms = encoder_ms;
    t0 = Clock::now();
    model->prepare_cross_attention(settings.num_beams, settings.max_length, i);
    r.timings.cross_kv_ms = ms_since(t0);

    t0 = Clock::now();
    DecodeResult d = xcaption::decode(*model, settings, request.capture_cross_attention);
    r.timings.decode_ms = ms_since(t0);

    r.token_ids = std::move(d.tokens);
    r.logprobs = std::move(d.logprobs);
    r.sequence_score = d.sequence_score;
    r.num_beams = settings.num_beams;
    r.caption = decode(r.token_ids, /*skip_special=*/true);
    r.tokens.reserve(r.token_ids.size());
    for (auto id : r.token_ids) r.tokens.push_back(tokenizer.token_string(id));
    if (request.capture_cross_attention) {
      auto& a = r.cross_attention;
      a.steps = static_cast<std::int64_t>(r.token_ids.size());
      a.layers = model->decoder().num_layers();
      a.heads = model->decoder().num_heads();
      a.encoder_tokens = model->encoder_tokens();
      a.grid_rows = model->encoder().grid_rows();
      a.grid_cols = model->encoder().grid_cols();
      a.weights = std::move(d.attention);
    }
  }
  return results;
}

ModelInfo Captioner::info() const { return impl_->info; }

std::vector<std::int64_t> Captioner::encode_text(std::string_view text) const {
  return impl_->tokenizer.encode(text);
}

std::string Captioner::decode_tokens(std::span<const std::int64_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::string Captioner::token_string(std::int64_t id) const { return impl_->tokenizer.token_string(id); }

std::filesystem::path default_model_dir() {
  if (const char* env = std::getenv("XCAPTION_MODEL"); env && *env) return env;
  return XCAPTION_DEFAULT_MODEL_DIR;
}

}  // namespace xcaption
