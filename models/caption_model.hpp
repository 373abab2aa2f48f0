// A loaded captioning model as the engine sees it, whatever its family: an image encoder, an
// optional projection to the decoder's width, a text decoder, the folder's image-processing and
// generation settings, and the family's rule for the decoder prompt. Families (models/*/) build
// one from their config and tensor names; src/captioner.cpp drives it without knowing which.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <xcaption/captioner.hpp>

#include "decoder/text_decoder.hpp"
#include "decoder/text_encoder.hpp"
#include "encoders/image_encoder.hpp"
#include "src/generate/generate.hpp"
#include "src/io/generation_config.hpp"
#include "src/io/preprocessor_config.hpp"
#include "src/tokenizer/tokenizer.hpp"

namespace xcaption {

/// The decoder input before the first generated token for an optional user prompt (HF's
/// decoder_input_ids / input_ids). Throws InputError for a prompt the family cannot take.
using PromptRule = std::function<std::vector<std::int64_t>(const Tokenizer& tokenizer,
                                                           const GenerationConfig& generation,
                                                           std::optional<std::string_view> prompt)>;

/// A family's tasks (Florence-2's "<CAPTION>", "<OD>", ...): the encoder-side prompt a task
/// gives the text encoder, and how the generated text is read back into a structured answer.
struct TaskRule {
  std::string default_task;
  std::vector<std::string> names;  // every task accepted, in the family's order
  /// Token ids the text encoder reads after the image tokens. Throws InputError for an unknown
  /// task, a text the task does not take or a missing one.
  std::function<std::vector<std::int64_t>(const Tokenizer& tokenizer, const std::string& task,
                                          const std::optional<std::string>& text)>
      encoder_prompt;
  /// The answer to `task` read from `text` (the decoded sequence with special tokens kept), with
  /// coordinates in pixels of the original width x height image.
  std::function<TaskResult(const std::string& task, const std::string& text, std::int64_t width,
                           std::int64_t height)>
      post_process;
};

/// What a family hands over to build a CaptionModel.
struct CaptionModelParts {
  std::string family;        // "vit-gpt2", "blip"
  std::string architecture;  // e.g. "VisionEncoderDecoderModel"
  std::string prompt_rule;   // one line for `info`
  PreprocessorConfig preprocessor;
  GenerationConfig generation;
  std::unique_ptr<ImageEncoder> encoder;
  std::unique_ptr<PreparedLinear> projection;  // encoder width -> decoder cross width, or null
  std::unique_ptr<TextDecoder> decoder;
  /// Optional: an encoder over [image states; the task's prompt ids] whose last states the
  /// decoder cross-attends to (Florence-2's BART encoder). Null: it reads the image states.
  std::unique_ptr<TextEncoder> text_encoder;
  /// The family's tasks; empty names: it has none (and needs no text_encoder prompt).
  TaskRule tasks;
  /// A tokenizer that replaces the folder's (the tokens a processor adds at load time), or none.
  std::optional<Tokenizer> tokenizer;
  PromptRule prompt;
  /// Caps an untouched default max_length (transformers caps it at max_position_embeddings when
  /// the generating model's config has one).
  std::optional<std::int64_t> default_length_cap;
  std::vector<ExpectedTensor> tensors;  // the family's table, for the parameter count
  std::vector<std::string> warnings;    // settings in the folder that are ignored, for `info`
};

class CaptionModel final : public StepModel {
 public:
  CaptionModel(CaptionModelParts parts, Backend& backend);

  const std::string& family() const { return parts_.family; }
  const PreprocessorConfig& preprocessor() const { return parts_.preprocessor; }
  const GenerationConfig& generation() const { return parts_.generation; }
  std::optional<std::int64_t> default_length_cap() const { return parts_.default_length_cap; }
  const ImageEncoder& encoder() const { return *parts_.encoder; }
  const TextDecoder& decoder() const { return *parts_.decoder; }
  TextDecoder& decoder() { return *parts_.decoder; }
  bool has_projection() const { return parts_.projection != nullptr; }
  const std::vector<ExpectedTensor>& tensors() const { return parts_.tensors; }

  std::vector<std::int64_t> decoder_prompt(const Tokenizer& tokenizer, std::optional<std::string_view> prompt) const {
    return parts_.prompt(tokenizer, parts_.generation, prompt);
  }

  bool has_tasks() const { return !parts_.tasks.names.empty(); }
  const TaskRule& tasks() const { return parts_.tasks; }
  /// The tokenizer the family replaced the folder's with, once (then empty).
  std::optional<Tokenizer> take_tokenizer() { return std::exchange(parts_.tokenizer, std::nullopt); }
  /// The task a request runs: its own or the default; nullopt for a model without tasks. Throws
  /// InputError for a task (or task text) given to a model without tasks, or an unknown task.
  std::optional<std::string> resolve_task(const std::optional<std::string>& task,
                                          const std::optional<std::string>& text) const;
  /// The text encoder's prompt ids for `task` (empty for a model without a text encoder).
  std::vector<std::int64_t> encoder_prompt(const Tokenizer& tokenizer, const std::optional<std::string>& task,
                                           const std::optional<std::string>& text) const;

  /// pixels (batch, 3, H, W) -> the encoder states of every image, kept inside.
  void encode(const float* pixels, std::int64_t batch);
  /// Encoder states of image `image` of the last encode(): (tokens, encoder width).
  const float* encoder_states(std::int64_t image) const;
  /// A decoding state for image `image` of the last encode(): its rows (beams) and the cross
  /// keys/values of every layer, computed once (after the projection when there is one, or from
  /// the text encoder run over the image states and `encoder_prompt`). Every state of one decode
  /// batch must have the same encoder_prompt length (the captured attention's row size).
  std::unique_ptr<blocks::KvCache> start(std::int64_t image, std::int64_t rows, std::int64_t max_length,
                                         std::span<const std::int64_t> encoder_prompt = {});
  /// The states the last start() made the cross K/V from: (cross_tokens(), decoder cross width).
  const float* cross_states() const { return cross_states_; }
  std::int64_t cross_tokens() const { return cross_tokens_; }

  // StepModel
  std::int64_t vocab_size() const override { return parts_.decoder->vocab_size(); }
  std::int64_t attention_floats() const override;
  /// The groups must be states made by start() of this model.
  void step(std::span<DecoderState* const> groups, const std::int64_t* tokens, float* logits,
            float* attention) override;
  void log_softmax(const float* logits, std::int64_t rows, float* dst) override;

  /// Family, towers, sizes and the work per image/token, for ModelInfo.
  void describe(ModelInfo& info, bool bf16) const;

 private:
  CaptionModelParts parts_;
  Backend& backend_;
  FloatBuffer states_;     // (batch, T, encoder width)
  std::int64_t batch_ = 0;
  FloatBuffer projected_;  // (T, decoder cross width) when projecting, (T + prompt, width) encoded
  const float* cross_states_ = nullptr;
  std::int64_t cross_tokens_ = 0;
  std::vector<blocks::KvCache*> caches_;  // step()'s groups, reused
};

}  // namespace xcaption
