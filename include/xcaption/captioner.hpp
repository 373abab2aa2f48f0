// The public API: load a Hugging Face vision-encoder-decoder folder and caption images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xcaption/image.hpp>

namespace xcaption {

/// Generation settings. Unset fields take the model folder's value (generation_config.json,
/// else config.json), else transformers' GenerationConfig default.
struct GenerationOptions {
  std::optional<std::int64_t> num_beams;
  std::optional<std::int64_t> max_new_tokens;  // wins over max_length
  std::optional<std::int64_t> max_length;      // counts the decoder start token
  std::optional<std::int64_t> min_new_tokens;  // wins over min_length
  std::optional<std::int64_t> min_length;      // counts the decoder start token
  std::optional<double> length_penalty;
  std::optional<std::string> early_stopping;   // "true", "false" or "never"
  std::optional<std::int64_t> no_repeat_ngram_size;
  std::optional<double> repetition_penalty;
};

struct CaptionRequest {
  GenerationOptions generation;
  /// Text the caption starts with (a decoder prefix: BLIP's "a picture of", a GPT-2 prefix for
  /// vit-gpt2). The caption returned begins with it, as transformers prints it.
  std::optional<std::string> prompt;
  /// The task of a model that has tasks (Florence-2: "<CAPTION>", "<OD>", "<OCR_WITH_REGION>",
  /// ...; ModelInfo::tasks lists them); unset: the model's default task. A model without tasks
  /// refuses one (InputError).
  std::optional<std::string> task;
  /// The text a task takes (Florence-2's <CAPTION_TO_PHRASE_GROUNDING> phrase, a region's
  /// "<loc_..>" tokens); refused by a task that takes none.
  std::optional<std::string> task_text;
  /// Keep the cross-attention weights of every layer and head for each generated token.
  bool capture_cross_attention = false;
  /// Streaming and cancellation (optional). Called on the captioning thread after every decoder
  /// step, once for each image still being decoded, with that image's tokens that became final
  /// in the step: greedy search, the token just chosen; beam search, nothing until the search
  /// ends, then the whole returned sequence. `image` is the image's index in the call (0 for
  /// caption()). Returning false stops that image at once: it leaves the batch while the others
  /// go on, and its result comes back with `cancelled` set. The callback must not call this
  /// Captioner's non-const members; what it throws propagates out of the caption call.
  std::function<bool(std::size_t image, std::span<const std::int64_t> tokens)> on_tokens;
};

/// One shape of a task's result, in pixels of the original image: a box (x0, y0, x1, y1), a
/// quadrilateral (4 corners x, y) or a polygon (x, y pairs).
struct TaskShape {
  enum class Kind { Box, Quad, Polygon } kind = Kind::Box;
  std::string label;
  std::vector<float> points;
};

/// The structured answer of a task (CaptionRequest::task).
struct TaskResult {
  std::string task;  // e.g. "<OD>"
  /// The decoded sequence with special tokens kept (what post-processing parses), as the model
  /// card's batch_decode(..., skip_special_tokens=False) prints it.
  std::string text;
  /// {task: answer} as transformers' Florence2Processor.post_process_generation returns it,
  /// serialised as JSON.
  std::string json;
  std::vector<TaskShape> shapes;  // boxes, quads and polygons of the answer, for drawing
};

struct Timings {
  double preprocess_ms = 0;
  /// ViT forward. For caption_batch(): the batch's encoder time divided by its number of images.
  double encoder_ms = 0;
  /// (Projection to the decoder width or a text encoder over image + prompt tokens, and)
  /// cross-attention K/V, once per image.
  double cross_kv_ms = 0;
  double decode_ms = 0;    // the token loop
};

/// Cross-attention probabilities for each generated token:
/// weights[((step * layers + layer) * heads + head) * encoder_tokens + j].
/// Encoder token grid_offset + r * grid_cols + c is patch (r, c) of the model's input; the
/// others (a ViT's CLS token 0, Florence-2's mean token 0 and the prompt tokens after the grid)
/// cover no single cell.
struct CrossAttention {
  std::int64_t steps = 0, layers = 0, heads = 0, encoder_tokens = 0;
  std::int64_t grid_rows = 0, grid_cols = 0;
  std::int64_t grid_offset = 1;
  std::vector<float> weights;
  std::span<const float> at(std::int64_t step, std::int64_t layer, std::int64_t head) const {
    return {weights.data() + ((step * layers + layer) * heads + head) * encoder_tokens,
            static_cast<std::size_t>(encoder_tokens)};
  }
};

struct CaptionResult {
  std::string caption;                  // prompt + generated ids decoded, special tokens skipped
  std::vector<std::int64_t> prompt_ids; // the decoder input before the first generated token
  std::vector<std::int64_t> token_ids;  // generated after the prompt (eos included)
  std::vector<std::string> tokens;      // vocabulary strings of token_ids
  std::vector<float> logprobs;          // log-softmax of the raw logits for each chosen token
  double sequence_score = 0;            // beams: HF sequences_scores; greedy: sum of logprobs
  std::int64_t num_beams = 1;
  Timings timings;
  CrossAttention cross_attention;       // filled when requested
  std::optional<TaskResult> task;       // set for a model that has tasks
  /// Stopped by CaptionRequest::on_tokens returning false: token_ids, tokens and caption hold
  /// what had been reported; logprobs and cross_attention are empty, sequence_score is 0.
  bool cancelled = false;
};

/// An image resized and normalised for the loaded model (Captioner::prepare): the pixel_values
/// transformers' image processor would give it.
struct PreparedImage {
  std::vector<float> pixels;  // (3, height, width)
  std::int64_t height = 0, width = 0;
  std::int64_t source_width = 0, source_height = 0;  // the original image (task coordinates)
  double preprocess_ms = 0;
};

/// What was loaded, for `xcaption info` and for callers that adapt to the model.
struct ModelInfo {
  std::filesystem::path dir;
  std::string family;        // "vit-gpt2", "blip"
  std::string architecture;  // transformers' class, e.g. "VisionEncoderDecoderModel"
  std::string encoder_description, decoder_description;  // one line each, for `info`
  std::string prompt_rule;   // how --prompt becomes the decoder input
  std::vector<std::string> tasks;  // the tasks CaptionRequest::task takes (empty: none)
  std::string default_task;
  std::string weights_format;  // "safetensors", ...
  std::string weights_file, weights_dtype;  // the file(s) read; the dtype most bytes are stored in
  std::int64_t parameters = 0;
  std::int64_t image_height = 0, image_width = 0, patch_size = 0;
  std::int64_t grid_rows = 0, grid_cols = 0;
  std::int64_t encoder_tokens = 0;
  std::int64_t encoder_hidden = 0, encoder_layers = 0, encoder_heads = 0;
  std::int64_t decoder_hidden = 0, decoder_layers = 0, decoder_heads = 0;
  std::int64_t vocab_size = 0, n_positions = 0;
  bool enc_to_dec_proj = false;
  std::string tokenizer_kind, tokenizer_file;
  std::string resample;  // PIL filter name
  // Effective generation defaults.
  std::int64_t num_beams = 1, max_length = 20;
  std::optional<std::int64_t> max_new_tokens;
  std::int64_t min_length = 0, no_repeat_ngram_size = 0;
  double length_penalty = 1.0, repetition_penalty = 1.0;
  std::string early_stopping;
  std::int64_t decoder_start_token_id = 0;
  std::vector<std::int64_t> eos_token_ids;
  std::string backend;
  std::string compute_dtype;  // "f32" or "bf16" (LoadOptions::dtype)
  double load_ms = 0;  // Captioner::load from start to end (config, tokenizer, weights, backend layouts)
  /// Work of one image, for roofline estimates (a multiply-add counts as 2 FLOPs).
  double encoder_flops = 0;         // ViT forward (+ enc_to_dec_proj)
  double cross_kv_flops = 0;        // cross-attention keys/values of all decoder layers
  double decoder_step_flops = 0;    // one decoder step for one sequence (linear layers + LM head)
  /// Bytes one decoder step must read whatever the number of beams: every decoder weight matrix
  /// used per token (in the compute dtype, biases and norms in float32) plus the cached
  /// cross-attention keys/values (in the compute dtype). Memory bandwidth over this is the
  /// per-token floor.
  double decoder_step_bytes = 0;
  /// Settings in the folder that xcaption does not implement (they are ignored), e.g. sampling.
  std::vector<std::string> warnings;
};

/// How the linear layers compute. F32 reproduces transformers' float32 results; BF16 stores the
/// weights as bfloat16 (converted at load) and multiplies bfloat16 inputs with float32
/// accumulation, while layer norms, softmax, attention and residuals stay float32: about twice
/// as fast on CPUs with bf16 instructions, with slightly different logits.
enum class ComputeType { F32, BF16 };

struct LoadOptions {
  int threads = 0;  // 0: all cores
  ComputeType dtype = ComputeType::F32;
};

/// A loaded model. Not thread-safe: use one Captioner per thread.
/// The folder's config.json picks the model family (`xcaption info` lists them); every family
/// takes the same requests.
class Captioner {
 public:
  /// Loads and validates the model `model_dir` names (a folder, or ORG/NAME[@REVISION] of the
  /// Hugging Face cache: see resolve_model). Throws FormatError / ShapeError / InputError naming
  /// the file, key or tensor at fault.
  static Captioner load(const std::filesystem::path& model_dir, const LoadOptions& options = {});
  Captioner(Captioner&&) noexcept;
  Captioner& operator=(Captioner&&) noexcept;
  ~Captioner();

  CaptionResult caption(const RgbImage& image, const CaptionRequest& request = {});
  CaptionResult caption_file(const std::filesystem::path& image, const CaptionRequest& request = {});

  /// Captions several images with the same request: the encoder runs once for the whole batch
  /// (its matrix products with M = images × tokens), then each image is decoded in turn. Results
  /// are those of caption() on each image, in order (the same tokens; logits may differ in the
  /// last bits where oneDNN blocks a larger product differently). Throws InputError for an empty or malformed image.
  std::vector<CaptionResult> caption_batch(std::span<const RgbImage> images,
                                           const CaptionRequest& request = {});

  /// Preprocesses an image for this model. Const and thread-safe, also while another thread
  /// runs caption calls on this Captioner: a reader thread can prepare the next batch while the
  /// engine captions the current one. Throws InputError for an empty or malformed image.
  PreparedImage prepare(const RgbImage& image) const;

  /// caption_batch() on images prepared by prepare() of this Captioner (the encoder runs once for
  /// the batch, then all images decode together, each image's rows in the same decoder steps).
  /// Throws InputError for an image prepared for another input size.
  std::vector<CaptionResult> caption_prepared(std::span<const PreparedImage> images,
                                              const CaptionRequest& request = {});

  ModelInfo info() const;

  /// The decoder input `request` starts from (CaptionResult::prompt_ids): the start token, then
  /// the prompt's ids as the model family builds them. Const and thread-safe, for a caller that
  /// streams the caption's text as tokens arrive. Throws InputError as caption() would for the prompt.
  std::vector<std::int64_t> prompt_ids(const CaptionRequest& request) const;

  std::vector<std::int64_t> encode_text(std::string_view text) const;
  std::string decode_tokens(std::span<const std::int64_t> ids, bool skip_special_tokens) const;
  std::string token_string(std::int64_t id) const;

 private:
  struct Impl;
  explicit Captioner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The model folder used when none is given: $XCAPTION_MODEL if set (resolved by resolve_model),
/// else the bundled default. Throws FormatError when $XCAPTION_MODEL names nothing found.
std::filesystem::path default_model_dir();

/// The folder a model argument names, without any network access:
/// - `model` itself when it is an existing folder (a plain path always wins);
/// - else, for "ORG/NAME" or "ORG/NAME@REVISION", that model's snapshot in the local Hugging Face
///   cache, as transformers / huggingface_hub downloaded it: the cache is $HF_HUB_CACHE, else
///   $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; REVISION
///   (default "main") is a branch or tag recorded under refs/, or a commit hash with a snapshot.
/// Throws FormatError, one message listing every place searched and how to get the model
/// (`huggingface-cli download ORG/NAME` or `git clone https://huggingface.co/ORG/NAME`).
std::filesystem::path resolve_model(const std::string& model);

}  // namespace xcaption
