// Captioner: the public entry point. Loads a model folder, owns the backend, the model and the
// tokenizer, and runs preprocess -> encoder -> cross K/V -> generation for each image.
#include <xcaption/captioner.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "encoders/image_processor.hpp"
#include "models/family.hpp"
#include "src/generate/settings.hpp"
#include "src/io/hf_cache.hpp"
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
  std::unique_ptr<Backend> backend;
  std::unique_ptr<CaptionModel> model;
  Tokenizer tokenizer;
  bool clean_up_spaces = false;  // tokenizer_config.json clean_up_tokenization_spaces
  ModelInfo info;
  FloatBuffer pixels;  // (batch, 3, H, W), grown to the largest batch

  std::string decode(std::span<const std::int64_t> ids, bool skip_special) const {
    std::string text = tokenizer.decode(ids, skip_special);
    return clean_up_spaces ? clean_up_tokenization(std::move(text)) : text;
  }
  std::vector<CaptionResult> run(std::span<const PreparedImage> images, const CaptionRequest& request);
  std::vector<DecodeResult> decode_reporting(std::span<const DecodeJob> jobs,
                                             const decltype(CaptionRequest::on_tokens)& on_tokens,
                                             std::vector<bool>& cancelled);
  PreparedImage prepare(const RgbImage& image, std::size_t index, std::size_t count) const;

  explicit Impl(Tokenizer t) : tokenizer(std::move(t)) {}
};

Captioner::Captioner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Captioner::Captioner(Captioner&&) noexcept = default;
Captioner& Captioner::operator=(Captioner&&) noexcept = default;
Captioner::~Captioner() = default;

Captioner Captioner::load(const std::filesystem::path& model, const LoadOptions& options) {
  const auto t0 = Clock::now();
  const std::filesystem::path dir = resolve_model(model.string());
  read_model_config(dir);  // config errors come before tokenizer or weight errors
  auto impl = std::make_unique<Impl>(Tokenizer::load(dir));
  Impl& m = *impl;
  m.clean_up_spaces = clean_up_tokenization_spaces(dir);
  m.backend = make_onednn_backend();
  m.backend->set_threads(options.threads);
  m.backend->set_precision(options.dtype == ComputeType::BF16 ? Precision::BF16 : Precision::F32);
  WeightStore weights = WeightStore::open(dir);
  m.model = load_caption_model(dir, *m.backend, weights, m.tokenizer, kRowsHint);
  if (std::optional<Tokenizer> t = m.model->take_tokenizer()) m.tokenizer = std::move(*t);
  if (m.tokenizer.vocab_size() > m.model->vocab_size())
    throw ShapeError(fmt::format("{}: the tokenizer has {} tokens, more than the decoder's vocab_size {}",
                                 m.tokenizer.source(), m.tokenizer.vocab_size(), m.model->vocab_size()));

  ModelInfo& i = m.info;
  i.dir = dir;
  i.weights_format = weights.format();
  i.weights_file = weights.description();
  i.weights_dtype = dtype_name(weights.main_dtype());
  i.parameters = weights.total_parameters(m.model->tensors());
  weights.release();
  m.model->describe(i, options.dtype == ComputeType::BF16);
  i.tokenizer_kind = m.tokenizer.kind();
  i.tokenizer_file = m.tokenizer.source();
  i.resample = resample_name(m.model->preprocessor().resample);
  const auto& g = m.model->generation();
  const DecodeSettings s = resolve_settings(g, {}, m.model->decoder_prompt(m.tokenizer, std::nullopt),
                                            m.model->default_length_cap());
  const auto prompt = static_cast<std::int64_t>(s.prompt.size());
  i.num_beams = s.num_beams;
  i.max_length = s.max_length;
  i.max_new_tokens = s.max_length - prompt;
  i.min_length = s.min_length;
  i.no_repeat_ngram_size = s.no_repeat_ngram_size;
  i.length_penalty = s.length_penalty;
  i.repetition_penalty = s.repetition_penalty;
  i.early_stopping = early_stopping_name(g.early_stopping);
  i.decoder_start_token_id = s.prompt.front();
  i.eos_token_ids = s.eos_token_ids;
  i.backend = m.backend->name();
  i.compute_dtype = options.dtype == ComputeType::BF16 ? "bf16" : "f32";
  for (const auto& u : g.unsupported) i.warnings.push_back("not implemented, ignored: " + u);
  i.load_ms = ms_since(t0);
  return Captioner(std::move(impl));
}

CaptionResult Captioner::caption_file(const std::filesystem::path& image, const CaptionRequest& request) {
  return caption(load_image(image), request);
}

CaptionResult Captioner::caption(const RgbImage& image, const CaptionRequest& request) {
  const PreparedImage p = impl_->prepare(image, 0, 1);
  return std::move(impl_->run({&p, 1}, request).front());
}

std::vector<CaptionResult> Captioner::caption_batch(std::span<const RgbImage> images,
                                                    const CaptionRequest& request) {
  if (images.empty()) return {};
  std::vector<PreparedImage> prepared;
  prepared.reserve(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) prepared.push_back(impl_->prepare(images[i], i, images.size()));
  return impl_->run(prepared, request);
}

PreparedImage Captioner::prepare(const RgbImage& image) const { return impl_->prepare(image, 0, 1); }

std::vector<CaptionResult> Captioner::caption_prepared(std::span<const PreparedImage> images,
                                                       const CaptionRequest& request) {
  if (images.empty()) return {};
  return impl_->run(images, request);
}

PreparedImage Captioner::Impl::prepare(const RgbImage& image, std::size_t i, std::size_t count) const {
  if (image.width <= 0 || image.height <= 0 ||
      image.data.size() != static_cast<std::size_t>(image.width) * image.height * 3)
    throw InputError(fmt::format("{} of {}x{} pixels carries {} bytes, expected width*height*3",
                                 count > 1 ? fmt::format("image #{}", i) : std::string("image"), image.width,
                                 image.height, image.data.size()));
  const auto t0 = Clock::now();
  PreparedImage p;
  p.height = model->encoder().image_height();
  p.width = model->encoder().image_width();
  p.source_width = image.width;
  p.source_height = image.height;
  p.pixels.resize(static_cast<std::size_t>(3 * p.height * p.width));
  preprocess_image(image, model->preprocessor(), p.pixels.data());
  p.preprocess_ms = ms_since(t0);
  return p;
}

std::vector<CaptionResult> Captioner::Impl::run(std::span<const PreparedImage> images,
                                                const CaptionRequest& request) {
  std::optional<std::string_view> prompt;
  if (request.prompt) prompt = *request.prompt;
  const DecodeSettings settings = resolve_settings(model->generation(), request.generation,
                                                   model->decoder_prompt(tokenizer, prompt),
                                                   model->default_length_cap());
  // A task model's task and the prompt its text encoder reads after the image tokens.
  const std::optional<std::string> task = model->resolve_task(request.task, request.task_text);
  const std::vector<std::int64_t> encoder_prompt = model->encoder_prompt(tokenizer, task, request.task_text);
  const auto n = static_cast<std::int64_t>(images.size());
  const std::int64_t height = model->encoder().image_height(), width = model->encoder().image_width();
  const auto per_image = static_cast<std::size_t>(3 * height * width);
  if (pixels.size() < per_image * images.size()) pixels.resize(per_image * images.size());
  std::vector<CaptionResult> results(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    const PreparedImage& p = images[i];
    if (p.height != height || p.width != width || p.pixels.size() != per_image)
      throw InputError(fmt::format("prepared image #{} is {}x{} with {} values; this model takes {}x{} (use prepare())",
                                   i, p.width, p.height, p.pixels.size(), width, height));
    std::copy(p.pixels.begin(), p.pixels.end(), pixels.data() + i * per_image);
    results[i].timings.preprocess_ms = p.preprocess_ms;
  }

  auto t0 = Clock::now();
  model->encode(pixels.data(), n);
  const double encoder_ms = ms_since(t0) / static_cast<double>(n);

  // Each image's decoding state (its cross-attention keys/values computed once), then all
  // images decoded together: every step runs the rows of the unfinished ones.
  std::vector<std::unique_ptr<blocks::KvCache>> states;
  std::vector<DecodeJob> jobs;
  for (std::int64_t i = 0; i < n; ++i) {
    t0 = Clock::now();
    states.push_back(model->start(i, settings.num_beams, settings.max_length, encoder_prompt));
    results[static_cast<std::size_t>(i)].timings.cross_kv_ms = ms_since(t0);
    jobs.push_back({states.back().get(), &settings, request.capture_cross_attention});
  }
  t0 = Clock::now();
  std::vector<DecodeResult> decoded;
  std::vector<bool> cancelled(images.size(), false);
  if (request.on_tokens)
    decoded = decode_reporting(jobs, request.on_tokens, cancelled);
  else
    decoded = decode_together(*model, jobs);
  const double decode_ms = ms_since(t0) / static_cast<double>(n);

  const TokenGrid grid = model->encoder().grid();
  for (std::int64_t i = 0; i < n; ++i) {
    CaptionResult& r = results[static_cast<std::size_t>(i)];
    DecodeResult& d = decoded[static_cast<std::size_t>(i)];
    r.timings.encoder_ms = encoder_ms;
    r.timings.decode_ms = decode_ms;
    r.prompt_ids = settings.prompt;
    r.cancelled = cancelled[static_cast<std::size_t>(i)];
    r.token_ids = std::move(d.tokens);
    r.logprobs = std::move(d.logprobs);
    r.sequence_score = d.sequence_score;
    r.num_beams = settings.num_beams;
    // transformers returns prompt + generated ids and decodes them all.
    std::vector<std::int64_t> all = r.prompt_ids;
    all.insert(all.end(), r.token_ids.begin(), r.token_ids.end());
    r.caption = decode(all, /*skip_special=*/true);
    if (task) {
      const PreparedImage& p = images[static_cast<std::size_t>(i)];
      // ref: the model card: batch_decode(..., skip_special_tokens=False), then
      // post_process_generation(text, task, image_size=(width, height)) of the original image.
      const std::string text = decode(all, /*skip_special=*/false);
      r.task = model->tasks().post_process(*task, text, p.source_width > 0 ? p.source_width : p.width,
                                           p.source_height > 0 ? p.source_height : p.height);
    }
    r.tokens.reserve(r.token_ids.size());
    for (auto id : r.token_ids) r.tokens.push_back(tokenizer.token_string(id));
    if (request.capture_cross_attention && !r.cancelled) {
      auto& a = r.cross_attention;
      a.steps = static_cast<std::int64_t>(r.token_ids.size());
      a.layers = model->decoder().num_layers();
      a.heads = model->decoder().num_heads();
      a.encoder_tokens = model->cross_tokens();  // image tokens, then any text encoder prompt
      a.grid_rows = grid.rows;
      a.grid_cols = grid.cols;
      a.grid_offset = grid.first;
      a.weights = std::move(d.attention);
    }
  }
  return results;
}

// decode_together's loop, telling `on_tokens` after every step which tokens became final and
// dropping the images it refuses. A cancelled image's result holds the tokens reported.
std::vector<DecodeResult> Captioner::Impl::decode_reporting(std::span<const DecodeJob> jobs,
                                                            const decltype(CaptionRequest::on_tokens)& on_tokens,
                                                            std::vector<bool>& cancelled) {
  DecodeBatch batch(*model);
  std::vector<std::int64_t> ids;  // batch id of each job
  for (const auto& job : jobs) ids.push_back(batch.add(job));
  std::vector<DecodeResult> results(jobs.size());
  std::vector<std::size_t> reported(jobs.size(), 0);
  auto index_of = [&](std::int64_t id) {
    return static_cast<std::size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin());
  };
  // Reports tokens[reported, end) of job i; false when the caller wants it stopped.
  auto report = [&](std::size_t i, std::span<const std::int64_t> tokens) {
    const std::span<const std::int64_t> fresh = tokens.subspan(std::min(reported[i], tokens.size()));
    reported[i] = std::max(reported[i], tokens.size());
    return on_tokens(i, fresh);
  };
  std::vector<bool> done(jobs.size(), false);
  while (!batch.empty()) {
    batch.step();
    for (auto& [id, result] : batch.take_finished()) {
      const std::size_t i = index_of(id);
      done[i] = true;
      report(i, result.tokens);  // finished anyway: nothing left to stop
      results[i] = std::move(result);
    }
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (done[i]) continue;
      const std::span<const std::int64_t> committed = batch.committed(ids[i]);
      if (!report(i, committed)) {
        done[i] = true;
        cancelled[i] = true;
        results[i].tokens.assign(committed.begin(), committed.end());  // before remove() frees them
        batch.remove(ids[i]);
      }
    }
  }
  return results;
}

ModelInfo Captioner::info() const { return impl_->info; }

std::vector<std::int64_t> Captioner::prompt_ids(const CaptionRequest& request) const {
  std::optional<std::string_view> prompt;
  if (request.prompt) prompt = *request.prompt;
  const Impl& m = *impl_;
  m.model->encoder_prompt(m.tokenizer, request.task, request.task_text);  // refuses a task it cannot run
  return resolve_settings(m.model->generation(), request.generation, m.model->decoder_prompt(m.tokenizer, prompt),
                          m.model->default_length_cap())
      .prompt;
}

std::vector<std::int64_t> Captioner::encode_text(std::string_view text) const {
  return impl_->tokenizer.encode(text);
}

std::string Captioner::decode_tokens(std::span<const std::int64_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::string Captioner::token_string(std::int64_t id) const { return impl_->tokenizer.token_string(id); }

std::filesystem::path default_model_dir() {
  if (const char* env = std::getenv("XCAPTION_MODEL"); env && *env) return resolve_model(env);
  return XCAPTION_DEFAULT_MODEL_DIR;
}

std::filesystem::path resolve_model(const std::string& model) { return resolve_model_spec(model).dir; }

}  // namespace xcaption
